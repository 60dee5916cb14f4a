"""The e-mail outbox in SQL (IO): review-request events in, due messages out.

``dispatch`` reads the audit log past the ``email`` cursor and, for every
``approval:requested``, ``approval:reminder`` and ``approval:escalated`` event, writes
one outbox row per reviewer who may still decide the task (the open slots' eligible
reviewers, as ``review_request.gather`` reads them from the review engine) and has an
e-mail address; each row's ``not_before`` and ``digest`` come from that person's
preferences (``preferences.decide``). The rows and the moved cursor commit together, so
a crash loses or repeats nothing; a unique (event, recipient) pair and a compare-and-set
of the cursor keep two processes from writing the same rows twice.

``claim_due`` takes the rows whose time came (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
SQLite has one writer) and leases them to this process for a while, so another server's
sender does not send them too; ``settle`` records each one's outcome: sent, skipped (the
task was decided or the person may no longer decide it), retried later with backoff, or
failed for good.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.review_request import gather
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState
from community_ade.errors import NotFound
from community_ade.execution.rules import backoff_delay
from community_ade.notifications.preference_store import preferences_of
from community_ade.notifications.preferences import Channel, DeferUntil, Digest, Skip, decide
from community_ade.storage.models import AuditEvent, EmailOutbox, NotificationCursor

CURSOR = "email"
# The audit events that ask for an e-mail, and the kind of message each one sends.
KINDS = {
    "approval:requested": "requested",
    "approval:reminder": "reminder",
    "approval:escalated": "escalated",
}
BATCH = 200
ERROR_CHARS = 500


async def dispatch(session: AsyncSession, *, public_url: str, now: datetime) -> int:
    """Outbox rows for the review requests logged since the last call; how many. The
    caller commits; an ``IntegrityError`` means another process did the same work first
    (roll back and carry on)."""
    cursor = await session.get(NotificationCursor, CURSOR, with_for_update=True)
    head = await session.scalar(select(func.max(AuditEvent.seq))) or 0
    if cursor is None:
        # The first run starts at the present: nobody is mailed about last year's tasks.
        session.add(NotificationCursor(name=CURSOR, seq=head))
        await session.flush()
        return 0
    start = cursor.seq
    if head <= start:
        return 0
    events = list(
        await session.execute(
            select(AuditEvent.seq, AuditEvent.type, AuditEvent.subject)
            .where(AuditEvent.seq > start, AuditEvent.seq <= head)
            .where(AuditEvent.type.in_(KINDS))
            .order_by(AuditEvent.seq)
            .limit(BATCH)
        )
    )
    end = events[-1].seq if len(events) == BATCH else head
    added = 0
    for seq, event_type, subject in events:
        added += await _rows_for(session, seq, KINDS[event_type], subject, public_url, now)
    moved = await session.execute(
        update(NotificationCursor)
        .where(NotificationCursor.name == CURSOR, NotificationCursor.seq == start)
        .values(seq=end)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise IntegrityError("email cursor moved by another process", None, Exception())
    await session.flush()
    return added


async def _rows_for(
    session: AsyncSession, seq: int, kind: str, subject: str, public_url: str, now: datetime
) -> int:
    _, _, task_text = subject.partition(":")
    try:
        request = await gather(session, uuid.UUID(task_text), public_url=public_url)
    except (ValueError, NotFound):
        return 0
    if TaskState(request.state) not in OPEN_FOR_REVIEW:
        return 0
    people = [p for p in request.reviewers if p.email]
    prefs = await preferences_of(session, [uuid.UUID(p.id) for p in people])
    added = 0
    for person in people:
        user = uuid.UUID(person.id)
        plan = decide(prefs[user], Channel.EMAIL, now)
        if isinstance(plan, Skip):
            continue
        at = plan.at if isinstance(plan, DeferUntil | Digest) else now
        session.add(
            EmailOutbox(
                event_seq=seq,
                kind=kind,
                user_id=user,
                task_id=request.task_id,
                digest=isinstance(plan, Digest),
                not_before=at,
                attempts=0,
            )
        )
        added += 1
    return added


@dataclass(frozen=True)
class Claimed:
    """Due rows of one message: a single task, or one person's digest."""

    user_id: uuid.UUID
    rows: tuple[EmailOutbox, ...]


async def claim_due(
    session: AsyncSession, *, now: datetime, lease: timedelta, limit: int = 100
) -> list[Claimed]:
    """Lease the due rows to the caller (commit before sending), grouped by message."""
    due = (
        select(EmailOutbox)
        .where(EmailOutbox.state == "pending", EmailOutbox.not_before <= now)
        .where((EmailOutbox.claimed_until.is_(None)) | (EmailOutbox.claimed_until < now))
        .order_by(EmailOutbox.not_before)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(await session.scalars(due))
    for row in rows:
        row.claimed_until = now + lease
    await session.flush()
    digests: dict[uuid.UUID, list[EmailOutbox]] = {}
    messages = []
    for row in rows:
        if row.digest:
            digests.setdefault(row.user_id, []).append(row)
        else:
            messages.append(Claimed(row.user_id, (row,)))
    messages += [Claimed(user, tuple(group)) for user, group in digests.items()]
    return messages


Outcome = Literal["sent", "skipped", "retry", "failed"]


async def settle(
    session: AsyncSession,
    ids: Sequence[uuid.UUID],
    outcome: Outcome,
    *,
    now: datetime,
    error: str | None = None,
    max_attempts: int,
    backoff: tuple[float, float],
) -> None:
    """Record how sending the rows ``ids`` ended. A retry past ``max_attempts`` fails."""
    for row in await session.scalars(select(EmailOutbox).where(EmailOutbox.id.in_(ids))):
        row.claimed_until = None
        if outcome in ("sent", "skipped"):
            row.state = outcome
            row.sent_at = now if outcome == "sent" else None
            continue
        row.attempts += 1
        row.last_error = (error or "")[:ERROR_CHARS]
        if outcome == "failed" or row.attempts >= max_attempts:
            row.state = "failed"
        else:
            base, cap = backoff
            delay = backoff_delay(row.attempts, base=base, cap=cap)
            row.not_before = now + timedelta(seconds=delay)
    await session.flush()
