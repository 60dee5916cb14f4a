"""Timeouts and asyncio cancellation leave nothing behind in Redis (all three backends)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from lockutil import event_types, eventually, holders_of, wait_queued

from community_ade.errors import LockTimeout
from community_ade.locks import LockManager

X, S = "exclusive", "shared"


async def assert_no_residue(locks: LockManager, agent: str, *resources: str) -> None:
    for rid in resources:
        state = await locks.inspect_resource(rid)
        assert state.queue == [], f"{rid} still has waiters: {state.queue}"
    agent_state = await locks.inspect_agent(agent)
    assert agent_state.waiting == [], f"{agent} still waits: {agent_state.waiting}"


async def test_timeout_leaves_no_queue_residue(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    holder = await locks.acquire("holder", "agent-h", {"a": X})
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        await locks.acquire("waiter", "agent-w", {"a": S, "b": X, "c": S}, timeout=0.4)
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 3.0
    await assert_no_residue(locks, "agent-w", "a", "b", "c")
    # The resources it did not wait on are free, and "a" is still the holder's.
    assert await holders_of(locks, "a") == [holder.request_id]
    assert await holders_of(locks, "b") == []
    types = await event_types(locks)
    assert "lock:queued" in types
    assert "lock:cancelled" in types
    await locks.release(holder)
    # Nothing left to grant: nobody takes "a" once it is released.
    assert await holders_of(locks, "a") == []
    assert (await locks.inspect_agent("agent-w")).in_use == 0


async def test_try_once_does_not_queue(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    holder = await locks.acquire("holder", "agent-h", {"a": X})
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        await locks.acquire("waiter", "agent-w", {"a": X}, timeout=0)
    assert time.monotonic() - started < 1.0
    await assert_no_residue(locks, "agent-w", "a")
    assert "lock:queued" not in await event_types(locks)
    await locks.release(holder)


async def test_cancellation_leaves_no_queue_residue(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    holder = await locks.acquire("holder", "agent-h", {"a": X, "b": X})
    waiter = asyncio.create_task(locks.acquire("waiter", "agent-w", {"a": X, "b": S}))
    await wait_queued(locks, "a", 1)
    await wait_queued(locks, "b", 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await assert_no_residue(locks, "agent-w", "a", "b")
    # A later request is not stuck behind a ghost.
    await locks.release(holder)
    assert await holders_of(locks, "a") == []
    after = await locks.acquire("after", "agent-x", {"a": X, "b": X}, timeout=0)
    await locks.release(after)


async def test_wait_for_timeout_cancellation(make_manager: Callable[..., Any]) -> None:
    """asyncio.wait_for / timeout() around acquire cancel it: still no residue."""
    locks = await make_manager()
    holder = await locks.acquire("holder", "agent-h", {"a": X})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(locks.acquire("waiter", "agent-w", {"a": X}), 0.3)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await locks.acquire("waiter-2", "agent-w", {"a": S})
    await assert_no_residue(locks, "agent-w", "a")
    await locks.release(holder)
    assert await holders_of(locks, "a") == []


@pytest.mark.parametrize("backend", ["server", "cluster"], indirect=True)
async def test_cancel_racing_a_grant_leaves_nothing_held(make_manager: Callable[..., Any]) -> None:
    """Cancel a waiter at about the moment it is granted: either way, nothing stays held
    or queued (a grant that arrived meanwhile is released by the withdrawal)."""
    locks = await make_manager()
    for i in range(12):
        holder = await locks.acquire(f"holder-{i}", "agent-h", {"r": X})
        waiter = asyncio.create_task(locks.acquire(f"waiter-{i}", "agent-w", {"r": X}))
        await wait_queued(locks, "r", 1)
        release = asyncio.create_task(locks.release(holder))
        await asyncio.sleep(i * 0.0005)
        waiter.cancel()
        await release
        try:
            grant = await waiter
        except asyncio.CancelledError:
            pass
        else:  # it won the race: an ordinary grant
            await locks.release(grant)
        await eventually(
            lambda: holders_of(locks, "r"), lambda h: h == [], timeout=3, what="r released"
        )
        await assert_no_residue(locks, "agent-w", "r")
        assert (await locks.inspect_agent("agent-w")).in_use == 0
