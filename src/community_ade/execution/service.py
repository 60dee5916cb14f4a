"""The execution transitions of a task (architecture §3: APPROVED → APPLYING → COMPLETED,
FAILED, or back to APPROVED for a retry), each one SQL transaction with its audit event.

Every method checks, in the statement that changes the row or under its row lock, that
the task is still where the caller believes it is: ``start`` needs APPROVED and the row
unchanged since the worker read it (the compare-and-set that makes a duplicate delivery
harmless), the others need APPLYING *with the caller's fence*; ``start`` and
``take_over`` also need the caller's fence to be newer than the task's. The two transitions of
every apply, ``start`` and ``complete``, are each one ``UPDATE … RETURNING`` plus the
audit append; the rarer ones lock the row and read it first. A worker whose
grant was lost and whose task was taken over by another (a newer fence) therefore cannot
record anything: its calls return ``False`` and change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.service import TaskService, move, move_if
from community_ade.approvals.states import TaskState, Trigger
from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM, Actor
from community_ade.execution.executors.base import Plan, PlanContext
from community_ade.storage import db
from community_ade.storage.models import Preview, Task, utcnow

_MAX_ERROR = 4000
# The worker's read of every apply, built once: the task and its approved preview's content.
_FOR_APPLY = (
    select(Task, Preview.content, Preview.format, Preview.lines_changed)
    .outerjoin(Preview, and_(Preview.task_id == Task.id, Preview.digest == Task.preview_digest))
    .where(Task.id == bindparam("task_id"))
)


def _older_than(fence: int) -> ColumnElement[bool]:
    """The task's fence (if any) is older than ``fence``: fences only ever move forward
    on a task, so a grant older than the last one that started or adopted it (a worker
    that stalled past its lease and woke up) can neither start nor adopt it."""
    return or_(Task.fence.is_(None), Task.fence < fence)


def worker_actor(worker_id: str) -> Actor:
    """Audit actor of a worker: the system, naming the worker process."""
    return Actor(kind=SYSTEM.kind, id=f"worker:{worker_id}")


def _note_failure(task: Task, error: str, rollback_outcome: str) -> dict[str, Any]:
    """Record a failed attempt's error and rollback outcome on ``task``; its audit data."""
    task.last_error = error[:_MAX_ERROR]
    task.rollback_outcome = rollback_outcome
    return {
        "error": task.last_error,
        "rollback_outcome": rollback_outcome,
        "attempt": task.attempts,
    }


async def record_retry(
    session: AsyncSession,
    task: Task,
    actor: Actor,
    error: str,
    rollback_outcome: str,
    data: Mapping[str, Any],
) -> None:
    """APPLYING → APPROVED for another attempt (a worker's or an agent's claim)."""
    noted = _note_failure(task, error, rollback_outcome)
    await move(session, task, Trigger.APPLY_RETRY, actor, "task:apply_retry", noted | dict(data))


async def record_failure(
    session: AsyncSession,
    task: Task,
    actor: Actor,
    error: str,
    rollback_outcome: str,
    details: Mapping[str, Any],
    now: datetime,
) -> None:
    """APPLYING → FAILED with the error, the rollback's outcome and ``details``."""
    data = {"fence": str(task.fence), **_note_failure(task, error, rollback_outcome)}
    task.result = {"error": task.last_error, "details": dict(details), "fence": str(task.fence)}
    task.finished_at = now
    task.duration_ms = elapsed_ms(task, now)
    await move(session, task, Trigger.APPLY_FAILED, actor, "task:failed", data)


def elapsed_ms(task: Task, now: datetime) -> int | None:
    if task.apply_started_at is None:
        return None
    started = task.apply_started_at
    if started.tzinfo is None:  # SQLite returns naive UTC datetimes
        started = started.replace(tzinfo=now.tzinfo)
    return max(0, round((now - started).total_seconds() * 1000))


class ExecutionService:
    """One method, one transaction (each opens and commits its own session)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        worker_id: str,
        plan_context: PlanContext,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.reads = db.read_sessions(sessions)  # load and load_for_apply: one SELECT each
        self.worker_id = worker_id
        self.actor = worker_actor(worker_id)
        self.plan_context = plan_context
        self.now = now

    async def load(self, task_id: uuid.UUID) -> Task | None:
        async with self.reads() as session:
            return await session.get(Task, task_id)

    async def load_for_apply(self, task_id: uuid.UUID) -> tuple[Task, Plan | None] | None:
        """The task and the stash, the stored preview its reviewers approved as a ``Plan``
        (None when that row is missing), in one query."""
        async with self.reads() as session:
            row = (await session.execute(_FOR_APPLY, {"task_id": task_id})).first()
        if row is None:
            return None
        task, content, preview_format, lines_changed = row
        if content is None:
            return task, None
        return task, Plan(
            preview=content,
            format=preview_format,  # type: ignore[arg-type]
            digest=task.preview_digest or "",
            precondition_fingerprint=task.precondition_fingerprint or "",
            lines_changed=lines_changed,
            summary=task.title,
        )

    async def start(
        self, task: Task, fence: int, snapshot: Mapping[str, Any] | None
    ) -> Task | None:
        """APPROVED → APPLYING, recording the fence and the snapshot before any write:
        the compare-and-set that makes a duplicate delivery harmless. It holds only while
        the row is unchanged since ``task`` was read (its version), so what was planned
        and snapshotted is what was approved. None, changing nothing, otherwise (applied,
        cancelled, expired, sent back to review meanwhile)."""
        attempt = (task.attempts or 0) + 1
        values = {
            "fence": fence,
            "worker_id": self.worker_id,
            "attempts": attempt,
            "apply_started_at": self.now(),
            "snapshot": None if snapshot is None else dict(snapshot),
            "finished_at": None,
            "duration_ms": None,
            "rollback_outcome": None,
            "last_error": None,
        }
        data = {"fence": str(fence), "attempt": attempt, "worker": self.worker_id}
        async with self.sessions.begin() as session:
            return await move_if(
                session,
                task.id,
                TaskState.APPROVED,
                Trigger.START_APPLY,
                self.actor,
                "task:applying",
                data,
                where=[Task.version == task.version, _older_than(fence)],
                values=values,
            )

    async def take_over(self, task_id: uuid.UUID, fence: int) -> Task | None:
        """Adopt a task left APPLYING by a worker that died or stalled: this worker now
        holds its locks under ``fence``. Not a transition: the task stays APPLYING until
        ``retry``, ``fail`` or ``complete`` settles the interrupted attempt. None, changing
        nothing, unless ``fence`` is newer than the task's: a worker that stalled with an
        older grant and woke up must not take a live apply from the newer holder."""
        async with self.sessions.begin() as session:
            task = await self._locked(session, task_id)
            if task is None or task.state != TaskState.APPLYING:
                return None
            if task.fence is not None and fence <= task.fence:
                return None
            previous = {"fence": str(task.fence), "worker": task.worker_id}
            task.fence = fence
            task.worker_id = self.worker_id
            data = {"previous": previous, "fence": str(fence), "attempt": task.attempts}
            await self._noted(session, task, "task:apply_reclaimed", data)
            return task

    async def complete(
        self, started: Task, fence: int, summary: str, details: Mapping[str, Any]
    ) -> bool:
        """APPLYING → COMPLETED with the apply's result, while the task is still this
        attempt's (``started``, as ``start`` returned it: APPLYING under ``fence``)."""
        now = self.now()
        duration_ms = elapsed_ms(started, now)
        values = {
            "result": {"summary": summary, "details": dict(details), "fence": str(fence)},
            "finished_at": now,
            "decided_at": func.coalesce(Task.decided_at, now),
            "duration_ms": duration_ms,
        }
        data = {"fence": str(fence), "summary": summary, "duration_ms": duration_ms}
        async with self.sessions.begin() as session:
            completed = await move_if(
                session,
                started.id,
                TaskState.APPLYING,
                Trigger.APPLY_SUCCEEDED,
                self.actor,
                "task:completed",
                data,
                where=[Task.fence == fence],
                values=values,
            )
            return completed is not None

    async def retry(
        self, task_id: uuid.UUID, fence: int, error: str, rollback_outcome: str, delay_s: float
    ) -> bool:
        """APPLYING → APPROVED: a transient failure, rolled back, to be retried after
        ``delay_s`` seconds."""
        async with self.sessions.begin() as session:
            task = await self._mine(session, task_id, fence)
            if task is None:
                return False
            await record_retry(
                session,
                task,
                self.actor,
                error,
                rollback_outcome,
                {"retry_in_seconds": round(delay_s, 3)},
            )
            return True

    async def fail(
        self,
        task_id: uuid.UUID,
        fence: int,
        error: str,
        rollback_outcome: str,
        details: Mapping[str, Any],
    ) -> bool:
        """APPLYING → FAILED, with the rollback's outcome and the error."""
        async with self.sessions.begin() as session:
            task = await self._mine(session, task_id, fence)
            if task is None:
                return False
            await record_failure(
                session, task, self.actor, error, rollback_outcome, details, self.now()
            )
            return True

    async def not_started(
        self, task_id: uuid.UUID, error: str, *, max_attempts: int
    ) -> bool | None:
        """An attempt that could not even begin (no executor for the task's type here,
        resources the lock manager refuses): counted as an attempt, its error recorded on
        the task; once the attempts are used up, APPROVED → APPLYING → FAILED in one
        transaction, with nothing to roll back. True when it failed, False when it is to
        be retried, None (changing nothing) when the task is no longer APPROVED."""
        async with self.sessions.begin() as session:
            task = await self._locked(session, task_id)
            if task is None or task.state != TaskState.APPROVED:
                return None
            task.attempts = (task.attempts or 0) + 1
            task.last_error = error[:_MAX_ERROR]
            data: dict[str, Any] = {"error": task.last_error, "attempt": task.attempts}
            if task.attempts < max_attempts:
                await self._noted(session, task, "task:apply_not_started", data)
                return False
            now = self.now()
            task.worker_id = self.worker_id
            task.apply_started_at = task.finished_at = now
            task.duration_ms = 0
            task.rollback_outcome = "nothing_to_roll_back"
            task.result = {"error": task.last_error, "details": {}}
            begun = {"attempt": task.attempts, "worker": self.worker_id}
            await move(session, task, Trigger.START_APPLY, self.actor, "task:applying", begun)
            failed = data | {"rollback_outcome": "nothing_to_roll_back"}
            await move(session, task, Trigger.APPLY_FAILED, self.actor, "task:failed", failed)
            return True

    async def preconditions_moved(self, seen: Task, plan: Plan) -> bool:
        """APPROVED → SUBMITTED with ``plan`` as the new preview, routed again; only while
        the row is as the worker saw it (``seen``, whose preview ``plan`` was compared
        with). False, changing nothing, otherwise."""
        async with self.sessions.begin() as session:
            task = await self._locked(session, seen.id)
            if task is None or task.state != TaskState.APPROVED or task.version != seen.version:
                return False
            await TaskService(session, plan_context=self.plan_context).preconditions_moved(
                task, plan
            )
            return True

    async def _noted(
        self, session: AsyncSession, task: Task, event: str, data: Mapping[str, Any]
    ) -> None:
        """Store the task's changed columns (no transition) and audit why."""
        await session.flush()
        await audit.append(
            session, type=event, actor=self.actor, subject=f"task:{task.id}", data=data
        )

    async def _locked(self, session: AsyncSession, task_id: uuid.UUID) -> Task | None:
        task: Task | None = await session.scalar(
            select(Task).where(Task.id == task_id).with_for_update()
        )
        return task

    async def _mine(self, session: AsyncSession, task_id: uuid.UUID, fence: int) -> Task | None:
        task = await self._locked(session, task_id)
        if task is None or task.state != TaskState.APPLYING or task.fence != fence:
            return None
        return task
