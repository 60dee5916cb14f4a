"""Process groups that must not outlive the process that started them.

A shell command runs in a process group of its own, so that a timeout or a cancellation
kills all of it (``commands.run_command``). If the worker itself dies — SIGKILL, the OOM
killer, its container stopped — nothing would: the command would go on changing its
target while another worker, having taken the task over, rolls it back and applies it
again.

So a process that starts commands also starts, once, this module as a watchdog child,
in a session of its own (a terminal's Ctrl-C does not reach it) and deaf to SIGINT and
SIGTERM (a service manager stopping the worker's whole control group must not take the
watchdog away before the worker has drained). It reads lines from a pipe whose only
writer is that process: ``+<pgid>`` when a group starts, ``-<pgid>`` once its command
has ended. End of file means the writer is gone, however it died: the watchdog kills
every group still listed and exits.

A group is listed from just after its leader starts until its leader has exited;
processes a command leaves running in the background after it ended normally are its
own business, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import IO

log = logging.getLogger(__name__)


class GroupWatchdog:
    """The parent's side: one watchdog child per process, started on first use and again
    if it is gone (killed by someone, or this process forked)."""

    def __init__(self) -> None:
        self._groups: set[int] = set()
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

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` if this process dies before ``unwatch(pgid)``."""
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+{pgid}\n")

    def unwatch(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            self._send(f"-{pgid}\n")

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
        child.stdin.write("".join(f"+{pgid}\n" for pgid in self._groups).encode())
        child.stdin.flush()
        self._child, self._owner_pid = child, os.getpid()
        return child


WATCHDOG = GroupWatchdog()


def main() -> None:
    """The watchdog child: track the listed groups until end of file, then kill them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        sign, pgid = line[:1], int(line[1:])
        if sign == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
