"""Fencing at the target: refuse a write whose fence is older than the newest one seen.

architecture §5: a lock grant carries a strictly increasing fencing token. A holder whose grant
was lost (a paused process, a partition) may still believe it holds it; the lock manager
cannot stop it, the target can. Each target keeps a *fence record*, a small file next to
it holding the newest fence that wrote there. A write first takes an exclusive OS lock
(``flock``) on the ``.lock`` file of the record's directory, refuses with
``FenceRejected`` if a record is newer than its own fence, records its fence (before
writing, so that a writer killed half-way still fences out the older holder), and writes
while the lock is held. An equal fence passes: the same grant may write twice (apply,
then rollback). One lock per directory rather than per record keeps a task that writes a
thousand files to one open file and one lock.

Where the records live is each executor's choice (next to the target):
``<workspace root>/.ade/fences/`` for files and working directories,
``<git common dir>/ade-fences/`` for a repository's branches and ``<data dir>/fences/``
for HTTP endpoints. A record is named by the sha256 of the target's name, so any name
(a path, a URL) maps to one flat, safe file name.

Also here: ``finish``, which lets a short critical section run to its end even when the
task awaiting it is cancelled (a lost lease cancels apply; a half-done ref update or a
file lock acquired by a thread nobody waits for would be worse than finishing).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from community_ade.errors import FenceRejected

T = TypeVar("T")

LOCK_NAME = ".lock"
"""The file whose ``flock`` guards every record in its directory (no record is named so:
records are named by a sha256)."""
RECORD_WIDTH = 20
"""Digits in a record: every 64-bit fence fits; a fixed width lets one small write
replace the old value in place."""


def record_path(directory: Path, target: str) -> Path:
    """The record of ``target`` (any name) in ``directory``."""
    return directory / hashlib.sha256(target.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def fenced(records: Iterable[Path], fence: int, *, target: str) -> Iterator[None]:
    """Hold the lock of every record's directory, check ``fence`` against each record and
    record it; the body is the write. Blocking (file locks): call from a thread.
    Directories are locked in sorted order, so two writers cannot deadlock.

    Raises:
        FenceRejected: a record holds a newer fence; nothing was recorded or written.
    """
    paths = sorted(set(records))
    held: list[int] = []
    try:
        for directory in sorted({path.parent for path in paths}):
            held.append(_lock(directory))
        newest = max((newest_fence(path) for path in paths), default=0)
        if fence < newest:
            raise FenceRejected(
                f"fence {fence} is older than fence {newest}, which already wrote to {target}",
                fence=fence,
                newest=newest,
            )
        for path in paths:
            _write(path, fence)
        yield
    finally:
        for fd in held:
            os.close(fd)  # closing releases the flock


async def advance(records: Iterable[Path], fence: int, *, target: str) -> None:
    """Check ``fence`` and record it, with no write under the lock: for writes too long
    to hold it through (a command, an HTTP request), which start right after."""
    paths = tuple(records)

    def check() -> None:
        with fenced(paths, fence, target=target):
            pass

    await finish(asyncio.to_thread(check))


async def fenced_call(
    records: Iterable[Path], fence: int, write: Callable[[], Awaitable[T]], *, target: str
) -> T:
    """``write()`` under ``fenced`` from async code, run to its end even if the caller is
    cancelled (see ``finish``)."""
    paths = tuple(records)

    async def guarded() -> T:
        stack = contextlib.ExitStack()
        await asyncio.to_thread(stack.enter_context, fenced(paths, fence, target=target))
        with stack:
            return await write()

    return await finish(guarded())


async def finish(work: Awaitable[T]) -> T:
    """Await ``work`` to its end. If the caller is cancelled meanwhile, the work still
    completes (its outcome is dropped) and the cancellation is raised afterwards."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # the work itself was cancelled
                raise
            cancelled = True
            continue
        except BaseException:
            if cancelled:
                raise asyncio.CancelledError from None
            raise
        if cancelled:
            raise asyncio.CancelledError
        return result


def newest_fence(path: Path) -> int:
    """The fence a record holds (0: none yet)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return 0
    try:
        raw = os.pread(fd, RECORD_WIDTH + 1, 0)
    finally:
        os.close(fd)
    if not raw:  # created by a writer that died before recording: it wrote nothing
        return 0
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit():
        # Refusing every write is safer than guessing: an operator must look at it.
        raise FenceRejected(f"fence record {path} is corrupt ({text!r})", fence=0, newest=-1)
    return int(text)


def _lock(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(directory / LOCK_NAME, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write(path: Path, fence: int) -> None:
    """Replace the record's value in place: one small write of a fixed width.

    Not fsync'ed: the record fences out *running* stale holders, and a crash of the
    machine that loses the write also ends every process that could still hold an old
    grant here. (Whether the target's own data is flushed is the executor's business.)
    """
    if not 0 <= fence < 10**RECORD_WIDTH:
        raise ValueError(f"fence {fence} out of range")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        os.pwrite(fd, f"{fence:0{RECORD_WIDTH}d}\n".encode("ascii"), 0)
    finally:
        os.close(fd)
