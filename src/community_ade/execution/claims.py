"""Tasks their agent applies: claim, report, and the sweep of lapsed claims.

Some task types are carried out by the agent that proposed them, not by ``ade worker``
(``agent.call``: the agent runs a function of its own once a reviewer approved exactly
that call). The lifecycle is the same table (``approvals.states``); only who moves the
task through APPLYING differs:

- ``claim``: the agent asks for an APPROVED task; the task's locks (the task itself
  exclusive, its resources in their modes, one permit of the agent's capacity) are taken
  for it in an HTTP lease (``agents.lease_locks``), and the task moves APPROVED →
  APPLYING under the lease's fencing token, as a worker's ``start`` does: a
  compare-and-set on the row the agent was answered for.
- The agent works while it renews the lease (``POST /leases/{id}/heartbeat``) and passes
  the fence to whatever it changes.
- ``complete`` / ``fail``: APPLYING → COMPLETED, APPROVED (a retry, while attempts are
  left) or FAILED, only with the claim's fence: a report from a claim that lapsed and
  was taken over carries an older fence and is refused (``fence_rejected``). The lease
  closes and the locks go with it.
- ``settle_lapsed``: a claim whose lease lapsed (the agent died or hung) is settled as
  a dead worker's attempt is: back to APPROVED for another claim, or FAILED once the
  attempts are used up. What the agent did before it vanished is not known here, so
  the rollback outcome says ``unknown``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.agents.leases import Lease
from community_ade.agents.service import AgentService
from community_ade.approvals.service import actor_of, move, move_if
from community_ade.approvals.states import TaskState, Trigger, next_state
from community_ade.audit.chain import SYSTEM, Actor
from community_ade.auth.principal import Principal
from community_ade.errors import AdeError, Conflict, FenceRejected, Forbidden, NotFound
from community_ade.execution.executors import agent_applied_types
from community_ade.execution.rules import lock_resources
from community_ade.execution.service import elapsed_ms, record_failure, record_retry
from community_ade.storage.models import Task, utcnow

if TYPE_CHECKING:
    from community_ade.runtime import Runtime

log = logging.getLogger(__name__)

# "unknown": the agent's code failed part-way and cannot tell what it left behind (as
# with a lapsed claim, which the sweep records the same way).
ReportedRollback = Literal["rolled_back", "rollback_failed", "nothing_to_roll_back", "unknown"]
CLAIM_PREFIX = "lease:"
"""``Task.worker_id`` of a claimed task: the lease that holds its locks."""


@dataclass(frozen=True)
class Claim:
    """A claimed task: APPLYING under ``fence``, its locks held while ``lease`` lives."""

    task: Task
    fence: int
    lease: Lease


def _lease_of(task: Task) -> uuid.UUID | None:
    worker = task.worker_id or ""
    if not worker.startswith(CLAIM_PREFIX):
        return None
    try:
        return uuid.UUID(worker.removeprefix(CLAIM_PREFIX))
    except ValueError:
        return None


class ClaimService:
    """Claims and reports of agents, over the caller's session (committed by the
    caller; ``claim`` commits it before it waits for locks and records the claim in a
    transaction of its own from ``sessions``)."""

    def __init__(
        self,
        session: AsyncSession,
        sessions: async_sessionmaker[AsyncSession],
        agents: AgentService,
        *,
        max_attempts: int,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = session
        self.sessions = sessions
        self.agents = agents
        self.max_attempts = max_attempts
        self.now = now

    async def claim(
        self,
        principal: Principal,
        task_id: uuid.UUID,
        *,
        lease_seconds: float,
        wait_seconds: float,
    ) -> Claim:
        """Take an APPROVED task of ``principal`` (an agent) to apply it."""
        if principal.kind != "agent":
            raise Forbidden("a task is claimed by the agent that proposed it, with its token")
        agent = await self.agents.lease_target(principal, None)
        task = await self._own_task(principal, task_id)
        next_state(TaskState(task.state), Trigger.START_APPLY)  # 409 unless APPROVED
        if not (task.requirements or {}).get("auto_apply", True) and (
            task.apply_requested_at is None
        ):
            raise Conflict(
                f"task {task.id} waits for someone to ask for its apply "
                f"(POST /api/v1/tasks/{task.id}/apply) before it can be claimed",
                task_id=str(task.id),
            )
        seen_version, attempts, resources = task.version, task.attempts or 0, task.resources
        # The locks are Redis work: end the transaction rather than hold it (on SQLite,
        # the database's one write lock) while they are awaited.
        await self.session.commit()
        lease = await self.agents.open_lease(
            principal,
            agent,
            lease_seconds,
            task=f"{task_id}/claim-{uuid.uuid4().hex[:8]}",
            resources=lock_resources(str(task_id), resources),
            wait_seconds=wait_seconds,
        )
        assert lease.locks is not None  # resources always name the task itself
        fence = lease.locks.fence
        try:
            # A transaction of its own: the caller's ended above.
            async with self.sessions.begin() as session:
                started = await move_if(
                    session,
                    task_id,
                    TaskState.APPROVED,
                    Trigger.START_APPLY,
                    actor_of(principal),
                    "task:applying",
                    {"fence": str(fence), "attempt": attempts + 1, "claim": str(lease.id)},
                    where=[Task.version == seen_version],
                    values={
                        "fence": fence,
                        "worker_id": f"{CLAIM_PREFIX}{lease.id}",
                        "attempts": attempts + 1,
                        "apply_started_at": self.now(),
                        "snapshot": None,
                        "finished_at": None,
                        "duration_ms": None,
                        "rollback_outcome": None,
                        "last_error": None,
                    },
                )
                if started is None:
                    raise Conflict(
                        f"task {task_id} changed while its locks were taken (cancelled, "
                        "expired or claimed meanwhile); read it again",
                        task_id=str(task_id),
                    )
        except BaseException:
            await self.agents.end_lease(lease)
            raise
        return Claim(started, fence, lease)

    async def complete(
        self,
        principal: Principal,
        task_id: uuid.UUID,
        fence: int,
        summary: str,
        details: Mapping[str, Any],
    ) -> Task:
        """APPLYING → COMPLETED with what the agent reports it did."""
        task = await self._claimed(principal, task_id, fence)
        now = self.now()
        task.result = {"summary": summary, "details": dict(details), "fence": str(fence)}
        task.finished_at = now
        task.decided_at = task.decided_at or now
        task.duration_ms = elapsed_ms(task, now)
        data = {"fence": str(fence), "summary": summary, "duration_ms": task.duration_ms}
        await move(
            self.session, task, Trigger.APPLY_SUCCEEDED, actor_of(principal), "task:completed", data
        )
        await self._release(principal, task)
        return task

    async def fail(
        self,
        principal: Principal,
        task_id: uuid.UUID,
        fence: int,
        *,
        error: str,
        rollback_outcome: ReportedRollback,
        retry: bool,
        details: Mapping[str, Any],
    ) -> Task:
        """The agent's apply failed: back to APPROVED for another claim when it asks for
        a retry and attempts are left, else FAILED."""
        task = await self._claimed(principal, task_id, fence)
        await self._settle(
            task,
            error=error,
            rollback_outcome=rollback_outcome,
            retry=retry,
            actor=actor_of(principal),
            details=details,
        )
        await self._release(principal, task)
        return task

    async def settle_lapsed(self, limit: int = 100) -> list[uuid.UUID]:
        """Settle claims whose lease lapsed: retried while attempts are left, else
        FAILED. Called by the server's periodic sweep."""
        claimed = await self.session.scalars(
            select(Task)
            .where(
                Task.state == TaskState.APPLYING.value,
                Task.type.in_(sorted(agent_applied_types())),
                Task.worker_id.like(f"{CLAIM_PREFIX}%"),
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        settled = []
        for task in list(claimed):
            lease_id = _lease_of(task)
            if lease_id is not None and await self.agents.leases.alive(lease_id):
                continue
            await self._settle(
                task,
                error=f"the agent's claim lapsed: lease {lease_id} was not renewed in time",
                rollback_outcome="unknown",
                retry=True,
                actor=SYSTEM,
                details={},
            )
            settled.append(task.id)
        return settled

    # -- helpers ----------------------------------------------------------------------

    async def _own_task(self, principal: Principal, task_id: uuid.UUID) -> Task:
        task = await self.session.get(Task, task_id)
        if task is None:
            raise NotFound(f"no task {task_id}")
        if task.type not in agent_applied_types():
            raise Conflict(
                f"tasks of type {task.type!r} are applied by a worker, not claimed by an agent",
                task_id=str(task.id),
                task_type=task.type,
            )
        if task.agent_id != principal.id:
            raise Forbidden(
                f"task {task.id} is applied by the agent that proposed it",
                task_id=str(task.id),
            )
        return task

    async def _claimed(self, principal: Principal, task_id: uuid.UUID, fence: int) -> Task:
        """The task under a row lock, APPLYING under ``fence``: the caller's claim."""
        if principal.kind != "agent":
            raise Forbidden("only the agent that claimed a task reports its outcome")
        await self._own_task(principal, task_id)
        task = await self.session.scalar(
            select(Task)
            .where(Task.id == task_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert task is not None  # _own_task found it in this transaction
        if task.state != TaskState.APPLYING.value:
            raise Conflict(
                f"task {task.id} is {task.state}, not APPLYING: claim it first",
                task_id=str(task.id),
                state=task.state,
            )
        if task.fence != fence:
            raise FenceRejected(
                f"fence {fence} is not the current claim's ({task.fence}): your claim "
                "lapsed and the task was taken over; stop, and claim it again if it is "
                "APPROVED",
                fence=fence,
                newest=task.fence or 0,
            )
        return task

    async def _settle(
        self,
        task: Task,
        *,
        error: str,
        rollback_outcome: str,
        retry: bool,
        actor: Actor,
        details: Mapping[str, Any],
    ) -> None:
        if retry and (task.attempts or 0) < self.max_attempts:
            fence = {"fence": str(task.fence)}
            await record_retry(self.session, task, actor, error, rollback_outcome, fence)
            return
        await record_failure(
            self.session, task, actor, error, rollback_outcome, details, self.now()
        )

    async def _release(self, principal: Principal, task: Task) -> None:
        """Close the claim's lease (its locks go with it) once the outcome is recorded."""
        lease_id = _lease_of(task)
        if lease_id is None:
            return
        await self.session.flush()
        try:
            await self.agents.close_lease(principal, lease_id)
        except NotFound:  # lapsed meanwhile: its locks are gone already
            pass
        except AdeError as exc:  # Redis away: the lease lapses by itself
            log.warning("task %s: could not close claim lease %s: %s", task.id, lease_id, exc)


async def settle_lapsed_claims(runtime: Runtime) -> list[uuid.UUID]:
    """``ClaimService.settle_lapsed`` in a transaction of its own (the server's sweep)."""
    async with runtime.sessions.begin() as session:
        service = ClaimService(
            session,
            runtime.sessions,
            AgentService.of(runtime, session),
            max_attempts=runtime.settings.worker_max_attempts,
        )
        return await service.settle_lapsed()
