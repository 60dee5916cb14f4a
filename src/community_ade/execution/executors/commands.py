"""Running one command as a child process: its own process group, a timeout, bounded
output, optionally another OS user; killed with its whole group on timeout, on
cancellation and when this process dies (``watchdog``).

The shell executor runs approved commands through ``run_command`` directly (as
``ADE_SHELL_USER``) and previews through ``sandbox``, which wraps the argv in bubblewrap
and hands it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from community_ade.execution.executors import fencing
from community_ade.execution.executors.watchdog import WATCHDOG

MAX_OUTPUT_BYTES = 64 * 1024
"""Output kept per run: the first and the last half of this, the middle elided."""
SAFE_DEFAULT_USER = "nobody"
"""Who runs commands when the process is root and ``ADE_SHELL_USER`` is unset."""


@dataclass(frozen=True)
class Run:
    """How a command ended: ``exit_code`` None when it was killed at its timeout."""

    exit_code: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class RunAs:
    """The OS user a command runs as. ``switch``: this process must change to it (it is
    root); otherwise it is this process's own user."""

    name: str
    uid: int
    gid: int
    home: str
    switch: bool

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid})"


class RunAsProblem(Exception):
    """``ADE_SHELL_USER`` cannot be honoured here; the message says why and what to do."""


def resolve_run_as(configured: str | None) -> RunAs:
    """Who commands run as: ``configured`` (a user name or a numeric uid), or when unset
    ``nobody`` if this process is root and this process's own user otherwise. Never root.

    Raises:
        RunAsProblem: the user does not exist, is root, or needs a switch this process
            cannot make (it is not root).
    """
    euid = os.geteuid()
    if configured is None and euid != 0:
        home = os.environ.get("HOME", "/")
        try:
            return RunAs(pwd.getpwuid(euid).pw_name, euid, os.getegid(), home, switch=False)
        except KeyError:  # a container's uid without a passwd entry
            return RunAs(str(euid), euid, os.getegid(), home, switch=False)
    entry = _entry(configured if configured is not None else SAFE_DEFAULT_USER)
    if entry.pw_uid == 0:
        raise RunAsProblem(
            "shell commands never run as root: set ADE_SHELL_USER to an unprivileged user"
            + (f" (it is {configured!r})" if configured is not None else "")
        )
    switch = entry.pw_uid != euid
    if switch and euid != 0:
        raise RunAsProblem(
            f"ADE_SHELL_USER={configured} needs the worker to run as root to switch users; "
            f"it runs as uid {euid}: unset ADE_SHELL_USER or run it as root"
        )
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, switch)


def _entry(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise RunAsProblem(f"ADE_SHELL_USER: no such user {user!r} on this machine") from None


def bounded(data: bytes, limit: int = MAX_OUTPUT_BYTES) -> str:
    """``data`` as text, its middle elided beyond ``limit`` bytes (the start says what
    ran, the end how it failed)."""
    if len(data) > limit:
        half = limit // 2
        omitted = len(data) - 2 * half
        data = data[:half] + f"\n[... {omitted} bytes omitted ...]\n".encode() + data[-half:]
    return data.decode("utf-8", "replace")


def command_environment(extra: Mapping[str, str], *, home: str | None = None) -> dict[str, str]:
    """What a command sees: PATH, HOME (``home``, else this process's), a UTF-8 locale
    and ``extra``; not the worker's own environment (database URLs, tokens)."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    home = home if home is not None else os.environ.get("HOME")
    if home is not None:
        env["HOME"] = home
    return env | dict(extra)


async def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str],
    run_as: RunAs | None = None,
) -> Run:
    """Run ``argv`` in its own process group (as ``run_as`` when it asks for a switch);
    on timeout or cancellation the whole group is killed (a ``sh -c`` and everything it
    started) before this returns or raises.

    The group is also killed if this process dies while the command runs, and, under a
    lease (``watchdog.bound_to_lease``), once the lease runs out unrenewed (``watchdog``).

    Raises:
        OSError: the program could not be started (not found, not executable, the
            working directory not reachable by the user).
    """
    switch = run_as is not None and run_as.switch
    WATCHDOG.ready()
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            user=run_as.uid if switch and run_as else None,
            group=run_as.gid if switch and run_as else None,
            extra_groups=[] if switch else None,
        )
    )
    try:
        process = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Cancelled while asyncio connected the pipes: the command runs already, and
        # asyncio would kill only its leader, leaving what it started in the background.
        await fencing.finish(_kill_started(starting))
        raise
    supervision = WATCHDOG.supervise(process.pid)
    chunks = bytearray()
    try:
        async with asyncio.timeout(timeout):
            assert process.stdout is not None
            # Read all of it (a full pipe would block the command), keep a bounded part.
            while chunk := await process.stdout.read(65536):
                chunks += chunk
                if len(chunks) > 2 * MAX_OUTPUT_BYTES:
                    del chunks[MAX_OUTPUT_BYTES // 2 : -MAX_OUTPUT_BYTES]
            await process.wait()
    except TimeoutError:
        await _kill_group(process)
        return Run(None, bounded(bytes(chunks)))
    finally:
        if process.returncode is None:  # cancelled
            await fencing.finish(_kill_group(process))
        supervision.end()
    return Run(process.returncode, bounded(bytes(chunks)))


async def _kill_started(
    starting: asyncio.Future[asyncio.subprocess.Process],
) -> None:
    """Once the process ``starting`` starts has started, kill its group."""
    try:
        process = await starting
    except OSError:
        return  # it never ran
    await _kill_group(process)


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
