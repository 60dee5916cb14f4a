"""Locks between OS processes: mutual exclusion of 16 workers, a holder paused past its
lease (SIGSTOP), a holder killed (SIGKILL). Children run ``lock_worker.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Backend
from lockutil import Child, config_json, data_key, event_types, wait_queued

from community_ade.infra.redis_client import AnyRedis
from community_ade.locks import LockConfig

X = "exclusive"
WORKERS = 16
ROUNDS = 8

# Short leases so that expiry can be observed; generous next to a loaded machine's hiccups.
SHORT = LockConfig(
    lease_ms=1500,
    renew_ms=500,
    lock_delay_ms=500,
    deadlock_timeout_ms=1000,
    default_capacity=4,
    backstop_ms=1000,
)
LEASE_S = SHORT.lease_ms / 1000
DELAY_S = SHORT.lock_delay_ms / 1000
RENEW_S = SHORT.renew_ms / 1000


@pytest.mark.slow
async def test_mutual_exclusion_between_16_processes(
    backend: Backend, redis_client: AnyRedis, domain: str
) -> None:
    """Each worker does a non-atomic GET / sleep / SET of a counter under the lock:
    any overlap would lose an increment."""
    children: list[Child] = []
    try:
        for i in range(WORKERS):
            children.append(
                await Child.start(
                    "counter",
                    backend.url,
                    domain,
                    config_json(dataclasses.replace(SHORT, lease_ms=30_000, renew_ms=10_000)),
                    f"w{i}",
                    str(ROUNDS),
                )
            )
        for child in children:
            await child.expect("ready", timeout=60)
        for child in children:  # all start together, for maximal contention
            await child.send("go")
        results = [
            json.loads((await c.expect("done", timeout=90)).split(" ", 1)[1]) for c in children
        ]
        codes = [await c.finish() for c in children]
    finally:
        for child in children:
            await child.close()
    assert codes == [0] * WORKERS

    assert int(await redis_client.get(data_key(domain, "counter"))) == WORKERS * ROUNDS
    assert sum(r["overlaps"] for r in results) == 0
    assert int(await redis_client.get(data_key(domain, "inside"))) == 0
    # Fences, in the order the critical sections ran, strictly increase.
    log = [int(f) for f in await redis_client.lrange(data_key(domain, "fences"), 0, -1)]
    assert len(log) == WORKERS * ROUNDS
    assert all(a < b for a, b in itertools.pairwise(log))
    assert sorted(f for r in results for f in r["fences"]) == log


async def start_holder(backend: Backend, domain: str, key: str) -> tuple[Child, int, float]:
    child = await Child.start("hold", backend.url, domain, config_json(SHORT), "res", key)
    line = await child.expect("acquired", timeout=60)
    return child, int(line.split()[1]), time.monotonic()


@pytest.mark.slow
async def test_paused_holder_loses_its_grant_and_its_writes(
    backend: Backend, make_manager: Callable[..., Any], redis_client: AnyRedis, domain: str
) -> None:
    key = data_key(domain, "target")
    locks = await make_manager(SHORT)
    child, child_fence, acquired_at = await start_holder(backend, domain, key)
    try:
        child.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        grant = await locks.acquire("new-task", "new-agent", {"res": X}, timeout=15)
        granted_at = time.monotonic()
        # Not before the child's lease ran out plus the lock-delay ...
        assert granted_at - acquired_at >= LEASE_S + DELAY_S - 0.5, granted_at - acquired_at
        # ... and not much later.
        assert granted_at - stopped_at <= LEASE_S + DELAY_S + 2.5, granted_at - stopped_at
        assert grant.fence > child_fence
        await locks.fenced_write(key, grant, "writer", "new-holder")

        child.signal(signal.SIGCONT)
        continued_at = time.monotonic()
        lost = await child.expect("lost", timeout=10)
        assert time.monotonic() - continued_at <= RENEW_S + 1.0, "lost noticed too late"
        assert "expire" in lost, lost

        # Its write through the (lost) grant is refused ...
        await child.send("write")
        assert (await child.expect("write", timeout=10)).startswith("write refused"), child.lines
        # ... and so is one that was already under way with the old fence.
        await child.send("write-inflight")
        line = await child.expect("write", timeout=10)
        assert line == f"write refused FenceRejected {grant.fence}", line
        await child.send("status")
        assert (await child.expect("status", timeout=10)).startswith("status 1 ")
        await child.send("exit")
        assert await child.finish() == 0
    finally:
        await child.close()

    assert await redis_client.hget(key, "writer") == "new-holder"
    assert int(await redis_client.hget(key, "fence")) == grant.fence
    assert "lock:expired" in await event_types(locks)
    assert await locks.release(grant) is True


@pytest.mark.slow
async def test_killed_holder_lets_the_next_waiter_in(
    backend: Backend, make_manager: Callable[..., Any], domain: str
) -> None:
    locks = await make_manager(SHORT)
    child, child_fence, acquired_at = await start_holder(backend, domain, data_key(domain, "t"))
    try:
        waiter = asyncio.create_task(locks.acquire("next", "next-agent", {"res": X}, timeout=20))
        await wait_queued(locks, "res", 1)
        child.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await child.finish()
        grant = await asyncio.wait_for(waiter, 25)
        granted_at = time.monotonic()
    finally:
        await child.close()
    waited = granted_at - killed_at
    assert waited <= LEASE_S + DELAY_S + 2.0, f"next waiter got in only after {waited:.2f}s"
    assert waited >= DELAY_S - 0.1, f"lock-delay not applied ({waited:.2f}s)"
    assert granted_at - acquired_at >= LEASE_S + DELAY_S - 0.5
    assert grant.fence > child_fence
    types = await event_types(locks)
    assert "lock:expired" in types
    state = await locks.inspect_resource("res")
    assert [h.request for h in state.holders] == [grant.request_id]
    await locks.release(grant)
