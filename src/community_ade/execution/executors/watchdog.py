"""Process groups that must not outlive the process that started them, nor its lease.

A shell command runs in a process group of its own, so that a timeout or a cancellation
kills all of it (``commands.run_command``). If the worker itself dies — SIGKILL, the OOM
killer, its container stopped — nothing would: the command would go on changing its
target while another worker, having taken the task over, rolls it back and applies it
again. The same holds while the worker is merely *paused* (SIGSTOP, a frozen cgroup, a
VM stall): it cannot act on a lost lease, yet its command runs on.

So a process that starts commands also starts, once, this module as a watchdog child,
in a session of its own (a terminal's Ctrl-C does not reach it) and deaf to SIGINT and
SIGTERM (a service manager stopping the worker's whole control group must not take the
watchdog away before the worker has drained). It reads lines from a pipe whose only
writer is that process:

- ``+<pgid>`` when a group starts, ``+<pgid> <deadline>`` when it runs under a lease;
- ``=<pgid> <deadline>`` when the lease was renewed;
- ``-<pgid>`` once its command has ended.

End of file means the writer is gone, however it died: the watchdog kills every group
still listed and exits. A deadline is the lease's local validity (``time.monotonic``,
CLOCK_MONOTONIC: one clock for every process of the machine), which the worker's lock
heartbeats move on and ``supervise`` passes along. When a deadline passes without
renewal, the watchdog kills that group on its own: the writer's heartbeats have stopped
for the lease's length, the lock server is about to free the task's locks, and another
worker can be granted them only after the lease *and* the lock-delay have passed — by
then this command is gone. (The local validity ends a little before the server's
lease: clock drift is allowed for, as the lock client does.)

A group is listed from just after its leader starts until its leader has exited;
processes a command leaves running in the background after it ended normally are its
own business, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

log = logging.getLogger(__name__)

LeaseDeadline = Callable[[], float]
"""The monotonic time until which the current lease is known valid (0: lost already)."""

_LEASE: contextvars.ContextVar[LeaseDeadline | None] = contextvars.ContextVar(
    "ade_command_lease", default=None
)


@contextlib.contextmanager
def bound_to_lease(deadline: LeaseDeadline) -> Iterator[None]:
    """Commands started in this block (this task and those it starts) are killed by the
    watchdog once ``deadline()`` has passed without being moved on."""
    token = _LEASE.set(deadline)
    try:
        yield
    finally:
        _LEASE.reset(token)


class GroupWatchdog:
    """The parent's side: one watchdog child per process, started on first use and again
    if it is gone (killed by someone, or this process forked)."""

    def __init__(self) -> None:
        self._groups: dict[int, float | None] = {}
        self._child: subprocess.Popen[bytes] | None = None
        self._owner_pid = 0
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The watchdog child's pid, once started."""
        return None if self._child is None else self._child.pid

    def ready(self) -> None:
        """Start the watchdog now if need be, so that ``watch`` right after a command
        starts is one write: the time in which a death of this process would miss the
        new group is then the few event-loop steps between its start and ``watch``."""
        with self._lock:
            self._pipe()

    def watch(self, pgid: int, deadline: float | None = None) -> None:
        """Kill process group ``pgid`` if this process dies before ``unwatch(pgid)``, or
        once ``deadline`` (monotonic) has passed without a ``renew``."""
        with self._lock:
            self._groups[pgid] = deadline
            self._send(_line("+", pgid, deadline))

    def renew(self, pgid: int, deadline: float) -> None:
        with self._lock:
            if pgid in self._groups:
                self._groups[pgid] = deadline
                self._send(_line("=", pgid, deadline))

    def unwatch(self, pgid: int) -> None:
        with self._lock:
            self._groups.pop(pgid, None)
            self._send(f"-{pgid}\n")

    def supervise(self, pgid: int) -> Supervision:
        """Watch ``pgid`` until ``end()``: killed if this process dies, and — when started
        under ``bound_to_lease`` — once the lease's deadline passes unrenewed, with the
        renewals passed on from here while this process runs. Call from the event loop."""
        lease = _LEASE.get()
        self.watch(pgid, None if lease is None else lease())
        return Supervision(self, pgid, lease)

    def _send(self, line: str) -> None:
        pipe = self._pipe()
        try:
            pipe.write(line.encode())
            pipe.flush()
        except BrokenPipeError:
            # It died between the liveness check and the write: a new one learns every
            # group still listed when it starts.
            self._start()

    def _pipe(self) -> IO[bytes]:
        child = self._child
        if child is None or self._owner_pid != os.getpid() or child.poll() is not None:
            child = self._start()
        assert child.stdin is not None
        return child.stdin

    def _start(self) -> subprocess.Popen[bytes]:
        if self._child is not None and self._owner_pid == os.getpid():
            log.warning("process group watchdog %d was gone; starting another", self._child.pid)
        child = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
        assert child.stdin is not None
        child.stdin.write("".join(_line("+", g, d) for g, d in self._groups.items()).encode())
        child.stdin.flush()
        self._child, self._owner_pid = child, os.getpid()
        return child


class Supervision:
    """One command's group under watch (``GroupWatchdog.supervise``)."""

    def __init__(self, watchdog: GroupWatchdog, pgid: int, lease: LeaseDeadline | None) -> None:
        self._watchdog = watchdog
        self._pgid = pgid
        self._renewing = None
        if lease is not None:
            self._renewing = asyncio.get_running_loop().create_task(
                self._renew(lease), name=f"ade-command-lease-{pgid}"
            )

    async def _renew(self, lease: LeaseDeadline) -> None:
        sent = None
        while True:
            deadline = lease()
            if deadline != sent:
                self._watchdog.renew(self._pgid, deadline)
                sent = deadline
            # Often enough that a renewal reaches the watchdog long before the deadline
            # it replaces: a quarter of the time left, at most a second.
            await asyncio.sleep(min(1.0, max(0.05, (deadline - time.monotonic()) / 4)))

    def end(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
        self._watchdog.unwatch(self._pgid)


def _line(sign: str, pgid: int, deadline: float | None) -> str:
    return f"{sign}{pgid}\n" if deadline is None else f"{sign}{pgid} {deadline:.3f}\n"


WATCHDOG = GroupWatchdog()


def main() -> None:
    """The watchdog child: track the listed groups and their deadlines until end of file,
    killing a group whose deadline passes; at end of file, kill every group left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: dict[int, float | None] = {}
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        deadlines = [d for d in groups.values() if d is not None]
        wait = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
        readable, _, _ = select.select([stdin], [], [], wait)
        if readable:
            chunk = os.read(stdin, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _apply(groups, line)
        now = time.monotonic()
        for pgid, deadline in list(groups.items()):
            if deadline is not None and deadline <= now:
                del groups[pgid]
                _kill(pgid)
                # Into the worker's log (this child shares its stderr).
                sys.stderr.write(
                    f"WARNING watchdog: killed command group {pgid}: its lease ran out "
                    "unrenewed (the worker is stopped or lost it)\n"
                )
                sys.stderr.flush()
    for pgid in groups:
        _kill(pgid)


def _apply(groups: dict[int, float | None], line: bytes) -> None:
    sign, rest = line[:1], line[1:].split()
    if not rest:
        return
    pgid = int(rest[0])
    deadline = float(rest[1]) if len(rest) > 1 else None
    if sign == b"+":
        groups[pgid] = deadline
    elif sign == b"=":
        if pgid in groups:  # not one killed already: its renewal came too late
            groups[pgid] = deadline
    else:
        groups.pop(pgid, None)


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
