"""The audit log, newest first with keyset paging, and the hash chain's verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from community_ade.api.deps import RuntimeDep, SessionDep
from community_ade.api.routes.audit import verify_chain
from community_ade.audit import log as audit
from community_ade.audit.chain import ChainReport
from community_ade.auth.principal import Permission, require
from community_ade.dashboard.lookups import actor_names, subject_agent
from community_ade.dashboard.web import NavItem, PageRoute, VisitorDep, render
from community_ade.errors import RateLimited

router = APIRouter(route_class=PageRoute)
nav = NavItem("Audit log", "/audit", Permission.AUDIT_READ, order=60)

PAGE_SIZE = 50


@router.get("/audit")
async def audit_page(
    request: Request,
    visitor: VisitorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    type: Annotated[str, Query(max_length=64)] = "",
    subject: Annotated[str, Query(max_length=200)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    require(visitor.principal, Permission.AUDIT_READ)
    events = await audit.list_events(
        session, type=type or None, subject=subject or None, before_seq=before, limit=PAGE_SIZE
    )
    try:
        report: ChainReport | None = await verify_chain(runtime, visitor.principal)
    except RateLimited:
        report = None  # verified often enough this minute: the page shows the events only
    return render(
        request,
        "audit/index.html",
        {
            "events": events,
            "report": report,
            # Actors and ``agent:<id>`` subjects, shown by name.
            "names": await actor_names(
                session,
                [e.actor_id for e in events] + [subject_agent(e.subject) for e in events],
            ),
            "type": type,
            "subject": subject,
            "next_before": events[-1].seq if len(events) == PAGE_SIZE else None,
        },
        visitor=visitor,
    )
