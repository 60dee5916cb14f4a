"""``wait``: follow one task over the WebSocket until it reaches the state asked for.

The order matters. The socket subscribes first (the server subscribes before it sends
``hello``), and only then is the task read: a change committed before the read shows in
the read, one committed after it arrives as an event, so nothing falls between them.
An event that moves the task into a state the wait is for leads to a fresh read (the
task itself is the truth, events only say when to look); every state change is an event
whose ``data.to`` names the new state, so events that leave the task where the wait does
not end (a vote short of the quorum, an edit) cost no read: in a burst of decisions, each
waiting agent sends one request, not one per event. When the socket drops, the task is
read once and the socket reopened with ``since=<last seq seen>``: the server replays
what happened meanwhile. A ``gap`` (the stream no longer holds ``since``) or a stream
reset leads to a fresh read. Only when the socket cannot open at all (the handshake is
refused: a proxy without WebSocket support, say) does ``wait`` poll, every
``poll_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHeader, InvalidMessage, InvalidStatus

from community_ade.api.schemas import TaskOut
from community_ade.client.errors import AdeProblem, problem_for
from community_ade.client.transport import API_PREFIX, Transport

log = logging.getLogger(__name__)

# The server's close codes that end a wait (anything else: reconnect).
CLOSE_PROBLEMS = {4400: "validation_failed", 4401: "unauthenticated", 4403: "forbidden"}
STREAM_RESET = 1012  # the events stream started over: a since from before means nothing
TOPICS = "task,approval"
OPEN_TIMEOUT = 10.0

Done = Callable[[str], bool]  # of a task's state


class WaitTimeout(TimeoutError):
    """``wait`` ran out of time; ``task`` is the newest state read (None if none was)."""

    def __init__(self, task_id: str, timeout: float, task: TaskOut | None) -> None:
        state = "unknown" if task is None else task.state
        super().__init__(f"task {task_id} still {state} after {timeout:g} s")
        self.task = task


class TaskWaiter:
    """One ``wait`` call: its socket, the last seq seen and the last state read."""

    def __init__(
        self,
        transport: Transport,
        task_id: str,
        done: Done,
        *,
        get: Callable[[], Awaitable[TaskOut]],
        poll_interval: float,
    ) -> None:
        self.transport = transport
        self.task_id = task_id
        self.done = done
        self.get = get
        self.poll_interval = poll_interval
        self.since: int | None = None
        self.last: TaskOut | None = None

    def ws_url(self) -> str:
        base = "ws" + self.transport.url.removeprefix("http")
        query: dict[str, Any] = {"topics": TOPICS, "subject": f"task:{self.task_id}"}
        if self.since is not None:
            query["since"] = self.since
        return f"{base}{API_PREFIX}/ws?{urlencode(query)}"

    async def read(self) -> TaskOut | None:
        """The task if it is done; remembered as the newest state seen."""
        self.last = await self.get()
        return self.last if self.done(self.last.state) else None

    async def run(self) -> TaskOut:
        drops = 0
        while True:
            try:
                async with connect(
                    self.ws_url(),
                    additional_headers=self.transport.auth_headers,
                    open_timeout=OPEN_TIMEOUT,
                ) as ws:
                    drops = 0
                    return await self._follow(ws)
            except (InvalidStatus, InvalidHeader) as exc:
                log.info("no WebSocket for task %s (%s): polling", self.task_id, exc)
                return await self._poll()
            except ConnectionClosed as exc:
                self._closed(exc)
            except (OSError, TimeoutError, InvalidMessage, ValueError) as exc:
                log.info("events socket for task %s unreachable: %s", self.task_id, exc)
            # Dropped or unreachable: look once (tolerating a server that is down too),
            # then reopen from the last seq seen.
            if (task := await self._read_if_reachable()) is not None:
                return task
            await asyncio.sleep(self.transport.backoff.delay(drops))
            drops += 1

    async def _follow(self, ws: ClientConnection) -> TaskOut:
        """Read frames until the task is done; a drop raises ``ConnectionClosed``."""
        hello = await _frame(ws)
        if self.since is None:  # first connection, or after a reset: nothing to resume
            self.since = int(hello.get("seq", 0))
            if (task := await self.read()) is not None:
                return task
        while True:
            frame = await _frame(ws)
            kind = frame.get("kind")
            if kind == "event":
                self.since = int(frame["event"]["seq"])
                if not self._may_end(frame["event"]):
                    continue
            elif kind != "gap":
                continue  # ping
            if (task := await self.read()) is not None:
                return task

    def _may_end(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` moved the task into a state the wait is for."""
        data = event.get("data")
        moved_to = data.get("to") if isinstance(data, dict) else None
        return isinstance(moved_to, str) and self.done(moved_to)

    def _closed(self, exc: ConnectionClosed) -> None:
        code = exc.rcvd.code if exc.rcvd is not None else None
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        if code in CLOSE_PROBLEMS:
            raise problem_for(
                {"type": CLOSE_PROBLEMS[code], "status": code - 4000, "detail": reason}
            ) from exc
        if code == STREAM_RESET:
            self.since = None
        log.info("events socket for task %s closed (%s %s): resuming", self.task_id, code, reason)

    async def _read_if_reachable(self) -> TaskOut | None:
        try:
            return await self.read()
        except (httpx.TransportError, AdeProblem) as exc:
            if isinstance(exc, AdeProblem) and exc.status < 500:
                raise
            log.info("task %s unreadable for now: %s", self.task_id, exc)
            return None

    async def _poll(self) -> TaskOut:
        while True:
            if (task := await self._read_if_reachable()) is not None:
                return task
            await asyncio.sleep(self.poll_interval)


async def _frame(ws: ClientConnection) -> dict[str, Any]:
    frame = json.loads(await ws.recv())
    if not isinstance(frame, dict):
        raise ValueError(f"not a frame: {frame!r:.100}")
    return frame
