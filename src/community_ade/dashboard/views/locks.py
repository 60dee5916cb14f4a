"""Apply locks: holders and queues per resource, agent sessions and permits, deadlock
incidents and recent lock events; admins force-release a resource with a reason."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from community_ade.api.deps import RuntimeDep, SessionDep
from community_ade.approvals.service import actor_of
from community_ade.audit.force_release import force_release
from community_ade.auth.principal import Permission, require
from community_ade.dashboard.lookups import agent_names
from community_ade.dashboard.web import NavItem, PageRoute, VisitorDep, redirect, render
from community_ade.locks.model import MAX_RESOURCE_NAME
from community_ade.settings import DOMAIN_PATTERN

router = APIRouter(route_class=PageRoute)
nav = NavItem("Locks", "/locks", Permission.LOCK_READ, order=30)

EVENTS_SHOWN = 50
# Deadlocks are rare: look further back for them than for the event list.
DEADLOCK_SCAN = 1000


@router.get("/locks")
async def locks_page(
    request: Request,
    visitor: VisitorDep,
    runtime: RuntimeDep,
    session: SessionDep,
    domain: Annotated[str | None, Query(pattern=DOMAIN_PATTERN)] = None,
) -> HTMLResponse:
    require(visitor.principal, Permission.LOCK_READ)
    locks = runtime.locks
    name = domain or locks.domain
    overview = await locks.inspect_domain(domain=name, limit=200)
    events = await locks.events(domain=name, count=DEADLOCK_SCAN)
    agents: list[str | None] = [s.agent for s in overview.sessions]
    for resource in overview.resources:
        agents += [r.agent for r in (*resource.holders, *resource.queue)]
    agents += [e.get("agent") for e in events[:EVENTS_SHOWN]]
    return render(
        request,
        "locks/index.html",
        {
            "domain": name,
            "domains": sorted({*await locks.domains(), name}),
            "overview": overview,
            "events": events[:EVENTS_SHOWN],
            "deadlocks": [e for e in events if e.get("type") == "lock:deadlock"],
            "agent_names": await agent_names(session, agents),
        },
        visitor=visitor,
    )


@router.post("/locks/force-release")
async def force_release_page(
    visitor: VisitorDep,
    runtime: RuntimeDep,
    session: SessionDep,
    resource: Annotated[str, Form(min_length=1, max_length=MAX_RESOURCE_NAME)],
    reason: Annotated[str, Form(min_length=1, max_length=500)],
    domain: Annotated[str, Form(pattern=DOMAIN_PATTERN)],
) -> Response:
    require(visitor.principal, Permission.LOCK_ADMIN)
    domain, grants = await force_release(
        session, runtime.locks, actor_of(visitor.principal), resource, reason, domain
    )
    ended = len(grants)
    return redirect(
        f"/locks?domain={domain}",
        flash=f"Force-released {resource}: {ended} grant{'' if ended == 1 else 's'} ended.",
    )
