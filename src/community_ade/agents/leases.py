"""Agent leases over HTTP (architecture §8 ``/leases``): how an agent process shows it is alive.

A lease is opened for one agent, renewed by heartbeats and closed on exit; a lease not
renewed within its length lapses, and the agent's health turns offline once it has no
live lease and no lock-manager session. Any API process can serve any lease's heartbeat:
the state lives in Redis, not in the process that opened it.

Keys (every key of one agent shares its hash tag, so they live in one Cluster slot):

- ``ade:agent:lease:{<lease>}``  STRING JSON {agent, lease_ms, opened_at, by}; expires
  with the lease (PX, renewed by PEXPIRE), so a lapsed lease is simply gone.
- ``ade:agent:{<agent>}:leases`` ZSET   lease id -> deadline (ms since the epoch); read by
  health. Lapsed members are pruned when read.
- ``ade:agent:{<agent>}:seen``   STRING the time of the newest heartbeat (ms).

Deadlines come from this process's clock (API processes are assumed NTP-synchronised);
Redis's own expiry of the lease hash is what ends a lease.

These leases do not hold apply locks: the lock manager keeps its sessions for the grants
a worker holds (see docs/agents.md for the method that would let a lease be a lock-manager
session of its own).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis

from community_ade.errors import InvalidInput, NotFound, ServiceUnavailable
from community_ade.infra.redis_client import AnyRedis

T = TypeVar("T")
LEASE_SECONDS = (1.0, 3600.0)


def _lease_key(lease_id: uuid.UUID) -> str:
    return f"ade:agent:lease:{{{lease_id}}}"


def _leases_key(agent_id: uuid.UUID) -> str:
    return f"ade:agent:{{{agent_id}}}:leases"


def _seen_key(agent_id: uuid.UUID) -> str:
    return f"ade:agent:{{{agent_id}}}:seen"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def from_ms(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True)
class HeldLocks:
    """Apply locks held for a lease (``lease_locks``): the grant's task, resources
    (name -> mode) and fencing token."""

    task: str
    resources: dict[str, str]
    fence: int


@dataclass(frozen=True)
class Lease:
    id: uuid.UUID
    agent_id: uuid.UUID
    lease_ms: int
    deadline: datetime
    locks: HeldLocks | None = None
    lost: str | None = None  # why its locks ended while held


@dataclass(frozen=True)
class Presence:
    """What the leases say about one agent, for its health."""

    deadlines: tuple[datetime, ...]
    last_heartbeat: datetime | None


async def redis_call(awaitable: Awaitable[T]) -> T:
    """Await a Redis command; an unreachable Redis becomes ``ServiceUnavailable``."""
    try:
        return await awaitable
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise ServiceUnavailable(f"Redis unreachable: {exc}") from exc


class LeaseStore:
    def __init__(self, client: AnyRedis) -> None:
        self.redis = client

    async def open(self, agent_id: uuid.UUID, lease_seconds: float, *, opened_by: str) -> Lease:
        low, high = LEASE_SECONDS
        if not low <= lease_seconds <= high:
            raise InvalidInput(
                f"a lease lasts {low:g} to {high:g} seconds, not {lease_seconds}",
                errors=[
                    {"path": "lease_seconds", "message": f"must be between {low:g} and {high:g}"}
                ],
            )
        lease_id = uuid.uuid4()
        lease_ms = round(lease_seconds * 1000)
        now = _now_ms()
        record = {"agent": str(agent_id), "lease_ms": lease_ms, "opened_at": now, "by": opened_by}
        await redis_call(self.redis.set(_lease_key(lease_id), json.dumps(record), px=lease_ms))
        await self._renewed(agent_id, lease_id, now, lease_ms)
        return Lease(lease_id, agent_id, lease_ms, from_ms(now + lease_ms))

    async def get(self, lease_id: uuid.UUID) -> Lease:
        """The lease, or ``NotFound`` once it lapsed or was closed."""
        key = _lease_key(lease_id)
        raw = await redis_call(self.redis.get(key))
        ttl = await redis_call(self.redis.pttl(key))
        if raw is None or ttl < 0:
            raise NotFound(
                f"no live lease {lease_id}: it lapsed or was closed; open a new one",
                lease_id=str(lease_id),
            )
        record = json.loads(raw)
        locks = record.get("locks")
        return Lease(
            lease_id,
            uuid.UUID(record["agent"]),
            int(record["lease_ms"]),
            from_ms(_now_ms() + ttl),
            locks=None if locks is None else HeldLocks(**locks),
            lost=record.get("lost"),
        )

    async def alive(self, lease_id: uuid.UUID) -> bool:
        return bool(await redis_call(self.redis.exists(_lease_key(lease_id))))

    async def record_locks(self, lease: Lease, held: HeldLocks) -> Lease:
        """Note the locks taken for the lease, so every API process can show them."""
        await self._update(lease.id, locks=dataclasses.asdict(held))
        return dataclasses.replace(lease, locks=held)

    async def mark_lost(self, lease: Lease, reason: str) -> None:
        """Note that the lease's locks ended while held; its next heartbeat says so."""
        await self._update(lease.id, lost=reason)

    async def _update(self, lease_id: uuid.UUID, **fields: Any) -> None:
        """Change fields of a live lease's record, keeping its expiry (never reviving a
        lapsed lease)."""
        key = _lease_key(lease_id)
        raw = await redis_call(self.redis.get(key))
        if raw is None:
            return
        record = {**json.loads(raw), **fields}
        await redis_call(self.redis.set(key, json.dumps(record), keepttl=True, xx=True))

    async def heartbeat(self, lease: Lease) -> Lease:
        """Renew for another full lease; ``NotFound`` if it lapsed meanwhile."""
        now = _now_ms()
        if not await redis_call(self.redis.pexpire(_lease_key(lease.id), lease.lease_ms)):
            raise NotFound(
                f"lease {lease.id} lapsed before this heartbeat; open a new one",
                lease_id=str(lease.id),
            )
        await self._renewed(lease.agent_id, lease.id, now, lease.lease_ms)
        return dataclasses.replace(lease, deadline=from_ms(now + lease.lease_ms))

    async def close(self, lease: Lease) -> None:
        await redis_call(self.redis.delete(_lease_key(lease.id)))
        await redis_call(self.redis.zrem(_leases_key(lease.agent_id), str(lease.id)))

    async def close_all(self, agent_id: uuid.UUID) -> int:
        """Close every lease of an agent (it was deleted); how many were live."""
        members: list[Any] = await redis_call(self.redis.zrange(_leases_key(agent_id), 0, -1))
        for member in members:
            await redis_call(self.redis.delete(_lease_key(uuid.UUID(member))))
        await redis_call(self.redis.delete(_leases_key(agent_id)))
        return len(members)

    async def presence(self, agent_id: uuid.UUID) -> Presence:
        key = _leases_key(agent_id)
        now = _now_ms()
        await redis_call(self.redis.zremrangebyscore(key, "-inf", now))
        live: list[Any] = await redis_call(self.redis.zrange(key, 0, -1, withscores=True))
        seen = await redis_call(self.redis.get(_seen_key(agent_id)))
        return Presence(
            deadlines=tuple(from_ms(score) for _, score in live),
            last_heartbeat=None if seen is None else from_ms(int(seen)),
        )

    async def _renewed(
        self, agent_id: uuid.UUID, lease_id: uuid.UUID, now: int, lease_ms: int
    ) -> None:
        await redis_call(self.redis.zadd(_leases_key(agent_id), {str(lease_id): now + lease_ms}))
        await redis_call(self.redis.set(_seen_key(agent_id), str(now)))
