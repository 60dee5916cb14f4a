"""``claim``: an approved task its agent applies itself, held for the length of a block.

``POST /tasks/{id}/claim`` moves the task APPROVED → APPLYING and answers the fencing
token and the lease that holds the task's locks (docs/execution.md §6). Inside the
block the lease is renewed in the background, as ``lease()`` renews one; the block
reports the outcome with ``await claim.complete(...)`` or ``await claim.fail(...)``.
What the block does not report, its exit does: a normal exit completes (summary
``done``), an exception fails the task with the error and is raised again. The report
closes the lease on the server; a claim whose report never went through has its lease
closed on the way out, so its locks go at once (the server's sweep then settles the
task as a lapsed claim). A lease lost while the block ran (``LockLost``, ``NotFound``)
is raised after the report, as ``lease()`` raises it: the locks were not held
throughout.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from community_ade.api.agent_schemas import ClaimBody, ClaimOut, CompleteBody, FailBody
from community_ade.api.schemas import TaskOut
from community_ade.client.errors import validated
from community_ade.client.lease import HeldLease, close_lease
from community_ade.client.transport import Transport
from community_ade.execution.claims import ReportedRollback

log = logging.getLogger(__name__)

RollbackOutcome = ReportedRollback

MAX_ERROR = 4000


class ApplyFailed(Exception):
    """Raise it inside a claim (or a ``@governed`` function) to say what became of the
    attempt: ``rollback_outcome``, whether to ``retry`` (back to APPROVED while attempts
    are left) and ``details``. Any other exception reports ``rollback_outcome="unknown"``.
    """

    def __init__(
        self,
        message: str,
        *,
        rollback_outcome: RollbackOutcome = "unknown",
        retry: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.rollback_outcome = rollback_outcome
        self.retry = retry
        self.details = dict(details or {})


def error_text(exc: BaseException) -> str:
    """``Type: message``, bounded as the server bounds a reported error."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR]


async def report(transport: Transport, task_id: str, body: CompleteBody | FailBody) -> TaskOut:
    """``POST /tasks/{id}/complete`` or ``/fail`` (by the body), the task as it is now."""
    route = "complete" if isinstance(body, CompleteBody) else "fail"
    answer = await transport.request(
        "POST", f"/tasks/{task_id}/{route}", json=body.model_dump(mode="json")
    )
    return TaskOut.model_validate(answer)


def complete_body(fence: int, summary: str, details: Mapping[str, Any] | None) -> CompleteBody:
    return validated(
        CompleteBody, {"fence": fence, "summary": summary, "details": dict(details or {})}
    )


def fail_body(
    fence: int,
    error: str,
    rollback_outcome: RollbackOutcome,
    retry: bool,
    details: Mapping[str, Any] | None,
) -> FailBody:
    return validated(
        FailBody,
        {
            "fence": fence,
            "error": error,
            "rollback_outcome": rollback_outcome,
            "retry": retry,
            "details": dict(details or {}),
        },
    )


class ClaimedTask:
    """The claim inside its block: the task, its ``fence``, the ``lease`` holding its
    locks, and ``outcome`` (the task as the report left it, once reported)."""

    def __init__(self, transport: Transport, answer: ClaimOut) -> None:
        self.transport = transport
        self.answer = answer
        self.lease = HeldLease(transport, answer.lease)
        self.reported = False
        self.outcome: TaskOut | None = None

    @property
    def task(self) -> TaskOut:
        """The task as the claim found it: APPLYING, with the payload to apply."""
        return self.answer.task

    @property
    def task_id(self) -> str:
        return str(self.answer.task.id)

    @property
    def fence(self) -> int:
        """Pass it to the target of the change: it refuses an older claim's writes."""
        return self.answer.fence

    def check(self) -> None:
        """Raise the reason the claim's lease was lost (``LockLost``, ``NotFound``)."""
        self.lease.check()

    async def complete(
        self, summary: str = "done", details: Mapping[str, Any] | None = None
    ) -> TaskOut:
        """APPLYING → COMPLETED; the lease closes and the locks go with it.

        Raises:
            FenceRejected: the claim lapsed and the task was taken over.
        """
        return await self._report(complete_body(self.fence, summary, details))

    async def fail(
        self,
        error: str,
        rollback_outcome: RollbackOutcome = "unknown",
        *,
        retry: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> TaskOut:
        """FAILED, or back to APPROVED with ``retry`` while attempts are left."""
        body = fail_body(self.fence, error[:MAX_ERROR], rollback_outcome, retry, details)
        return await self._report(body)

    async def _report(self, body: CompleteBody | FailBody) -> TaskOut:
        if self.reported:
            raise RuntimeError(f"the claim of task {self.task_id} was reported already")
        self.reported = True
        # Stop renewing first: the report closes the lease, and a heartbeat after it
        # would find the lease gone and call it lost.
        await self.lease.stop_renewing()
        self.outcome = await report(self.transport, self.task_id, body)
        return self.outcome

    async def fail_with(self, exc: BaseException) -> None:
        """Report ``exc`` as the attempt's failure; a report that fails is noted on
        ``exc`` (which the caller raises), not raised in its place."""
        if isinstance(exc, ApplyFailed):
            outcome, retry, details = exc.rollback_outcome, exc.retry, exc.details
        else:
            outcome, retry, details = "unknown", False, {}
        try:
            await self.fail(error_text(exc), outcome, retry=retry, details=details)
        except Exception as report_error:
            log.warning("task %s: could not report its failure: %s", self.task_id, report_error)
            exc.add_note(f"reporting this failure to the server failed too: {report_error}")


@contextlib.asynccontextmanager
async def hold_claim(
    transport: Transport, task_id: str, body: ClaimBody
) -> AsyncIterator[ClaimedTask]:
    answer = await transport.request(
        "POST", f"/tasks/{task_id}/claim", json=body.model_dump(mode="json")
    )
    claim = ClaimedTask(transport, ClaimOut.model_validate(answer))
    claim.lease.start_renewing()
    try:
        try:
            yield claim
        except GeneratorExit:  # the generator is being closed, not the block failing
            raise
        except BaseException as exc:  # cancellation too: the attempt did not finish
            if not claim.reported:
                await claim.fail_with(exc)
            raise
        if not claim.reported:
            await claim.complete()
    finally:
        await claim.lease.stop_renewing()
        if claim.outcome is None:  # no report went through: let the locks go now
            await close_lease(claim.lease)
    claim.check()
