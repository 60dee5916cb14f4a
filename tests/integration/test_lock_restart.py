"""Fencing tokens keep increasing across a Redis restart that lost the counter.

Runs its own ``redis-server`` on a free loopback port (never the shared one)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import FAST, unavailable
from lockutil import PrivateRedis, eventually, holders_of, private_redis_server

from community_ade.errors import FenceRejected, LockLost, ServiceUnavailable
from community_ade.infra.redis_client import AnyRedis, open_redis
from community_ade.locks import Grant, LockManager

X = "exclusive"
CONFIG = dataclasses.replace(FAST, lease_ms=3000, renew_ms=500, lock_delay_ms=200)
KEY = "ade:test:{restart}:target"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def open_manager(private_redis: PrivateRedis) -> AsyncIterator[Callable[..., Any]]:
    """``await open_manager()`` → a LockManager on a new client of the private server."""
    opened: list[tuple[AnyRedis, LockManager]] = []

    async def make() -> LockManager:
        client = await open_redis(private_redis.url)
        manager = LockManager(client, CONFIG, domain="restart")
        opened.append((client, manager))
        return manager

    yield make
    for client, manager in opened:
        await manager.close()
        await client.aclose()


async def hold_some(locks: LockManager) -> list[Grant]:
    grants = [await locks.acquire(f"t{i}", "agent-1", {f"res-{i}": X}) for i in range(3)]
    assert [g.fence for g in grants] == sorted({g.fence for g in grants})
    await locks.fenced_write(KEY, grants[0], "writer", "old")
    return grants


@pytest.mark.slow
async def test_fences_increase_across_a_restart_that_lost_the_counter(
    private_redis: PrivateRedis, open_manager: Callable[..., Any]
) -> None:
    old = await open_manager()
    before = await hold_some(old)
    f1 = max(g.fence for g in before)

    private_redis.shutdown_nosave()
    private_redis.start()  # same port, empty: the counter is gone

    locks = await open_manager()  # a new client and manager, as after a process restart
    assert await locks.redis.dbsize() == 0
    after = await locks.acquire("t9", "agent-2", {"res-0": X}, timeout=10)
    assert after.fence > f1
    again = await locks.acquire("t10", "agent-3", {"res-1": X}, timeout=10)
    assert again.fence > after.fence

    # The new holder writes; a write with the pre-restart fence is refused.
    await locks.fenced_write(KEY, after, "writer", "new")
    stale = dataclasses.replace(before[0], lost=asyncio.Event(), lost_reason=None)
    with pytest.raises(FenceRejected) as info:
        await locks.fenced_write(KEY, stale, "writer", "stale")
    assert info.value.newest == after.fence
    assert await locks.redis.hget(KEY, "writer") == "new"
    assert await locks.release(after) is True
    assert await locks.release(again) is True


@pytest.mark.slow
async def test_the_same_manager_survives_a_restart(
    private_redis: PrivateRedis, open_manager: Callable[..., Any]
) -> None:
    """A restart is transient: once Redis is back, the same client and manager work again
    (reconnect, scripts reloaded: Functions library or EVALSHA) and the grants it lost
    are reported lost."""
    locks = await open_manager()
    before = await hold_some(locks)
    f1 = max(g.fence for g in before)

    private_redis.shutdown_nosave()
    private_redis.start()

    after = await locks.acquire("t9", "agent-2", {"res-0": X}, timeout=10)
    assert after.fence > f1
    await asyncio.wait_for(asyncio.gather(*(g.lost.wait() for g in before)), 10)
    assert not after.lost.is_set()
    with pytest.raises(LockLost):
        await locks.fenced_write(KEY, before[0], "writer", "stale")
    await locks.fenced_write(KEY, after, "writer", "new")
    assert await locks.release(after) is True
    # The domain registry went with the data: the manager registers its domain again
    # (the event relay and `ade locks` list domains from it).
    next_grant = await locks.acquire("t10", "agent-2", {"res-1": X}, timeout=10)
    assert await locks.domains() == ["restart"]
    assert await locks.release(next_grant) is True


async def lock_libraries(client: AnyRedis) -> list[str]:
    """Names of the lock manager's Functions libraries on the server."""
    try:
        listed = await client.function_list()
    except redis.ResponseError:
        unavailable("this redis-server has no Redis Functions (Redis < 7)")
    return [str(lib[1]) for lib in listed if str(lib[1]).startswith("ade_lock_")]


async def test_a_lost_functions_library_is_loaded_again(
    open_manager: Callable[..., Any],
) -> None:
    """On Redis >= 7 the scripts run as one Functions library. Losing it while Redis
    stays up (FUNCTION FLUSH, a failover to a node without it) costs one reload, and
    the manager's calls go on: the acquire, its release, and the grants held meanwhile."""
    locks = await open_manager()
    held = await locks.acquire("t1", "agent-1", {"held": X})
    assert len(await lock_libraries(locks.redis)) == 1

    await locks.redis.function_flush()
    assert await lock_libraries(locks.redis) == []

    grant = await locks.acquire("t2", "agent-1", {"res": X})
    assert grant.fence > held.fence
    assert len(await lock_libraries(locks.redis)) == 1
    assert not held.lost.is_set()
    assert await locks.release(grant) is True
    assert await locks.release(held) is True


async def test_a_burst_of_calls_loads_the_library_once(open_manager: Callable[..., Any]) -> None:
    """Loading compiles the whole library on the server: concurrent first calls of a
    manager, and concurrent calls that all find the library gone, load it once."""
    locks = await open_manager()
    await lock_libraries(locks.redis)  # skips without Functions
    await locks.redis.config_resetstat()

    async def burst(tag: str) -> None:
        grants = await asyncio.gather(
            *(locks.acquire(f"{tag}{i}", f"agent-{i}", {f"{tag}-res-{i}": X}) for i in range(20))
        )
        assert all([await locks.release(g) for g in grants])

    def loads(stats: dict[str, Any]) -> int:
        return int(stats.get("cmdstat_function|load", {}).get("calls", 0))

    await burst("a")
    assert loads(await locks.redis.info("commandstats")) == 1
    await locks.redis.function_flush()
    await burst("b")
    assert loads(await locks.redis.info("commandstats")) == 2


@pytest.mark.slow
async def test_a_release_that_failed_while_redis_was_down_happens_once_it_is_back(
    private_redis: PrivateRedis, open_manager: Callable[..., Any]
) -> None:
    """Redis comes back with its data (here: a snapshot) after a release failed: the
    grant must not live on, renewed with the agent's session for its other grant."""
    locks = await open_manager()
    kept = await locks.acquire("t1", "agent-1", {"kept": X})
    leaked = await locks.acquire("t2", "agent-1", {"leaked": X})
    await locks.redis.save()
    private_redis.stop()
    with pytest.raises(ServiceUnavailable):
        await locks.release(leaked)
    private_redis.start()  # on its snapshot: both grants are back
    await eventually(
        lambda: holders_of(locks, "leaked"),
        lambda holders: holders == [],
        timeout=2 * CONFIG.lease_ms / 1000,
        what="the failed release done",
    )
    assert await holders_of(locks, "kept") == [kept.request_id]
    assert not kept.lost.is_set()
    assert await locks.release(kept) is True
