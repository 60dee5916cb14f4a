"""Standing delegations: "if X approves, count it as my approval too" (architecture §4)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from community_ade.api.deps import GovernanceDep, SessionDep
from community_ade.approvals.risk import ResourceType
from community_ade.auth.principal import Permission
from community_ade.dashboard.lookups import usernames
from community_ade.dashboard.web import NavItem, PageRoute, VisitorDep, redirect, render
from community_ade.errors import InvalidInput
from community_ade.storage.models import User, utcnow

router = APIRouter(route_class=PageRoute)
nav = NavItem("Delegations", "/delegations", Permission.DELEGATION_READ, order=40)


@router.get("/delegations")
async def delegations_page(
    request: Request, visitor: VisitorDep, governance: GovernanceDep, session: SessionDep
) -> HTMLResponse:
    rows = await governance.list_delegations(visitor.principal)
    names = await usernames(session, [r.delegator_id for r in rows] + [r.delegate_id for r in rows])
    people = await session.scalars(
        select(User.username)
        .where(User.disabled_at.is_(None), User.id != visitor.principal.id)
        .order_by(User.username)
        .limit(200)
    )
    return render(
        request,
        "delegations/index.html",
        {
            "rows": rows,
            "names": names,
            "people": list(people),
            "resource_types": [t.value for t in ResourceType],
            "now": utcnow(),
            "default_until": (utcnow() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
        },
        visitor=visitor,
    )


def _utc(value: str, field: str) -> datetime:
    """A ``datetime-local`` form value, taken as UTC (the page says so)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field}: not a date and time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.post("/delegations")
async def create_delegation(
    visitor: VisitorDep,
    governance: GovernanceDep,
    session: SessionDep,
    delegate: Annotated[str, Form(min_length=1, max_length=64)],
    valid_until: Annotated[str, Form(max_length=40)],
    task_types: Annotated[str, Form(max_length=2000)] = "*",
    resource_types: Annotated[list[ResourceType] | None, Form()] = None,
    max_risk: Annotated[float, Form(ge=0, le=100)] = 100.0,
) -> Response:
    user = await session.scalar(select(User).where(User.username == delegate))
    if user is None:
        raise InvalidInput(f"no user {delegate!r}")
    types = [t.strip() for t in task_types.split(",") if t.strip()] or ["*"]
    await governance.create_delegation(
        visitor.principal,
        delegate=user.id,
        valid_from=utcnow(),
        valid_until=_utc(valid_until, "valid until"),
        task_types=types,
        resource_types=resource_types or [],
        max_risk=max_risk,
    )
    return redirect("/delegations", flash=f"{delegate}'s approvals now also count as yours.")


@router.post("/delegations/{delegation_id}/revoke")
async def revoke_delegation(
    delegation_id: uuid.UUID, visitor: VisitorDep, governance: GovernanceDep
) -> Response:
    await governance.revoke_delegation(visitor.principal, delegation_id)
    return redirect("/delegations", flash="Delegation revoked.")
