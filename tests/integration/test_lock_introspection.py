"""Introspection, events, force release and idempotent release (all three backends)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FAST
from lockutil import eventually, wait_queued

from community_ade.errors import LockLost, LockTimeout

X, S = "exclusive", "shared"


def stream_id(event: dict[str, Any]) -> tuple[int, int]:
    ms, seq = event["id"].split("-")
    return int(ms), int(seq)


async def test_introspection_events_and_force_release(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    holder = await locks.acquire("task-h", "agent-h", {"A": X, "B": S})
    waiter = asyncio.create_task(locks.acquire("task-w", "agent-w", {"A": S}, timeout=30))
    (waiting_id,) = await wait_queued(locks, "A", 1)

    a = await locks.inspect_resource("A")
    assert a.resource == "A"
    assert [(h.request, h.task, h.agent, h.mode, h.fence) for h in a.holders] == [
        (holder.request_id, "task-h", "agent-h", "exclusive", holder.fence)
    ]
    assert a.holders[0].lease_deadline is not None
    assert [(w.request, w.task, w.agent, w.mode) for w in a.queue] == [
        (waiting_id, "task-w", "agent-w", "shared")
    ]
    assert a.queue[0].ticket is not None
    assert a.queue[0].ticket > holder.fence
    assert a.lock_delay_ms == 0
    b = await locks.inspect_resource("B")
    assert [(h.request, h.mode) for h in b.holders] == [(holder.request_id, "shared")]
    assert b.queue == []

    h_agent = await locks.inspect_agent("agent-h")
    assert (h_agent.agent, h_agent.capacity, h_agent.in_use) == ("agent-h", 4, 1)
    assert [g.request for g in h_agent.grants] == [holder.request_id]
    assert h_agent.waiting == []
    assert h_agent.lease_deadline is not None
    w_agent = await locks.inspect_agent("agent-w")
    assert (w_agent.in_use, w_agent.grants) == (0, [])
    assert [w.request for w in w_agent.waiting] == [waiting_id]

    everything = await locks.inspect_domain()
    assert {"A", "B"} <= {r.resource for r in everything.resources}
    assert {"agent-h", "agent-w"} <= {s.agent for s in everything.sessions}
    assert everything.resource_count >= 2
    assert everything.session_count >= 2

    assert await locks.release(holder) is True
    assert await locks.release(holder) is False  # idempotent
    granted = await asyncio.wait_for(waiter, 10)
    assert granted.request_id == waiting_id
    assert granted.fence > holder.fence
    assert not granted.lost.is_set()
    granted.check()

    # Force release: the holder is told (lost fires), the lock-delay applies.
    ended = await locks.force_release("A", "stuck in a test", actor="pytest")
    assert ended == [granted.request_id]
    await asyncio.wait_for(granted.lost.wait(), 5)
    assert granted.lost_reason
    with pytest.raises(LockLost):
        granted.check()
    a = await locks.inspect_resource("A")
    assert [h for h in a.holders if h.state == "granted"] == []
    assert a.lock_delay_ms > 0
    with pytest.raises(LockTimeout):
        await locks.acquire("task-x", "agent-x", {"A": X}, timeout=0)
    started = time.monotonic()
    after = await locks.acquire("task-x", "agent-x", {"A": X}, timeout=10)
    assert time.monotonic() - started <= locks.config.lock_delay_ms / 1000 + 2.0
    assert await locks.release(granted) is False  # it was no longer held
    assert await locks.release(after) is True
    assert await locks.force_release("A", "nothing held") == []

    events = await locks.events(count=100)
    types = [e["type"] for e in events]
    for kind in ("lock:queued", "lock:acquired", "lock:released", "lock:force_released"):
        assert kind in types, (kind, types)
    assert types.count("lock:force_released") == 1
    for event in events:
        assert {"type", "req", "task", "agent", "data", "id"} <= set(event)
        assert isinstance(event["data"], dict)
    # Newest first.
    ids = [stream_id(e) for e in events]
    assert ids == sorted(ids, reverse=True)
    assert types[0] == "lock:released"
    (forced,) = [e for e in events if e["type"] == "lock:force_released"]
    assert (forced["req"], forced["task"], forced["agent"]) == (
        granted.request_id,
        "task-w",
        "agent-w",
    )
    assert forced["data"]["reason"] == "stuck in a test"
    assert forced["data"]["actor"] == "pytest"
    queued = [e for e in events if e["type"] == "lock:queued"]
    # Newest first: "after" waited out the lock-delay in the queue.
    assert [e["req"] for e in queued] == [after.request_id, waiting_id]
    assert all(int(e["data"]["ticket"]) > 0 for e in queued)
    acquired = {e["req"] for e in events if e["type"] == "lock:acquired"}
    assert {holder.request_id, granted.request_id, after.request_id} <= acquired
    assert len(await locks.events(count=3)) == 3


async def test_force_release_ends_the_whole_grant(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    other = await make_manager(own_client=True)  # the holder's process is told via pub/sub
    grant = await other.acquire("task", "agent", {"A": X, "B": X, "C": S})
    assert await locks.force_release("B", "operator says so") == [grant.request_id]
    await asyncio.wait_for(grant.lost.wait(), 5)
    for rid in ("A", "B", "C"):
        state = await locks.inspect_resource(rid)
        assert [h for h in state.holders if h.state == "granted"] == []
    assert (await locks.inspect_agent("agent")).in_use == 0


async def test_a_revoked_grant_lingers_as_a_revoked_holder_for_the_lock_delay(
    make_manager: Callable[..., Any],
) -> None:
    """After a force release the old holder may still be writing: for the lock-delay the
    resource shows it as a holder in state ``revoked`` (never ``granted``), the delay is
    reported, and the agent's permit is already free."""
    locks = await make_manager()
    grant = await locks.acquire("task", "agent", {"A": X})
    await locks.force_release("A", "stuck")
    state = await locks.inspect_resource("A")
    assert state.lock_delay_ms > 0
    assert [(h.request, h.state) for h in state.holders] == [(grant.request_id, "revoked")]
    everything = await locks.inspect_domain()
    for resource in everything.resources:
        assert [h for h in resource.holders if h.state == "granted"] == [], resource
    agent = await locks.inspect_agent("agent")
    assert agent.in_use == 0
    assert grant.request_id not in {g.request for g in agent.grants}


async def test_events_stream_is_capped(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager(dataclasses.replace(FAST, events_maxlen=100))
    for i in range(150):
        g = await locks.acquire(f"t{i}", "agent", {"r": X})
        await locks.release(g)
    total = len(await locks.events(count=10_000))
    # XADD MAXLEN ~ trims by whole nodes: approximately, never unbounded.
    assert 100 <= total < 300
    newest = await locks.events(count=1)
    assert newest[0]["type"] == "lock:released"
    assert newest[0]["task"] == "t149"


async def test_inspect_of_unknown_names_is_empty(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    state = await locks.inspect_resource("never-used")
    assert (state.holders, state.queue, state.lock_delay_ms) == ([], [], 0)
    agent = await locks.inspect_agent("nobody")
    assert (agent.capacity, agent.in_use, agent.grants, agent.waiting) == (4, 0, [], [])
    assert agent.lease_deadline is None
    await eventually(locks.inspect_domain, lambda d: d.resource_count == 0)
