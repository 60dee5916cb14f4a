"""Force release, done and audited together: the one operator action on locks that goes to
the audit log as well as the lock event stream (architecture §7). The API, the dashboard and
``ade locks release`` all call this, so none of them can release without the record."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.audit import log as audit
from community_ade.audit.chain import Actor
from community_ade.errors import InvalidInput, NotFound
from community_ade.locks.manager import LockManager


async def force_release(
    session: AsyncSession,
    locks: LockManager,
    actor: Actor,
    resource: str,
    reason: str,
    domain: str | None = None,
) -> tuple[str, list[str]]:
    """End every grant on ``resource``; returns the domain and the ended grants.

    The audit row is appended first, in the caller's transaction: if the release fails,
    the row rolls back with it; a release that happened commits with its record. Nothing
    held → ``NotFound`` (so the caller's transaction, and the row, roll back).
    """
    domain = domain or locks.domain
    reason = reason.strip()
    if not reason:
        raise InvalidInput("a force release needs a reason (it is recorded)")
    await audit.append(
        session,
        type="lock:force_released",
        actor=actor,
        subject=f"lock:{domain}",
        data={"resource": resource, "reason": reason, "domain": domain},
    )
    ended = await locks.force_release(resource, reason, actor=actor.id, domain=domain)
    if not ended:
        raise NotFound(f"no grant holds {resource!r} in lock domain {domain!r}")
    return domain, ended
