"""``AdeClient``: the async SDK over the REST API and the events WebSocket.

Results are the server's own Pydantic models (``community_ade.api.schemas``): a task is a
``TaskOut``, a proposal a ``SubmitOut``, a decision a ``DecisionOut``. Request bodies are
checked by the server's models before they are sent. Failures are problem documents
raised as exceptions by their ``type`` (``community_ade.client.errors``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Literal, Self

import pydantic

from community_ade.api.agent_schemas import ClaimBody, LeaseCreate
from community_ade.api.schemas import (
    ApprovalOut,
    CancelBody,
    DecisionBody,
    DecisionOut,
    Page,
    PreviewOut,
    ResourceRefModel,
    SubmitOut,
    TaskCreate,
    TaskOut,
    TaskTypeOut,
)
from community_ade.approvals.states import OPEN_FOR_REVIEW, TERMINAL_STATES, TaskState
from community_ade.client.claims import (
    ClaimedTask,
    RollbackOutcome,
    complete_body,
    fail_body,
    hold_claim,
    report,
)
from community_ade.client.errors import AdeProblem, request_invalid, validated
from community_ade.client.lease import HeldLease, Mode, hold_lease
from community_ade.client.transport import Backoff, Transport
from community_ade.client.waiting import Done, TaskWaiter, WaitTimeout
from community_ade.settings import ClientSettings

TaskId = str | uuid.UUID
Until = Literal["decision", "final"]

# ``wait`` returns once the task is out of review: approved, rejected, expired,
# cancelled, or sent back to DRAFT with a request for changes.
UNTIL: dict[Until, Done] = {
    "decision": lambda state: state not in OPEN_FOR_REVIEW,
    # ... or once nothing more will happen on its own: a final state, or back in DRAFT.
    "final": lambda state: state in TERMINAL_STATES or state == TaskState.DRAFT,
}


_UUID = pydantic.TypeAdapter(uuid.UUID)
_TASK_TYPES = pydantic.TypeAdapter(list[TaskTypeOut])


def task_ref(task_id: TaskId) -> str:
    """A task id fit for a URL path: a UUID, never a path of someone's choosing.

    Raises:
        ValidationFailed: not a UUID.
    """
    try:
        return str(_UUID.validate_python(task_id))
    except pydantic.ValidationError as exc:
        raise request_invalid(exc, "path", "task_id") from None


async def _read_task(transport: Transport, ref: str) -> TaskOut:
    return TaskOut.model_validate(await transport.request("GET", f"/tasks/{ref}"))


def new_key() -> str:
    """A fresh Idempotency-Key: one per logical call, reused by each of its retries."""
    return f"sdk-{uuid.uuid4()}"


class AdeClient:
    """The async client. ``url`` and ``token`` default to ``ADE_URL`` and ``ADE_TOKEN``.

    ::

        async with AdeClient() as ade:
            proposal = await ade.propose("files.write", payload, resources, title="…")
            task = await ade.wait(proposal.task.id)
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        events_url: str | None = None,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        if url is None or token is None or events_url is None:
            settings = ClientSettings()
            url = url or settings.url
            events_url = events_url or settings.events_url
            if token is None and settings.token is not None:
                token = settings.token.get_secret_value()
        if not token:
            raise ValueError("no API token: pass token=… or set ADE_TOKEN")
        self.transport = Transport(url, token, timeout=timeout, backoff=backoff)
        # Where waits follow their tasks (the events socket and the reads it leads to):
        # server processes kept for that, so they answer at once while the others are
        # busy with a burst of proposals and approvals (docs/sdk.md).
        self.events = (
            Transport(events_url, token, timeout=timeout, backoff=backoff)
            if events_url
            else self.transport
        )
        self.poll_interval = poll_interval

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()
        if self.events is not self.transport:
            await self.events.aclose()

    # -- submitting ------------------------------------------------------------------

    async def propose(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        resources: Sequence[ResourceRefModel | Mapping[str, Any]] = (),
        *,
        title: str | None = None,
        description: str = "",
        priority: int = 100,
        idempotency_key: str | None = None,
    ) -> SubmitOut:
        """Create a task and submit it: preview, risk, routing (or auto-approval).

        Both requests carry one ``Idempotency-Key`` (a new one per call unless given), so
        a retry never makes a second task. Pass your own key to make the whole call
        repeatable across process restarts: the same key returns the same task.

        Raises:
            ValidationFailed: a malformed request, an unknown type, or a payload the
                executor refuses (``exc.errors`` names each field; the task stays DRAFT,
                ``exc.task_id`` says which).
        """
        body = validated(
            TaskCreate,
            {
                "type": type,
                "title": title or type,
                "description": description,
                "payload": dict(payload or {}),
                "resources": [
                    r.model_dump() if isinstance(r, ResourceRefModel) else dict(r)
                    for r in resources
                ],
                "priority": priority,
            },
        )
        key = idempotency_key or new_key()
        created = await self.transport.request(
            "POST", "/tasks", json=body.model_dump(mode="json"), idempotency_key=key
        )
        try:
            submitted = await self.transport.request(
                "POST", f"/tasks/{task_ref(created['id'])}/submit", idempotency_key=key
            )
        except AdeProblem as exc:  # the task stays DRAFT: say which, to fix or cancel it
            exc.fields.setdefault("task_id", created["id"])
            raise
        return SubmitOut.model_validate(submitted)

    async def task_types(self) -> list[TaskTypeOut]:
        """The server's installed task types (plugins included): what each does, who
        applies it, and the JSON Schema of its payload, to check a payload before
        ``propose`` sends it (the server checks it again: 422 naming the field)."""
        body = await self.transport.request("GET", "/task-types")
        return _TASK_TYPES.validate_python(body)

    async def get(self, task_id: TaskId) -> TaskOut:
        return await _read_task(self.transport, task_ref(task_id))

    async def preview(self, task_id: TaskId) -> PreviewOut:
        """The change set a decision approves; its ``digest`` is what decisions name."""
        body = await self.transport.request("GET", f"/tasks/{task_ref(task_id)}/preview")
        return PreviewOut.model_validate(body)

    async def cancel(self, task_id: TaskId, reason: str) -> TaskOut:
        body = validated(CancelBody, {"reason": reason})
        answer = await self.transport.request(
            "POST", f"/tasks/{task_ref(task_id)}/cancel", json=body.model_dump()
        )
        return TaskOut.model_validate(answer)

    async def wait(
        self,
        task_id: TaskId,
        timeout: float | None = None,
        *,
        until: Until = "decision",
        poll_interval: float | None = None,
    ) -> TaskOut:
        """The task, as soon as it is decided (``until="decision"``: out of review) or
        settled (``until="final"``: a final state, or back in DRAFT).

        Follows the task over the events WebSocket, resuming with ``since`` after a
        drop; polls every ``poll_interval`` seconds only if the socket cannot open.

        Raises:
            WaitTimeout: ``timeout`` seconds passed first (``exc.task``: the last state).
        """
        ref = task_ref(task_id)
        waiter = TaskWaiter(
            self.events,
            ref,
            UNTIL[until],
            get=lambda: _read_task(self.events, ref),
            poll_interval=self.poll_interval if poll_interval is None else poll_interval,
        )
        try:
            async with asyncio.timeout(timeout):
                return await waiter.run()
        except TimeoutError:
            if timeout is None:
                raise
            raise WaitTimeout(str(task_id), timeout, waiter.last) from None

    # -- holding -----------------------------------------------------------------------

    def lease(
        self,
        *,
        agent_id: TaskId | None = None,
        lease_seconds: float | None = None,
        resources: Mapping[str, Mode] | None = None,
        task: str | None = None,
        wait_seconds: float = 0.0,
    ) -> AbstractAsyncContextManager[HeldLease]:
        """``async with ade.lease(resources={"db": "exclusive"}) as lease:`` holds an
        agent lease (and those apply locks, fence in ``lease.fence``), renewed in the
        background, closed on exit. An agent's token leases for itself; its owner or an
        admin names ``agent_id``.

        Raises:
            LockTimeout: the locks were not granted within ``wait_seconds``.
            LockLost, NotFound: on exit (or ``lease.check()``), if the lease was lost.
        """
        body = validated(
            LeaseCreate,
            {
                "agent_id": agent_id,
                "lease_seconds": lease_seconds,
                "resources": dict(resources or {}),
                "task": task,
                "wait_seconds": wait_seconds,
            },
        )
        return hold_lease(self.transport, body)

    # -- applying a task yourself (agent.call) ----------------------------------------

    def claim(
        self, task_id: TaskId, *, lease_seconds: float | None = None, wait_seconds: float = 0.0
    ) -> AbstractAsyncContextManager[ClaimedTask]:
        """``async with ade.claim(task_id) as claim:`` takes an APPROVED task that this
        agent proposed to apply it itself: APPLYING, its locks held in a lease renewed in
        the background, ``claim.fence`` to pass to what it changes. Report with ``await
        claim.complete(summary, details)`` or ``await claim.fail(error, …)``; unreported,
        a normal exit completes and an exception fails the task (and is raised again).

        Raises:
            InvalidTransition: the task is not APPROVED. Forbidden: not this agent's.
            LockTimeout: its locks were not granted within ``wait_seconds``.
            FenceRejected: at the report, the claim lapsed and was taken over.
            LockLost, NotFound: on exit, if the lease was lost while the block ran.
        """
        body = validated(ClaimBody, {"lease_seconds": lease_seconds, "wait_seconds": wait_seconds})
        return hold_claim(self.transport, task_ref(task_id), body)

    async def complete(
        self,
        task_id: TaskId,
        fence: int,
        summary: str = "done",
        details: Mapping[str, Any] | None = None,
    ) -> TaskOut:
        """Report a claimed task done (the claim's ``fence``): COMPLETED.

        Raises:
            FenceRejected: the claim lapsed and was taken over (``exc.newest``).
            Conflict: the task is not APPLYING.
        """
        return await report(
            self.transport, task_ref(task_id), complete_body(fence, summary, details)
        )

    async def fail(
        self,
        task_id: TaskId,
        fence: int,
        error: str,
        rollback_outcome: RollbackOutcome,
        *,
        retry: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> TaskOut:
        """Report a claimed task failed: FAILED, or back to APPROVED with ``retry`` while
        attempts are left. Raises as ``complete`` does."""
        body = fail_body(fence, error, rollback_outcome, retry, details)
        return await report(self.transport, task_ref(task_id), body)

    # -- reviewing ---------------------------------------------------------------------

    async def awaiting_me(self, *, page: int = 1, limit: int = 20) -> Page[TaskOut]:
        """Tasks under review that I may still decide, oldest first."""
        body = await self.transport.request(
            "GET", "/approvals", params={"awaiting": "me", "page": page, "limit": limit}
        )
        return Page[TaskOut].model_validate(body)

    async def approval(self, task_id: TaskId) -> ApprovalOut:
        """The approval view: the task, which vote filled which slot, every review."""
        body = await self.transport.request("GET", f"/approvals/{task_ref(task_id)}")
        return ApprovalOut.model_validate(body)

    async def approve(
        self, task_id: TaskId, digest: str, comment: str = "", *, idempotency_key: str | None = None
    ) -> DecisionOut:
        """Approve the preview whose ``digest`` you reviewed.

        Raises:
            StalePreview: the preview changed (``exc.current_digest``): review it again.
            NotEligible, SelfReview, AlreadyDecided: this vote is not yours to cast.
        """
        return await self._decide("approve", task_id, digest, comment, idempotency_key)

    async def reject(
        self, task_id: TaskId, digest: str, comment: str = "", *, idempotency_key: str | None = None
    ) -> DecisionOut:
        """Reject (a veto, when you are eligible); raises as ``approve`` does."""
        return await self._decide("reject", task_id, digest, comment, idempotency_key)

    async def request_changes(
        self, task_id: TaskId, digest: str, comment: str = "", *, idempotency_key: str | None = None
    ) -> DecisionOut:
        """Send the task back to DRAFT with ``comment``; raises as ``approve`` does."""
        return await self._decide("request-changes", task_id, digest, comment, idempotency_key)

    async def _decide(
        self, action: str, task_id: TaskId, digest: str, comment: str, key: str | None
    ) -> DecisionOut:
        body = validated(DecisionBody, {"digest": digest, "comment": comment})
        answer = await self.transport.request(
            "POST",
            f"/approvals/{task_ref(task_id)}/{action}",
            json=body.model_dump(),
            idempotency_key=key or new_key(),
        )
        return DecisionOut.model_validate(answer)
