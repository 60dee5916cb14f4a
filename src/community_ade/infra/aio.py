"""Small asyncio helpers shared by the long-running loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


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
