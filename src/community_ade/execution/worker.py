"""The worker: claims queued tasks and applies them under their locks (architecture §6).

For one message: load the task and its stash (not APPROVED → acknowledge and ignore: a
duplicate never applies twice), take its locks (the task itself, its resources, one
permit of its agent), plan again and compare digest and precondition fingerprint (moved
→ back to SUBMITTED with the new preview), snapshot, record APPLYING with the fence and
the snapshot — only if the task's row is still the one loaded; if it changed meanwhile,
it is loaded again under the locks and handled as it is now — apply
under ``grant.guard()`` (a lost lease cancels it), then record COMPLETED, or roll back
and retry with backoff (transient failure, attempts left) or record FAILED. Locks are
always released and the message always settled.

A task found APPLYING (its worker died or stalled past its lease, and the message was
reclaimed) is rolled back from its stored snapshot under the new fence; the interrupted
attempt counts, and the task is retried at once if attempts remain, else FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from community_ade.approvals.states import TaskState
from community_ade.errors import (
    AdeError,
    DeadlockDetected,
    FenceRejected,
    InvalidInput,
    LockLost,
    LockTimeout,
)
from community_ade.execution.executors import agent_applied_types, get_executor
from community_ade.execution.executors.base import (
    ApplyContext,
    ApplyFailed,
    ApplyingExecutor,
    ApplyResult,
    BuiltUponChecking,
    Plan,
    Snapshot,
)
from community_ade.execution.executors.watchdog import bound_to_lease
from community_ade.execution.queue import Message, TaskQueue
from community_ade.execution.rules import Failure, backoff_delay, lock_resources, should_retry
from community_ade.execution.service import ExecutionService
from community_ade.infra.aio import Incident, wait_event
from community_ade.locks.manager import Grant
from community_ade.runtime import Runtime
from community_ade.secrets.store import SecretVault
from community_ade.storage.models import Task

log = logging.getLogger(__name__)

# A message delivered this often without being settled is poison: dead-lettered.
MAX_DELIVERIES = 20
_IDLE_TICK_S = 0.5


@dataclass
class WorkerStats:
    completed: int = 0
    failed: int = 0
    retried: int = 0
    moved: int = 0
    ignored: int = 0
    reclaimed: int = 0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def wants_apply(task: Task) -> bool:
    """An APPROVED task is applied automatically unless its policy says ``apply:
    manual``; then only once someone asked for it (``POST /tasks/{id}/apply``). A task
    its agent applies (``agent.call``) is never a worker's."""
    if task.type in agent_applied_types():
        return False
    automatic = bool((task.requirements or {}).get("auto_apply", True))
    return automatic or task.apply_requested_at is not None


@dataclass
class _Attempt:
    """One attempt of one task under one grant."""

    task: Task
    executor: ApplyingExecutor
    grant: Grant
    context: ApplyContext
    snapshot: Snapshot | None = None
    started: float = field(default_factory=time.monotonic)


class Worker:
    """``await Worker(runtime).run()`` until ``stop()`` (or, in burst mode, until the
    queue is empty). In-flight tasks always finish before ``run`` returns."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int | None = None,
        burst: bool = False,
        worker_id: str | None = None,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.settings = settings
        self.queue: TaskQueue = runtime.queue
        self.concurrency = concurrency or settings.worker_concurrency
        self.burst = burst
        self.worker_id = worker_id or new_worker_id()
        plan_context = runtime.plan_context()
        self.plan_context = plan_context
        self.secrets = SecretVault(runtime.sessions, settings)
        self.service = ExecutionService(
            runtime.sessions, worker_id=self.worker_id, plan_context=plan_context
        )
        self.stats = WorkerStats()
        self._stopping = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], Message] = {}
        self._handling = Incident(f"worker {self.worker_id}: handling tasks", log)

    def stop(self) -> None:
        """Stop claiming; ``run`` returns once in-flight tasks have finished."""
        if not self._stopping.is_set():
            log.info("worker %s draining %d in-flight task(s)", self.worker_id, len(self._inflight))
        self._stopping.set()

    async def run(self) -> WorkerStats:
        log.info(
            "worker %s started (concurrency %d%s)",
            self.worker_id,
            self.concurrency,
            ", burst" if self.burst else "",
        )
        keeper = asyncio.create_task(self._keep_messages(), name="ade-worker-touch")
        try:
            await self._loop()
        finally:
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        log.info("worker %s stopped: %s", self.worker_id, self.stats)
        return self.stats

    # -- the loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        """Each periodic step runs on its own schedule and fails on its own: a Redis that
        lost the queue's group, a database connection closed under the reconciler, a bug
        in one pass — the step backs off and is tried again, the others go on, and the
        worker never exits for it."""
        settings = self.settings
        reclaim_every = max(0.2, settings.worker_reclaim_idle_seconds / 4)
        me = f"worker {self.worker_id}"
        steps = [
            _Step(f"{me}: promoting due retries", self._promote_due),
            _Step(f"{me}: reclaiming stalled messages", lambda: self._reclaim(reclaim_every)),
            _Step(f"{me}: reconciling approved tasks", self._reconcile_step),
        ]
        claiming = Incident(f"{me}: claiming tasks", log)
        while not self._stopping.is_set():
            for step in steps:
                await step.run_if_due()
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                await asyncio.wait(
                    list(self._inflight), timeout=_IDLE_TICK_S, return_when=asyncio.FIRST_COMPLETED
                )
                continue
            try:
                block = round(_IDLE_TICK_S * 1000)
                claimed = await self.queue.claim(self.worker_id, free, block_ms=block)
                for message in claimed:
                    self._start(message)
                idle = not claimed and not self._inflight
                if idle and self.burst and await self._queue_is_empty():
                    return
            except Exception as exc:
                await wait_event(self._stopping, claiming.failed(exc))
            else:
                claiming.cleared()

    async def _promote_due(self) -> float:
        wait = await self.queue.promote_due()
        return min(_IDLE_TICK_S, wait if wait is not None else 1.0)

    async def _reclaim(self, every: float) -> float:
        reclaim_ms = round(self.settings.worker_reclaim_idle_seconds * 1000)
        for message in await self.queue.reclaim(self.worker_id, reclaim_ms):
            self.stats.reclaimed += 1
            self._start(message)
        return every

    async def _reconcile_step(self) -> float:
        await self._reconcile()
        return self.settings.worker_reconcile_seconds

    async def _queue_is_empty(self) -> bool:
        depth = await self.queue.depth()
        if not depth.empty:
            return False
        # Nothing queued: but a crash between commit and enqueue may have left some.
        return await self._reconcile() == 0

    def _start(self, message: Message) -> None:
        job = asyncio.create_task(self._process(message), name=f"ade-apply-{message.task_id}")
        self._inflight[job] = message
        job.add_done_callback(self._inflight.pop)

    async def _keep_messages(self) -> None:
        """Touch in-flight messages so that live work is never reclaimed."""
        period = max(0.1, self.settings.worker_reclaim_idle_seconds / 3)
        touching = Incident(f"worker {self.worker_id}: refreshing in-flight messages", log)
        while True:
            await asyncio.sleep(period)
            if self._inflight:
                try:
                    await self.queue.touch(self.worker_id, list(self._inflight.values()))
                except Exception as exc:
                    touching.failed(exc)  # the next period tries again: it cannot wait longer
                else:
                    touching.cleared()

    async def _reconcile(self) -> int:
        """Queue APPROVED tasks that should apply, and APPLYING ones, that are not queued:
        a crash between a commit and its enqueue loses nothing, nor does a Redis that
        lost its streams (an APPLYING task's message gone with its dead worker's would
        leave it APPLYING for good). The queue refuses a task whose message is still
        there (in flight included); a duplicate would be harmless anyway: it waits for
        the task's lock, then finds the task settled, or adopts it."""
        states = (TaskState.APPROVED.value, TaskState.APPLYING.value)
        async with self.runtime.sessions() as session:
            rows = await session.scalars(select(Task).where(Task.state.in_(states)).limit(1000))
            due = [(str(t.id), t.priority) for t in rows if self._actionable(t)]
        added = await self.queue.enqueue_many(due)
        if added:
            log.info("reconciler queued %d task(s) missing from the queue", added)
        return added

    # -- one message ------------------------------------------------------------------

    async def _process(self, message: Message) -> None:
        try:
            if message.deliveries > MAX_DELIVERIES:
                await self._give_up(message, f"delivered {message.deliveries} times")
                return
            delay = await self._handle(message)
            if delay is None:
                await self.queue.ack(message)
            else:
                await self.queue.retry(message, delay)
        except _Settled:
            pass
        except Exception as exc:
            # Left pending: reclaimed once idle, then handled again (idempotently). A
            # database or Redis away is one incident however many tasks it hits; only
            # an error of no dependency (a bug) is logged with its traceback.
            self._handling.failed(exc)
            log.debug("task %s: left pending after %s", message.task_id, type(exc).__name__)
        else:
            self._handling.cleared()

    async def _handle(self, message: Message) -> float | None:
        """Handle one delivery; the delay before it should be queued again, or None."""
        try:
            task_id = uuid.UUID(message.task_id)
        except ValueError:
            await self.queue.dead(message, f"not a task id: {message.task_id!r}")
            raise _Settled from None
        loaded = await self.service.load_for_apply(task_id)
        if loaded is None or not self._actionable(loaded[0]):
            self.stats.ignored += 1
            state = "missing" if loaded is None else loaded[0].state
            log.info("task %s is %s: nothing to apply", message.task_id, state)
            return None
        task = loaded[0]
        agent = str(task.agent_id or task.submitter_id)
        try:
            executor = get_executor(task.type)
        except InvalidInput as exc:
            return await self._not_started(task, exc.message)
        try:
            resources = lock_resources(str(task.id), task.resources)
            # The lock's task identity is this delivery, not the task: grants of one lock
            # task do not conflict with each other, and two deliveries of one task must.
            grant = await self.runtime.locks.acquire(
                f"{task.id}/{message.entry_id}",
                agent,
                resources,
                timeout=self.settings.worker_lock_wait_seconds,
            )
        except (LockTimeout, DeadlockDetected, LockLost) as exc:
            # LockLost: the request ended while it waited (Redis restarted, or this
            # process stalled past its session's lease).
            log.info("task %s: locks not granted (%s); re-queued", task.id, exc.message)
            return backoff_delay(1, base=1.0, cap=30.0)
        except InvalidInput as exc:
            return await self._not_started(task, f"cannot lock its resources: {exc.message}")
        try:
            return await self._under_lock(loaded, executor, grant)
        finally:
            await self.runtime.locks.release(grant)

    async def _give_up(self, message: Message, reason: str) -> None:
        """Dead-letter a message that never settles; its task, if still APPROVED, is
        FAILED with the reason (else the reconciler would queue it again for ever)."""
        await self.queue.dead(message, reason)
        try:
            task_id = uuid.UUID(message.task_id)
        except ValueError:
            return
        error = f"its apply never finished: {reason}; the worker log has each error"
        if await self.service.not_started(task_id, error, max_attempts=0):
            self.stats.failed += 1

    async def _not_started(self, task: Task, error: str) -> float | None:
        """The apply could not even begin: retried with backoff while attempts remain,
        then FAILED with the error (never re-queued for ever with no reason shown)."""
        max_attempts = self.settings.worker_max_attempts
        outcome = await self.service.not_started(task.id, error, max_attempts=max_attempts)
        if outcome is None:
            return None
        if outcome:
            self.stats.failed += 1
            log.warning("task %s failed: its apply could not start: %s", task.id, error)
            return None
        self.stats.retried += 1
        log.warning("task %s: its apply could not start (%s); retried", task.id, error)
        settings = self.settings
        return backoff_delay(
            (task.attempts or 0) + 1,
            base=settings.worker_backoff_base_seconds,
            cap=settings.worker_backoff_cap_seconds,
        )

    def _actionable(self, task: Task) -> bool:
        if task.type in agent_applied_types():  # its agent's claim owns it, even APPLYING
            return False
        if task.state == TaskState.APPLYING:
            return True
        return task.state == TaskState.APPROVED and wants_apply(task)

    async def _under_lock(
        self, loaded: tuple[Task, Plan | None], executor: Any, grant: Grant
    ) -> float | None:
        """Handle the task as it was read before its locks were granted, without reading
        it again: ``start`` (and ``take_over``) take it only if its row has not changed
        since. When it has, it is read again, under the locks, and handled as it is now."""
        outcome = await self._handle_loaded(*loaded, executor, grant)
        if outcome is not _CHANGED:
            return outcome
        again = await self.service.load_for_apply(loaded[0].id)
        if again is None:
            return None
        outcome = await self._handle_loaded(*again, executor, grant)
        if outcome is _CHANGED:  # applied, cancelled or expired meanwhile
            self.stats.ignored += 1
            return None
        return outcome

    async def _handle_loaded(
        self, task: Task, stash: Plan | None, executor: Any, grant: Grant
    ) -> float | _Changed | None:
        context = ApplyContext(self.plan_context, str(task.id), grant.fence, self.secrets)
        if not isinstance(executor, ApplyingExecutor):
            if task.state == TaskState.APPROVED:
                return await self._refuse(
                    task, context, f"the {task.type} executor cannot apply", {}
                )
            return None
        if task.state == TaskState.APPLYING:
            recovered = await self._recover(task, executor, grant, context)
            if recovered is None or recovered is _CHANGED:
                return recovered
            task, stash = recovered
        if task.state != TaskState.APPROVED or not wants_apply(task):
            self.stats.ignored += 1
            return None
        return await self._apply(_Attempt(task, executor, grant, context), stash)

    async def _recover(
        self, task: Task, executor: ApplyingExecutor, grant: Grant, context: ApplyContext
    ) -> tuple[Task, Plan | None] | _Changed | None:
        """Settle an attempt whose worker died: roll back from the stored snapshot, then
        retry (the task is APPROVED again: returned with its stash) or fail."""
        adopted = await self.service.take_over(task.id, grant.fence)
        if adopted is None:
            return _CHANGED
        log.warning(
            "task %s: adopting an interrupted apply (attempt %d)", task.id, adopted.attempts
        )
        snapshot = None if adopted.snapshot is None else Snapshot(task.type, adopted.snapshot)
        if snapshot is not None:
            landed = await self._built_upon(executor, adopted, snapshot, context)
            if landed is not None:
                if await self.service.complete(
                    adopted, grant.fence, landed.summary, landed.details
                ):
                    self.stats.completed += 1
                    log.warning(
                        "task %s: the interrupted apply is in place: %s", task.id, landed.summary
                    )
                return None
        with self._bound_to(grant):
            outcome = await self._rollback(executor, adopted, snapshot, context)
        failure = Failure("the worker applying it stopped (reclaimed)", True, outcome)
        if should_retry(failure, adopted.attempts, self.settings.worker_max_attempts):
            await self.service.retry(task.id, grant.fence, failure.message, outcome, 0.0)
            self.stats.retried += 1
            return await self.service.load_for_apply(task.id)
        if await self.service.fail(task.id, grant.fence, failure.message, outcome, {}):
            self.stats.failed += 1
            log.warning("task %s failed: %s; rollback: %s", task.id, failure.message, outcome)
        return None

    async def _apply(self, attempt: _Attempt, stash: Plan | None) -> float | _Changed | None:
        task, executor, context = attempt.task, attempt.executor, attempt.context
        try:
            plan = await executor.plan(task.payload, self.plan_context)
        except InvalidInput as exc:
            return await self._refuse(
                task, context, f"no longer applies: {exc.message}", exc.details
            )
        # The task row holds the fingerprint the approval was given against (a preview
        # row is shared by every submit of the same digest).
        approved = (task.preview_digest, task.precondition_fingerprint)
        if stash is None or (plan.digest, plan.precondition_fingerprint) != approved:
            if not await self.service.preconditions_moved(task, plan):
                return _CHANGED
            self.stats.moved += 1
            log.info("task %s: preconditions moved; back to review", task.id)
            # Queued again at once: an approval of the new preview that came meanwhile
            # (a policy that approves it) could not queue it while this message was in
            # its stream. Still in review, the next delivery finds nothing to apply.
            return 0.0
        try:
            attempt.snapshot = await executor.snapshot(task.payload, stash, context)
        except ApplyFailed as exc:
            return await self._snapshot_failed(attempt, exc)
        started = await self.service.start(task, context.fence, dict(attempt.snapshot.data))
        if started is None:
            return _CHANGED
        attempt.task = started
        log.info(
            "task %s: applying (attempt %d, fence %d)", task.id, started.attempts, context.fence
        )
        try:
            async with attempt.grant.guard():
                with self._bound_to(attempt.grant):
                    result = await executor.apply(task.payload, stash, attempt.snapshot, context)
        except LockLost as exc:
            return await self._failed(attempt, Failure(f"lock lost: {exc.message}", True, ""), {})
        except FenceRejected as exc:
            # A newer grant has written the target (our lease was lost meanwhile), so this
            # attempt wrote nothing: retried, unless the task itself was taken over (then
            # the outcome is the new holder's).
            refused = Failure(f"fence refused: {exc.message}", True, "")
            return await self._failed(attempt, refused, {})
        except ApplyFailed as exc:
            return await self._failed(attempt, Failure(exc.message, exc.transient, ""), exc.details)
        except (AdeError, OSError, ValueError, RuntimeError) as exc:
            message = exc.message if isinstance(exc, AdeError) else f"{type(exc).__name__}: {exc}"
            return await self._failed(attempt, Failure(message, False, ""), {})
        if await self.service.complete(started, context.fence, result.summary, result.details):
            self.stats.completed += 1
            log.info(
                "task %s: completed in %.0f ms: %s",
                task.id,
                (time.monotonic() - attempt.started) * 1000,
                result.summary,
            )
        return None

    async def _built_upon(
        self,
        executor: ApplyingExecutor,
        task: Task,
        snapshot: Snapshot,
        context: ApplyContext,
    ) -> ApplyResult | None:
        """The interrupted attempt's result if its change is in place and built upon (so
        it is kept, not rolled back: ``BuiltUponChecking``); None when it is not, or the
        executor cannot tell."""
        if not isinstance(executor, BuiltUponChecking):
            return None
        try:
            return await executor.built_upon(task.payload, snapshot, context)
        except (ApplyFailed, AdeError, OSError, ValueError, RuntimeError) as exc:
            log.warning("task %s: cannot tell whether its apply is in place: %s", task.id, exc)
            return None

    def _bound_to(self, grant: Grant) -> contextlib.AbstractContextManager[None]:
        """Commands started in the block die with ``grant``'s lease even when this
        process cannot act (paused): the watchdog kills them once it runs out."""
        return bound_to_lease(functools.partial(self.runtime.locks.lease_deadline, grant))

    async def _snapshot_failed(self, attempt: _Attempt, exc: ApplyFailed) -> _Changed | None:
        task, context = attempt.task, attempt.context
        message = f"snapshot failed: {exc.message}"
        if not exc.transient:
            return await self._refuse(task, context, message, exc.details)
        # E.g. the target moved between the re-plan and the snapshot: an attempt that
        # wrote nothing, retried with backoff like any transient failure.
        begun = await self.service.start(task, context.fence, None)
        if begun is None:
            return _CHANGED
        attempt.task = begun
        await self._failed(attempt, Failure(message, True, ""), exc.details)
        return None

    async def _refuse(
        self, task: Task, context: ApplyContext, message: str, details: Mapping[str, Any]
    ) -> _Changed | None:
        """The task cannot be applied at all (no plan, no snapshot, no apply): record the
        attempt as begun and failed at once, with nothing to roll back."""
        if await self.service.start(task, context.fence, None) is None:
            return _CHANGED
        if await self.service.fail(
            task.id, context.fence, message, "nothing_to_roll_back", details
        ):
            self.stats.failed += 1
            log.warning("task %s failed: %s", task.id, message)
        return None

    async def _failed(
        self, attempt: _Attempt, failure: Failure, details: Mapping[str, Any]
    ) -> float | None:
        task, context = attempt.task, attempt.context
        current = await self.service.load(task.id)
        if current is None or current.state != TaskState.APPLYING or current.fence != context.fence:
            # Taken over by a newer holder (our lease was lost): the outcome is theirs.
            log.warning("task %s: attempt under fence %d superseded", task.id, context.fence)
            return None
        outcome = await self._rollback(attempt.executor, task, attempt.snapshot, context)
        failure = Failure(failure.message, failure.transient, outcome)
        log.warning(
            "task %s: attempt %d failed (%s); rollback: %s",
            task.id,
            task.attempts,
            failure.message,
            outcome,
        )
        settings = self.settings
        if should_retry(failure, task.attempts, settings.worker_max_attempts):
            delay = backoff_delay(
                task.attempts,
                base=settings.worker_backoff_base_seconds,
                cap=settings.worker_backoff_cap_seconds,
            )
            if await self.service.retry(task.id, context.fence, failure.message, outcome, delay):
                self.stats.retried += 1
                return delay
            return None
        if await self.service.fail(task.id, context.fence, failure.message, outcome, details):
            self.stats.failed += 1
        return None

    async def _rollback(
        self,
        executor: ApplyingExecutor,
        task: Task,
        snapshot: Snapshot | None,
        context: ApplyContext,
    ) -> str:
        if snapshot is None:
            return "nothing_to_roll_back"
        try:
            return str(await executor.rollback(task.payload, snapshot, context))
        except FenceRejected as exc:
            # A newer grant owns the target: whatever this attempt wrote is not there any
            # more (or never was). Nothing is left to undo, and retrying is safe.
            log.warning("task %s: rollback refused, nothing of it left: %s", task.id, exc.message)
            return "nothing_to_roll_back"
        except (ApplyFailed, AdeError, OSError, ValueError, RuntimeError) as exc:
            log.error("task %s: rollback failed: %s", task.id, exc)
            return "rollback_failed"


class _Step:
    """A periodic step of the loop: ``action`` returns the seconds until it is due again;
    when it fails, it is due again after its incident's backoff."""

    def __init__(self, what: str, action: Callable[[], Awaitable[float]]) -> None:
        self.action = action
        self.incident = Incident(what, log)
        self.due = 0.0

    async def run_if_due(self) -> None:
        now = time.monotonic()
        if now < self.due:
            return
        try:
            interval = await self.action()
        except Exception as exc:
            self.due = now + self.incident.failed(exc)
        else:
            self.incident.cleared()
            self.due = now + interval


class _Changed(enum.Enum):
    """The task's row changed since it was read: nothing was done; read it again."""

    CHANGED = "changed"


_CHANGED = _Changed.CHANGED


class _Settled(Exception):
    """The message was already settled (dead-lettered) while handling it."""
