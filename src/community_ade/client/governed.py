"""``@governed``: a function of the agent's own that runs only once reviewers approved
exactly that call.

Calling the decorated function proposes an ``agent.call`` task whose payload — and so
the preview reviewers approve — is the function's name and its arguments bound to its
signature (defaults filled in) as canonical JSON. The call then waits for the decision:

- approved: the task is claimed (APPLYING, its locks held, the fence answered), the
  claimed payload is checked against the call about to run (a task whose payload is not
  this call is failed, never run), the function runs with ``current_fence()`` set, and
  the task is completed with a summary of what it returned — or failed with the
  exception, which is raised again;
- rejected, changes requested, expired or cancelled: the function never runs;
  ``Rejected``, ``ChangesRequested``, ``Expired`` or ``Cancelled`` is raised, carrying
  the reviewers' comments (``on_rejection="return"`` returns the ``Verdict`` instead, for
  an LLM to read). A task sent back for changes is cancelled: the next call, with
  changed arguments, is a new task.

Arguments that JSON cannot carry exactly (objects, tuples, non-string keys, NaN) are
refused with a ``TypeError`` before anything is proposed: what runs is what was shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, Literal, NoReturn, ParamSpec, TypeVar, overload

import httpx

from community_ade.api.schemas import ResourceRefModel, ReviewOut, TaskOut
from community_ade.approvals.states import TaskState
from community_ade.client.aio import AdeClient
from community_ade.client.claims import ApplyFailed
from community_ade.client.errors import AdeProblem, validated
from community_ade.client.sync import SyncAdeClient
from community_ade.client.waiting import WaitTimeout
from community_ade.execution.executors.agent_call import (
    FUNCTION_PATTERN,
    TASK_TYPE,
    AgentCallPayload,
    canonical_json,
)

P = ParamSpec("P")
R = TypeVar("R")
X = TypeVar("X")

Outcome = Literal["rejected", "changes_requested", "expired", "cancelled"]
OnRejection = Literal["raise", "return"]
Resources = Sequence[ResourceRefModel | Mapping[str, Any]]
ResourcesOf = Resources | Callable[[Mapping[str, Any]], Resources]

SUMMARY_CAP = 500
RETURNED_CAP = 8 * 1024  # of the returned value kept in the task's result, as JSON

_OUTCOMES: dict[str, Outcome] = {
    TaskState.REJECTED.value: "rejected",
    TaskState.DRAFT.value: "changes_requested",
    TaskState.EXPIRED.value: "expired",
    TaskState.CANCELLED.value: "cancelled",
}
_fence: ContextVar[int | None] = ContextVar("ade_governed_fence", default=None)


def current_fence() -> int:
    """The fencing token of the governed call running now: pass it to what it changes.

    Raises:
        RuntimeError: called outside a governed function's run.
    """
    fence = _fence.get()
    if fence is None:
        raise RuntimeError("current_fence() is only known inside a running @governed call")
    return fence


# -- outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Why a governed call did not run: the outcome, the task, the reviewers' votes."""

    outcome: Outcome
    task: TaskOut
    reviews: tuple[ReviewOut, ...]

    @property
    def comments(self) -> list[str]:
        return [review.comment for review in self.reviews if review.comment]

    def __str__(self) -> str:
        said = "; ".join(
            f"{review.decision} by {review.actor_id}: {review.comment}"
            for review in self.reviews
            if review.comment
        )
        return f"{self.task.title} ({self.task.id}): {self.outcome}" + (
            f" — {said}" if said else ""
        )


class NotApproved(Exception):
    """The governed call was not approved; ``verdict`` says why, ``comments`` what the
    reviewers wrote."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(str(verdict))
        self.verdict = verdict

    @property
    def comments(self) -> list[str]:
        return self.verdict.comments


class Rejected(NotApproved):
    """A reviewer rejected the call."""


class ChangesRequested(NotApproved):
    """A reviewer asked for changes: call again with what the comments ask for."""


class Expired(NotApproved):
    """Nobody decided before the review deadline."""


class Cancelled(NotApproved):
    """The task was cancelled while it waited."""


_RAISED: dict[Outcome, type[NotApproved]] = {
    "rejected": Rejected,
    "changes_requested": ChangesRequested,
    "expired": Expired,
    "cancelled": Cancelled,
}


class PayloadMismatch(ApplyFailed):
    """The claimed task's payload is not the call about to run: it is not run."""

    def __init__(self, message: str) -> None:
        super().__init__(message, rollback_outcome="nothing_to_roll_back")


# -- the call ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call: the JSON ``arguments`` reviewers see, the Python ones that will run."""

    function: str
    arguments: dict[str, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        return {"function": self.function, "arguments": self.arguments}

    def is_payload_of(self, task: TaskOut) -> bool:
        return task.type == TASK_TYPE and canonical_json(task.payload) == canonical_json(
            self.payload
        )


def _exact_json(name: str, value: Any) -> Any:
    try:
        encoded = canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"argument {name!r} is not JSON ({exc}); a governed call's arguments are its "
            "preview, so they must be JSON values"
        ) from None
    if json.loads(encoded) != value:
        raise TypeError(
            f"argument {name!r} would change as JSON (a tuple, a key that is not a string, …); "
            "pass lists and dicts with string keys"
        )
    return value


def bind(function: str, signature: inspect.Signature, args: Any, kwargs: Any) -> Call:
    """The call of ``function`` with these arguments, checked to be exact JSON.

    Raises:
        TypeError: the arguments do not fit the signature, or are not exact JSON.
    """
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = {}
    for name, value in bound.arguments.items():
        variadic = signature.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL
        arguments[name] = _exact_json(name, list(value) if variadic else value)
    return Call(function, arguments, bound.args, bound.kwargs)


def summarize(result: Any) -> tuple[str, dict[str, Any]]:
    """The report of a call that returned ``result``: a summary line and details."""
    try:
        encoded = canonical_json(result)
    except (TypeError, ValueError):
        encoded = None
    shown = encoded if encoded is not None else repr(result)
    if encoded is not None and len(encoded) <= RETURNED_CAP:
        details = {"returned": result}
    else:
        details = {"returned_repr": repr(result)[:RETURNED_CAP]}
    summary = f"returned {shown}"
    if len(summary) > SUMMARY_CAP:
        summary = summary[: SUMMARY_CAP - 1] + "…"
    return summary, details


# -- the decision and the run ------------------------------------------------------------


@dataclass(frozen=True)
class Governance:
    """The decorator's options (see ``governed``)."""

    name: str
    title: str | None
    description: str
    resources: ResourcesOf
    priority: int
    on_rejection: OnRejection
    timeout: float | None
    lease_seconds: float | None
    lock_wait_seconds: float

    def resources_of(self, call: Call) -> Resources:
        return self.resources(call.arguments) if callable(self.resources) else self.resources


async def verdict_of(ade: AdeClient, task: TaskOut) -> Verdict:
    outcome = _OUTCOMES.get(task.state)
    if outcome is None:
        raise RuntimeError(f"task {task.id} left review as {task.state}: not a decision")
    reviews = (await ade.approval(task.id)).reviews
    votes = tuple(r for r in reviews if r.digest == task.preview_digest)
    return Verdict(outcome, task, votes)


async def govern(
    ade: AdeClient, call: Call, options: Governance, run: Callable[[], Awaitable[R]]
) -> R | Verdict:
    """Propose ``call``, wait for the decision, and ``run`` it under its claim if approved."""
    payload = validated(AgentCallPayload, call.payload)  # refused before any task exists
    proposal = await ade.propose(
        TASK_TYPE,
        payload.model_dump(),
        options.resources_of(call),
        title=options.title or call.function,
        description=options.description,
        priority=options.priority,
    )
    task_id = proposal.task.id
    try:
        task = await ade.wait(task_id, options.timeout)
    except (WaitTimeout, asyncio.CancelledError):
        # Nobody will run this call now: take it out of the reviewers' queue (decided
        # meanwhile, it stays unclaimed; a cancelled caller may be cancelled again).
        with contextlib.suppress(AdeProblem, httpx.TransportError, asyncio.CancelledError):
            await ade.cancel(task_id, "the caller stopped waiting for the decision")
        raise
    if task.state != TaskState.APPROVED.value:
        verdict = await verdict_of(ade, task)
        if verdict.outcome == "changes_requested":
            with contextlib.suppress(AdeProblem):
                await ade.cancel(task_id, "changes requested: the caller proposes a new call")
        if options.on_rejection == "return":
            return verdict
        raise _RAISED[verdict.outcome](verdict)
    async with ade.claim(
        task_id, lease_seconds=options.lease_seconds, wait_seconds=options.lock_wait_seconds
    ) as claim:
        if not call.is_payload_of(claim.task):
            raise PayloadMismatch(
                f"task {task_id} claimed as {claim.task.type} "
                f"{canonical_json(claim.task.payload)[:500]}, not the call "
                f"{canonical_json(call.payload)[:500]}: not run"
            )
        token = _fence.set(claim.fence)
        try:
            result = await run()
        finally:
            _fence.reset(token)
        await claim.complete(*summarize(result))
    return result


# -- the decorator -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _async_client(client: AdeClient | SyncAdeClient | None) -> AsyncIterator[AdeClient]:
    if client is None:
        async with AdeClient() as made:
            yield made
        return
    if not isinstance(client, AdeClient):
        raise TypeError("an async @governed function needs an AdeClient (or none: ADE_URL)")
    yield client


@contextlib.contextmanager
def _sync_client(client: AdeClient | SyncAdeClient | None) -> Iterator[SyncAdeClient]:
    if client is None:
        with SyncAdeClient() as made:
            yield made
        return
    if not isinstance(client, SyncAdeClient):
        raise TypeError("a plain @governed function needs a SyncAdeClient (or none: ADE_URL)")
    yield client


class Governor(Generic[X]):
    """``governed(...)``: decorates async functions and plain ones alike."""

    def __init__(self, client: AdeClient | SyncAdeClient | None, options: dict[str, Any]):
        self.client = client
        self.options = options

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R | X]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R | X]: ...

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        given = dict(self.options)
        name = given.pop("name") or f"{func.__module__}.{func.__qualname__}"
        if not re.fullmatch(FUNCTION_PATTERN, name):
            raise TypeError(
                f"@governed: {name!r} is not a name reviewers can be shown (letters, digits, "
                "'_', '.', ':', '-'; a nested function's '<locals>' is not): pass name=…"
            )
        options = Governance(name=name, **given)
        signature = inspect.signature(func)
        client = self.client

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                call = bind(name, signature, args, kwargs)
                async with _async_client(client) as ade:
                    return await govern(ade, call, options, lambda: func(*call.args, **call.kwargs))

            return call_async

        @functools.wraps(func)
        def call_sync(*args: Any, **kwargs: Any) -> Any:
            call = bind(name, signature, args, kwargs)

            async def run() -> Any:  # in a worker thread, with the fence in its context
                return await asyncio.to_thread(func, *call.args, **call.kwargs)

            with _sync_client(client) as ade:
                return ade.portal.call(govern, ade.client, call, options, run)

        return call_sync


@overload
def governed(
    *,
    client: AdeClient | SyncAdeClient | None = None,
    name: str | None = None,
    title: str | None = None,
    description: str = "",
    resources: ResourcesOf = (),
    priority: int = 100,
    on_rejection: Literal["raise"] = "raise",
    timeout: float | None = None,
    lease_seconds: float | None = None,
    lock_wait_seconds: float = 60.0,
) -> Governor[NoReturn]: ...


@overload
def governed(
    *,
    client: AdeClient | SyncAdeClient | None = None,
    name: str | None = None,
    title: str | None = None,
    description: str = "",
    resources: ResourcesOf = (),
    priority: int = 100,
    on_rejection: Literal["return"],
    timeout: float | None = None,
    lease_seconds: float | None = None,
    lock_wait_seconds: float = 60.0,
) -> Governor[Verdict]: ...


def governed(
    *,
    client: AdeClient | SyncAdeClient | None = None,
    name: str | None = None,
    title: str | None = None,
    description: str = "",
    resources: ResourcesOf = (),
    priority: int = 100,
    on_rejection: OnRejection = "raise",
    timeout: float | None = None,
    lease_seconds: float | None = None,
    lock_wait_seconds: float = 60.0,
) -> Governor[Any]:
    """Make every call of the decorated function a reviewed ``agent.call`` task.

    Args:
        client: the agent's ``AdeClient`` (async functions) or ``SyncAdeClient`` (plain
            ones); default: a new client per call from ``ADE_URL`` and ``ADE_TOKEN``.
        name: the function name reviewers see (default ``module.qualname``).
        title, description, priority: the task's (title default: the name).
        resources: what the call touches, as ``propose`` takes them, or a function of
            the JSON arguments returning them. They route the review and are locked
            while the function runs.
        on_rejection: ``"raise"`` (``Rejected``, ``ChangesRequested``, ``Expired``,
            ``Cancelled``) or ``"return"`` (the ``Verdict``).
        timeout: seconds to wait for a decision; then the task is cancelled and
            ``WaitTimeout`` raised. Default: wait as long as it takes.
        lease_seconds: the claim's lease (renewed while the function runs).
        lock_wait_seconds: how long the claim waits for the task's locks (0 to 60;
            60: another call holding them finishes first).
    """
    return Governor(
        client,
        {
            "name": name,
            "title": title,
            "description": description,
            "resources": resources,
            "priority": priority,
            "on_rejection": on_rejection,
            "timeout": timeout,
            "lease_seconds": lease_seconds,
            "lock_wait_seconds": lock_wait_seconds,
        },
    )
