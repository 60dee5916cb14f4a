"""Apply locks held over HTTP (architecture §5: "locks are also reachable over HTTP, leases
with heartbeat, for agents not written in Python").

A lease opened with resources makes the API process that served it acquire them for the
agent through the lock manager. That process holds the grant (the lock manager's own
session heartbeat keeps it) exactly as long as the HTTP lease lives: a watcher per grant
releases it as soon as the lease is closed or lapses — whichever API process served the
last heartbeat or the close, since the lease itself lives in Redis. Should the holding
process die, its lock-manager session lapses and frees the grant anyway.

A grant that ends while held (force release, a lost lock-manager session) is written
into the lease record, so the agent's next heartbeat learns it (``409 lock_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref

from community_ade.agents.leases import Lease, LeaseStore
from community_ade.errors import AdeError
from community_ade.infra.aio import Incident, wait_event
from community_ade.locks import LockManager
from community_ade.locks.manager import Grant
from community_ade.locks.model import ResourceSpec

log = logging.getLogger(__name__)

# How often a watcher looks whether its lease still lives.
POLL_SECONDS = 0.5


class LeaseLocks:
    """The grants this process holds for HTTP leases (one registry per lock manager)."""

    def __init__(self, locks: LockManager, store: LeaseStore) -> None:
        self.locks = locks
        self.store = store
        self.grants: dict[uuid.UUID, Grant] = {}
        self.watchers: dict[uuid.UUID, asyncio.Task[None]] = {}

    @classmethod
    def of(cls, locks: LockManager, store: LeaseStore) -> LeaseLocks:
        found = _REGISTRY.get(locks)
        if found is None:
            found = _REGISTRY[locks] = cls(locks, store)
        return found

    async def take(
        self, lease: Lease, task: str, resources: ResourceSpec, *, wait_seconds: float
    ) -> Grant:
        """Acquire ``resources`` for the lease's agent (waiting up to ``wait_seconds``)
        and hold them while the lease lives."""
        grant = await self.locks.acquire(task, str(lease.agent_id), resources, timeout=wait_seconds)
        self.grants[lease.id] = grant
        self.watchers[lease.id] = asyncio.create_task(
            self._watch(lease, grant), name=f"ade-lease-locks-{lease.id}"
        )
        return grant

    async def release(self, lease_id: uuid.UUID) -> bool:
        """Release the lease's grant now if this process holds it (closing a lease served
        by another process is noticed by that process's watcher)."""
        watcher = self.watchers.pop(lease_id, None)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        grant = self.grants.pop(lease_id, None)
        return grant is not None and await self.locks.release(grant)

    @classmethod
    async def close_for(cls, locks: LockManager) -> None:
        """Release every grant held for leases through ``locks`` (the server stops)."""
        found = _REGISTRY.pop(locks, None)
        if found is None:
            return
        for lease_id in list(found.grants):
            with contextlib.suppress(AdeError):
                await found.release(lease_id)

    async def _watch(self, lease: Lease, grant: Grant) -> None:
        incident = Incident(f"lease {lease.id}: checking it", log)
        while True:
            if await wait_event(grant.lost, POLL_SECONDS):
                reason = grant.lost_reason or "lost"
                log.warning("locks of lease %s lost: %s", lease.id, reason)
                with contextlib.suppress(AdeError):
                    await self.store.mark_lost(lease, reason)
                break
            try:
                alive = await self.store.alive(lease.id)
            except Exception as exc:  # Redis briefly away: the lock session keeps the grant
                incident.failed(exc)
                continue
            incident.cleared()
            if not alive:
                break
        self.watchers.pop(lease.id, None)
        self.grants.pop(lease.id, None)
        with contextlib.suppress(AdeError):
            await self.locks.release(grant)


# One registry per lock manager (so per process and Runtime), forgotten with it.
_REGISTRY: weakref.WeakKeyDictionary[LockManager, LeaseLocks] = weakref.WeakKeyDictionary()
