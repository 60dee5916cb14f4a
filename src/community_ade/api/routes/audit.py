"""The audit log: filterable, keyset-paginated, and verifiable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from community_ade.api.deps import PrincipalDep, SessionDep
from community_ade.api.schemas import MAX_SEQ, AuditEventOut, AuditPage, VerifyOut
from community_ade.audit import log as audit
from community_ade.auth.principal import Permission, require

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
async def list_audit(
    principal: PrincipalDep,
    session: SessionDep,
    type: Annotated[str | None, Query(max_length=64)] = None,
    subject: Annotated[str | None, Query(max_length=200)] = None,
    actor_id: Annotated[str | None, Query(max_length=80)] = None,
    since_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    before_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> AuditPage:
    """Events newest first; pass ``next_before_seq`` as ``before_seq`` for the next page."""
    require(principal, Permission.AUDIT_READ)
    events = await audit.list_events(
        session,
        type=type,
        subject=subject,
        actor_id=actor_id,
        since_seq=since_seq,
        before_seq=before_seq,
        limit=limit,
    )
    items = [AuditEventOut.model_validate(audit.envelope(e)) for e in events]
    more = len(events) == limit and events[-1].seq > 1
    return AuditPage(items=items, next_before_seq=events[-1].seq if more else None)


@router.get("/verify", response_model=VerifyOut)
async def verify_audit(principal: PrincipalDep, session: SessionDep) -> VerifyOut:
    """Re-hash the whole chain: an edited, deleted or reordered row is reported."""
    require(principal, Permission.AUDIT_READ)
    report = await audit.verify_log(session)
    return VerifyOut(
        ok=report.ok,
        checked=report.checked,
        first_bad_seq=report.first_bad_seq,
        problem=report.problem,
    )
