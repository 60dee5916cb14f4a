"""The execution transitions of a task (DESIGN §3: APPROVED → APPLYING → COMPLETED,
FAILED, or back to APPROVED for a retry), each one SQL transaction with its audit event.

Every method locks the task row and checks that the task is still where the caller
believes it is: ``start`` needs APPROVED (the compare-and-set that makes a duplicate
delivery harmless), the others need APPLYING *with the caller's fence*. A worker whose
grant was lost and whose task was taken over by another (a newer fence) therefore cannot
record anything: its calls return ``False`` and change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.service import TaskService, move
from community_ade.approvals.states import TaskState, Trigger
from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM, Actor
from community_ade.execution.executors.base import Plan, PlanContext
from community_ade.storage.models import Preview, Task, utcnow

_MAX_ERROR = 4000


def worker_actor(worker_id: str) -> Actor:
    """Audit actor of a worker: the system, naming the worker process."""
    return Actor(kind=SYSTEM.kind, id=f"worker:{worker_id}")


def _elapsed_ms(task: Task, now: datetime) -> int | None:
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
        self.worker_id = worker_id
        self.actor = worker_actor(worker_id)
        self.plan_context = plan_context
        self.now = now

    async def load(self, task_id: uuid.UUID) -> Task | None:
        async with self.sessions() as session:
            return await session.get(Task, task_id)

    async def approved_plan(self, task: Task) -> Plan | None:
        """The stash: the stored preview the reviewers approved, as a ``Plan``."""
        async with self.sessions() as session:
            preview = await session.scalar(
                select(Preview).where(
                    Preview.task_id == task.id, Preview.digest == task.preview_digest
                )
            )
        if preview is None:
            return None
        return Plan(
            preview=preview.content,
            format=preview.format,  # type: ignore[arg-type]
            digest=preview.digest,
            precondition_fingerprint=task.precondition_fingerprint or "",
            lines_changed=preview.lines_changed,
            summary=task.title,
        )

    async def start(
        self, task_id: uuid.UUID, fence: int, snapshot: Mapping[str, Any] | None
    ) -> Task | None:
        """APPROVED → APPLYING, recording the fence and the snapshot before any write.
        None when the task is no longer APPROVED (applied, cancelled, expired)."""
        async with self.sessions.begin() as session:
            task = await self._locked(session, task_id)
            if task is None or task.state != TaskState.APPROVED:
                return None
            task.fence = fence
            task.worker_id = self.worker_id
            task.attempts = (task.attempts or 0) + 1
            task.apply_started_at = self.now()
            task.snapshot = None if snapshot is None else dict(snapshot)
            task.finished_at = None
            task.duration_ms = None
            task.rollback_outcome = None
            task.last_error = None
            await move(
                session,
                task,
                Trigger.START_APPLY,
                self.actor,
                "task:applying",
                {"fence": str(fence), "attempt": task.attempts, "worker": self.worker_id},
            )
            return task

    async def take_over(self, task_id: uuid.UUID, fence: int) -> Task | None:
        """Adopt a task left APPLYING by a worker that died or stalled: this worker now
        holds its locks under ``fence`` (newer than the old one). Not a transition: the
        task stays APPLYING until ``retry`` or ``fail`` settles the interrupted attempt."""
        async with self.sessions.begin() as session:
            task = await self._locked(session, task_id)
            if task is None or task.state != TaskState.APPLYING:
                return None
            previous = {"fence": str(task.fence), "worker": task.worker_id}
            task.fence = fence
            task.worker_id = self.worker_id
            await session.flush()
            await audit.append(
                session,
                type="task:apply_reclaimed",
                actor=self.actor,
                subject=f"task:{task.id}",
                data={"previous": previous, "fence": str(fence), "attempt": task.attempts},
            )
            return task

    async def complete(
        self, task_id: uuid.UUID, fence: int, summary: str, details: Mapping[str, Any]
    ) -> bool:
        """APPLYING → COMPLETED with the apply's result."""
        async with self.sessions.begin() as session:
            task = await self._mine(session, task_id, fence)
            if task is None:
                return False
            now = self.now()
            task.result = {"summary": summary, "details": dict(details), "fence": str(fence)}
            task.finished_at = now
            task.decided_at = task.decided_at or now
            task.duration_ms = _elapsed_ms(task, now)
            data = {"fence": str(fence), "summary": summary, "duration_ms": task.duration_ms}
            await move(session, task, Trigger.APPLY_SUCCEEDED, self.actor, "task:completed", data)
            return True

    async def retry(
        self, task_id: uuid.UUID, fence: int, error: str, rollback_outcome: str, delay_s: float
    ) -> bool:
        """APPLYING → APPROVED: a transient failure, rolled back, to be retried after
        ``delay_s`` seconds."""
        async with self.sessions.begin() as session:
            task = await self._mine(session, task_id, fence)
            if task is None:
                return False
            task.last_error = error[:_MAX_ERROR]
            task.rollback_outcome = rollback_outcome
            data = {
                "error": task.last_error,
                "rollback_outcome": rollback_outcome,
                "attempt": task.attempts,
                "retry_in_seconds": round(delay_s, 3),
            }
            await move(session, task, Trigger.APPLY_RETRY, self.actor, "task:apply_retry", data)
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
            now = self.now()
            task.last_error = error[:_MAX_ERROR]
            task.rollback_outcome = rollback_outcome
            task.result = {"error": task.last_error, "details": dict(details), "fence": str(fence)}
            task.finished_at = now
            task.duration_ms = _elapsed_ms(task, now)
            data = {
                "fence": str(fence),
                "error": task.last_error,
                "rollback_outcome": rollback_outcome,
                "attempt": task.attempts,
            }
            await move(session, task, Trigger.APPLY_FAILED, self.actor, "task:failed", data)
            return True

    async def preconditions_moved(self, task_id: uuid.UUID, plan: Plan) -> bool:
        """APPROVED → SUBMITTED with ``plan`` as the new preview, routed again."""
        async with self.sessions.begin() as session:
            task = await self._locked(session, task_id)
            if task is None or task.state != TaskState.APPROVED:
                return False
            await TaskService(session, plan_context=self.plan_context).preconditions_moved(
                task, plan
            )
            return True

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
