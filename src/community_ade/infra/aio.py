"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from community_ade.errors import AdeError

log = logging.getLogger(__name__)

#: What a dependency throws when it is away or was restarted (Redis, the database, the
#: network): expected in a long-running loop, logged without a traceback.
TRANSIENT_ERRORS = (AdeError, redis.RedisError, SQLAlchemyError, OSError)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True if it was set.

    ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` can swallow a
    cancellation that arrives as its timeout fires, so the loop calling it never stops
    and the process hangs at shutdown.
    """
    stop_if_cancelled()  # a loop that waits here ends even if a call absorbed its cancel
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop.

    A cancellation that lands inside a blocking Redis read (``XREAD BLOCK``) can be
    absorbed by the client library; a loop around such reads calls this every turn so
    it still ends, within one block, instead of running on and hanging the shutdown.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], limit: float = 10.0) -> None:
    """Cancel background tasks and wait for them to end, at most ``limit`` seconds.

    A shutdown must not hang on a task that ignores its cancellation (see
    ``stop_if_cancelled``): such a straggler is logged with where it is stuck, and left.
    """
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, stuck = await asyncio.wait(pending, timeout=limit)
    for task in stuck:
        where = "".join(
            f"\n  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
            for frame in task.get_stack()
        )
        log.error(
            "task %s did not stop within %.0f s of its cancellation:%s",
            task.get_name(),
            limit,
            where,
        )


class Incident:
    """The failures of one background step, logged once per incident instead of once per
    retry: the first failure as a warning, the recovery as a notice, the retries between
    at debug level; and how long to back off before the next try (doubling up to
    ``cap``). Any exception counts: a loop must outlive every error of what it uses (a
    database connection closed under it, a Redis restarted empty, a bug in one pass)."""

    def __init__(self, what: str, logger: logging.Logger, *, base: float = 0.5, cap: float = 10.0):
        self.what = what
        self.log = logger
        self.base = base
        self.cap = cap
        self.failures = 0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; the seconds to wait before trying again."""
        self.failures += 1
        if self.failures == 1:
            # An error that is not a dependency's is a bug: worth its traceback, once.
            self.log.warning(
                "%s failing: %s: %s; retrying until it recovers",
                self.what,
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, TRANSIENT_ERRORS),
            )
        else:
            self.log.debug("%s still failing (%d): %s", self.what, self.failures, exc)
        return float(min(self.cap, self.base * 2 ** min(self.failures - 1, 16)))

    def cleared(self) -> None:
        """Record a success: ends the incident, if there was one."""
        if self.failures:
            self.log.warning("%s recovered after %d failed tries", self.what, self.failures)
            self.failures = 0
