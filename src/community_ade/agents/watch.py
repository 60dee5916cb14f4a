"""The health watch: re-assess every live agent periodically and publish ``agent:health``
when an agent's status changes (a lease lapsing makes no request, so something has to
look).

Health changes are not audit-worthy, so they do not go through the audit log. Each
change is appended to the capped stream ``ade:agent:events:{<namespace>}`` (the
namespace is the lock domain, as for the events stream) in the events stream's own
entry shape (``type``, ``subject`` = ``agent:<id>``, ``e`` = the architecture §7 envelope as
JSON, without ``seq``: actor ``system``); the event relay (``events.relay``) carries
them to WebSocket clients as it carries lock events.

Several servers may watch at once: each agent's last published status is swapped
atomically (``SET ade:agent:{<agent>}:status <status> GET``), and only the server whose
swap changed it publishes, so one change is published once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from community_ade.agents.health import Health
from community_ade.agents.leases import redis_call
from community_ade.agents.service import AgentService
from community_ade.events.system import publish
from community_ade.infra.aio import Incident, stop_if_cancelled
from community_ade.runtime import Runtime
from community_ade.storage.models import Agent

log = logging.getLogger(__name__)


def status_key(agent_id: uuid.UUID) -> str:
    return f"ade:agent:{{{agent_id}}}:status"


@dataclass(frozen=True)
class HealthChange:
    agent_id: uuid.UUID
    name: str
    previous: str | None
    health: Health

    def data(self) -> dict[str, Any]:
        h = self.health
        return {
            "name": self.name,
            "status": h.status.value,
            "previous": self.previous,
            "reasons": list(h.reasons),
            "active_tasks": h.active_tasks,
            "capacity": h.capacity,
            "success_rate": h.success_rate,
            "last_seen": None if h.last_seen is None else h.last_seen.isoformat(),
        }


async def assess_all(runtime: Runtime) -> list[tuple[Agent, Health]]:
    """The health of every live agent, each in a short read-only transaction of its own
    (on SQLite a transaction holds the database's one write lock)."""
    async with runtime.sessions() as session:
        agents = (await session.scalars(select(Agent).where(Agent.deleted_at.is_(None)))).all()
    assessed = []
    for agent in agents:
        async with runtime.sessions() as session:
            assessed.append((agent, await AgentService.of(runtime, session).assess(agent)))
    return assessed


async def publish_changes(runtime: Runtime) -> list[HealthChange]:
    """One pass: assess, swap each status, publish what this server saw change."""
    changes = []
    for agent, health in await assess_all(runtime):
        status = health.status.value
        swapped = await redis_call(runtime.redis.set(status_key(agent.id), status, get=True))
        previous = swapped if isinstance(swapped, str) else None
        if previous == status:
            continue
        change = HealthChange(agent.id, agent.name, previous, health)
        await publish(
            runtime.redis,
            runtime.settings.lock_domain,
            "agent:health",
            f"agent:{agent.id}",
            change.data(),
        )
        changes.append(change)
    return changes


async def _pass(runtime: Runtime, incident: Incident) -> None:
    try:
        changes = await publish_changes(runtime)
    except Exception as exc:  # the next pass retries; the interval is the backoff
        incident.failed(exc)
        return
    incident.cleared()
    for change in changes:
        log.info(
            "agent %s is %s (was %s)",
            change.name,
            change.health.status.value,
            change.previous or "unknown",
        )


async def watch_health(runtime: Runtime) -> None:
    """Publish health changes every ``ADE_AGENT_HEALTH_INTERVAL_SECONDS`` until cancelled."""
    incident = Incident("agent health pass", log)
    while True:
        stop_if_cancelled()
        await asyncio.sleep(runtime.settings.agent_health_interval_seconds)
        await _pass(runtime, incident)
