"""The audit log: filterable, keyset-paginated, and verifiable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from community_ade.api.deps import PrincipalApartDep, PrincipalDep, RuntimeDep, SessionDep
from community_ade.api.schemas import MAX_SEQ, AuditEventOut, AuditPage, VerifyOut
from community_ade.audit import log as audit
from community_ade.audit.chain import ChainReport
from community_ade.auth.principal import Permission, Principal, require
from community_ade.auth.throttle import RateLimit
from community_ade.runtime import Runtime
from community_ade.storage import db

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


async def verify_chain(runtime: Runtime, principal: Principal) -> ChainReport:
    """Verify the whole chain on one read snapshot that holds up no writer; at most
    ``ADE_AUDIT_VERIFY_PER_MINUTE`` times a minute per caller (``RateLimited``)."""
    settings = runtime.settings
    limit = RateLimit(
        runtime.redis,
        settings.lock_domain,
        "audit verifications",
        settings.audit_verify_per_minute,
        window_seconds=60,
    )
    await limit.hit(str(principal.id))
    async with db.snapshot_sessions(runtime.sessions).begin() as session:
        return await audit.verify_log(session)


@router.get("/verify", response_model=VerifyOut)
async def verify_audit(principal: PrincipalApartDep, runtime: RuntimeDep) -> VerifyOut:
    """Re-hash the whole chain: an edited, deleted or reordered row is reported. It reads
    one snapshot without holding up writers, and is rate-limited per caller
    (``ADE_AUDIT_VERIFY_PER_MINUTE``)."""
    require(principal, Permission.AUDIT_READ)
    report = await verify_chain(runtime, principal)
    return VerifyOut(
        ok=report.ok,
        checked=report.checked,
        first_bad_seq=report.first_bad_seq,
        problem=report.problem,
    )
