"""Where a task's decision stands, and waiting for it: one answer for every door that
waits (the MCP ``wait_for_decision`` and ``permission_prompt`` tools, the REST
``GET /tasks/{id}/decision`` long-poll the coding-agent hooks use).

Waiting subscribes to the task's events before reading it (no change falls between the
read and the subscription), reads the task again on each event, and holds no
transaction in between (on SQLite a transaction would hold the write lock). Without an
events hub (``ade mcp`` over stdio) it polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.reviews import ReviewService
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState
from community_ade.errors import InvalidInput
from community_ade.events.envelope import Filter
from community_ade.events.hub import Hub, Subscriber
from community_ade.storage.models import Task, User

MAX_WAIT_SECONDS = 25.0  # many clients cut a call off near 60 s; a wait is asked again
POLL_SECONDS = 0.25
_OUTCOME = {
    TaskState.APPROVED: "approved",
    TaskState.APPLYING: "approved",
    TaskState.COMPLETED: "applied",
    TaskState.FAILED: "failed",
    TaskState.REJECTED: "rejected",
    TaskState.EXPIRED: "expired",
    TaskState.CANCELLED: "cancelled",
    TaskState.DRAFT: "changes_requested",
}

ReadTask = Callable[[AsyncSession], Awaitable[Task]]


def checked_wait(wait: object) -> float:
    """A requested wait in seconds, 0 to ``MAX_WAIT_SECONDS``."""
    if (
        isinstance(wait, bool)
        or not isinstance(wait, int | float)
        or not (0 <= wait <= MAX_WAIT_SECONDS)
    ):
        raise InvalidInput(
            f"wait_seconds is 0 to {MAX_WAIT_SECONDS:g}",
            errors=[{"path": "wait_seconds", "message": f"0 to {MAX_WAIT_SECONDS:g}"}],
        )
    return float(wait)


async def decision_status(session: AsyncSession, task: Task) -> dict[str, Any]:
    """Where a task stands: the decision with the reviewers' comments, or on whom it
    still waits; the apply's result once there is one."""
    state = TaskState(task.state)
    reviews = ReviewService(session)
    # The reviews of the preview proposed last (a request for changes dismisses votes,
    # but its comment is what the agent needs).
    every = await reviews.reviews_of(task)
    surfaces = await reviews.surfaces(task, every)
    votes = [r for r in every if r.digest == task.preview_digest]
    rows = await session.execute(
        select(User.id, User.username).where(User.id.in_({r.actor_id for r in votes}))
    )
    names = {user_id: name for user_id, name in rows}
    document: dict[str, Any] = {
        "task_id": str(task.id),
        "state": state.value,
        "decided": state not in OPEN_FOR_REVIEW,
        "outcome": _OUTCOME.get(state, "waiting"),
        "reviews": [
            {
                "reviewer": names.get(r.actor_id, str(r.actor_id)),
                "decision": r.decision,
                "comment": r.comment,
                "surface": surfaces.get(r.id),
                "at": r.created_at,
            }
            for r in votes
        ],
    }
    if state in OPEN_FOR_REVIEW:
        accounting = await reviews.accounting(task)
        document["waiting_on"] = list(accounting.blocked_by) if accounting else []
        document["review_deadline"] = task.review_deadline
    if task.result is not None:
        document["result"] = task.result
    if task.last_error:
        document["last_error"] = task.last_error
    return document


async def wait_for_decision(
    sessions: async_sessionmaker[AsyncSession],
    hub: Hub | None,
    read_task: ReadTask,
    *,
    task_id: uuid.UUID | str,
    principal_id: uuid.UUID,
    token_hash: str,
    wait: float,
) -> dict[str, Any]:
    """``decision_status`` as soon as the task is decided, or after ``wait`` seconds.
    ``read_task`` reads the task in a session, checking the caller may see it; a revoked
    token ends the wait at once (the hub drops its subscriber)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    subscriber = None
    if hub is not None:
        subscriber = hub.subscribe(
            Filter(frozenset({"task", "approval"}), f"task:{task_id}"),
            100,
            principal_id=principal_id,
            token_hash=token_hash,
        )
    try:
        while True:
            async with sessions.begin() as session:
                status = await decision_status(session, await read_task(session))
            left = deadline - loop.time()
            if status["decided"] or left <= 0:
                return status
            await _changed(subscriber, min(left, 5.0))
    finally:
        if subscriber is not None and hub is not None:
            hub.unsubscribe(subscriber)


async def _changed(subscriber: Subscriber | None, timeout: float) -> None:
    """Until the task's next event (with the hub), or a short poll interval."""
    if subscriber is None:
        await asyncio.sleep(min(timeout, POLL_SECONDS))
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await subscriber.queue.get()
