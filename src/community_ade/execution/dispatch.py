"""Queueing a task once the transaction that approved it has committed.

A task approved inside a transaction must not reach a worker before that transaction
commits (the worker would not see it APPROVED yet, or the commit could still fail). The
services call ``enqueue_after_commit``; the session's ``after_commit`` event then hands
the tasks to the queue bound to the session factory by the Runtime. Without a bound
queue (a bare sessionmaker in tests or scripts) nothing is queued here: every worker's
reconciler periodically queues approved tasks that are missing from the queue, so a
crash between commit and enqueue loses nothing either. Tasks their agent applies
(``agent.call``) are never queued: the agent claims them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from community_ade.execution.executors import agent_applied_types
from community_ade.execution.queue import TaskQueue
from community_ade.storage.models import Task

_QUEUE = "ade.task_queue"
_PENDING = "ade.tasks_to_queue"


def bind_queue(sessions: async_sessionmaker[Any], queue: TaskQueue) -> None:
    """Sessions from ``sessions`` queue the tasks approved in them on commit."""
    sessions.configure(info={_QUEUE: queue})


def enqueue_after_commit(session: AsyncSession, task: Task) -> None:
    """Queue ``task`` when the session's current transaction commits (not on rollback)."""
    if _QUEUE not in session.info or task.type in agent_applied_types():
        return
    pending: dict[str, int] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = {}
        event.listen(session.sync_session, "after_commit", _after_commit)
        event.listen(session.sync_session, "after_rollback", _after_rollback)
    pending[str(task.id)] = task.priority


def _after_commit(session: Session) -> None:
    pending: dict[str, int] = session.info.get(_PENDING) or {}
    if pending:
        queue: TaskQueue = session.info[_QUEUE]
        queue.enqueue_soon(list(pending.items()))
        pending.clear()


def _after_rollback(session: Session) -> None:
    pending: dict[str, int] = session.info.get(_PENDING) or {}
    pending.clear()
