"""Wake tasks of this process after a commit that made a certain kind of change.

A unit of work ``mark``s its session when it makes the change (appends to the audit
log, revokes a token); once that transaction commits, every event registered with
``waking`` in this process is set, from whatever thread committed. A rollback forgets
the mark. Other processes do not hear it: their readers poll as well.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


class CommitSignal:
    def __init__(self, key: str) -> None:
        self.key = key  # session.info key of a transaction that made the change
        self._wakeups: set[Callable[[], None]] = set()
        event.listen(Session, "after_commit", self._after_commit)
        event.listen(Session, "after_soft_rollback", self._after_rollback)

    def mark(self, session: AsyncSession | Session) -> None:
        session.info[self.key] = True

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(self.key, False):
            for wake in tuple(self._wakeups):
                wake()

    def _after_rollback(self, session: Session, _previous: Any = None) -> None:
        session.info.pop(self.key, None)

    @contextlib.contextmanager
    def waking(self, nudge: asyncio.Event) -> Iterator[None]:
        """While the block lasts, such a commit sets ``nudge`` (on its loop)."""
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(nudge.set)

        self._wakeups.add(wake)
        try:
            yield
        finally:
            self._wakeups.discard(wake)
