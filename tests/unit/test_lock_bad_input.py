"""Bad input raises InvalidInput before the lock manager talks to Redis at all.

The client points at a closed port and counts its commands: had the manager sent
anything, the call would have failed with a connection error instead (and been counted).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from community_ade.errors import InvalidInput
from community_ade.locks import LockConfig, LockManager


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


class CountingRedis(Redis):
    calls: list[tuple[Any, ...]]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.calls.append(args)
        return await super().execute_command(*args, **options)


@pytest.fixture
async def dead_client() -> AsyncIterator[CountingRedis]:
    client = CountingRedis(
        host="127.0.0.1",
        port=closed_port(),
        decode_responses=True,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    client.calls = []
    yield client
    await client.aclose()


@pytest.fixture
async def locks(dead_client: CountingRedis) -> AsyncIterator[LockManager]:
    manager = LockManager(dead_client, LockConfig(), domain="bad-input")
    yield manager
    await manager.close()
    assert dead_client.calls == [], "the manager sent commands for bad input"


async def test_the_client_really_is_dead(dead_client: CountingRedis) -> None:
    # Proves the premise: any command would have failed (and been counted).
    with pytest.raises(redis.ConnectionError):
        await dead_client.ping()
    assert dead_client.calls
    dead_client.calls.clear()


@pytest.mark.parametrize(
    ("task", "agent", "resources", "timeout"),
    [
        ("t", "a", {"r": "write"}, None),  # unknown mode
        ("t", "a", {"r": "EXCLUSIVE"}, None),  # modes are case-sensitive values
        ("t", "a", {}, None),  # empty resource set
        ("t", "a", [], 1.0),
        ("t", "a", {"r": "exclusive"}, -1),  # negative timeout
        ("t", "a", {"r": "shared"}, -0.001),
        ("", "a", {"r": "shared"}, None),  # empty task
        ("t", "", {"r": "shared"}, None),  # empty agent
        ("t", "a", {"": "shared"}, None),  # empty resource name
        ("t", "a", {"has space": "shared"}, None),
        ("t", "a", {"{tag}": "shared"}, None),  # braces would break the hash tag
        ("t", "a", {"x" * 300: "shared"}, None),
        ("t", "a", {f"r{i}": "shared" for i in range(65)}, None),
    ],
)
async def test_acquire_rejects_bad_input_without_calling_redis(
    locks: LockManager, task: str, agent: str, resources: Any, timeout: float | None
) -> None:
    with pytest.raises(InvalidInput):
        await locks.acquire(task, agent, resources, timeout=timeout)


async def test_hold_rejects_bad_input_without_calling_redis(locks: LockManager) -> None:
    with pytest.raises(InvalidInput):
        async with locks.hold("t", "a", {"r": "sideways"}):
            pytest.fail("must not be entered")


@pytest.mark.parametrize("domain", ["a{b", "a}b", "with space", "d" * 65])
async def test_bad_domains_are_rejected(
    locks: LockManager, dead_client: CountingRedis, domain: str
) -> None:
    with pytest.raises(InvalidInput):
        await locks.acquire("t", "a", {"r": "shared"}, domain=domain)
    with pytest.raises(InvalidInput):
        await locks.inspect_resource("r", domain=domain)
    # The same as a manager's default domain.
    other = LockManager(dead_client, LockConfig(), domain=domain)
    with pytest.raises(InvalidInput):
        await other.acquire("t", "a", {"r": "shared"})
    await other.close()


async def test_other_calls_reject_bad_input(locks: LockManager) -> None:
    with pytest.raises(InvalidInput):
        await locks.set_capacity("agent", 0)
    with pytest.raises(InvalidInput):
        await locks.set_capacity("agent", -3)
    with pytest.raises(InvalidInput):
        await locks.set_capacity("bad agent", 2)
    with pytest.raises(InvalidInput):
        await locks.force_release("r", "")
    with pytest.raises(InvalidInput):
        await locks.force_release("r", "   ")
    with pytest.raises(InvalidInput):
        await locks.force_release("bad resource", "stuck")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lease_ms": 1000, "renew_ms": 1000},  # renewal must be shorter than the lease
        {"lease_ms": 1000, "renew_ms": 5000},
        {"lease_ms": 0},
        {"lease_ms": 1000, "renew_ms": 0},
        {"lock_delay_ms": -1},
        {"deadlock_timeout_ms": 0},
        {"backstop_ms": 0},
        {"default_capacity": 0},
    ],
)
def test_bad_lock_config_is_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidInput):
        LockConfig(**kwargs)
