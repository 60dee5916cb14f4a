"""The sandbox every command that runs before approval runs in: bubblewrap (``bwrap``).

A preview runs at submit, before anyone approved anything, so it is treated as hostile
even though its argv comes from an admin's profile (its parameters and the working
directory's content come from the submitter). Inside the sandbox it has:

- every namespace of its own (``--unshare-all``): no network at all, no view of other
  processes, its own hostname; it dies with its parent (``--die-with-parent``) and has
  no terminal to push input into (``--new-session``); no capabilities;
- read-only views of the system (``/usr``, the ``/bin`` and ``/lib`` links or
  directories, a few files of ``/etc`` that programs need to start), a private
  ``/proc`` and ``/dev``;
- the working directory, read-only, at its own path; the data directory, other
  workspace roots and the root's ``.ade/`` state that lie inside it are covered with an
  empty read-only tmpfs; nothing else of the host;
- a private, size-limited tmpfs at ``/tmp``, which is also ``HOME``: the only place it
  can write, gone when it ends;
- uid and gid 65534 inside; outside, the unprivileged ``ADE_SHELL_USER`` (``nobody``
  by default when the worker is root);
- resource limits (``prlimit``): CPU seconds, address space, file size, processes, open
  files, no core dumps; plus the caller's wall-clock timeout and output cap.

``bwrap_argv`` is pure (argv in, argv out); ``host_layout`` reads which system paths
exist; ``ensure_usable`` runs a probe once per configuration and caches the answer;
``run_sandboxed`` puts it together.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from community_ade.execution.executors.commands import Run, RunAs, run_command

SANDBOX_ID = 65534
"""uid and gid inside the sandbox ("nobody")."""
SCRATCH = "/tmp"
"""The private tmpfs: the sandbox's HOME and TMPDIR."""
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs need from /etc to start and name users; no secrets (no shadow, no keys).
ETC_PATHS = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
)
PROBE_TIMEOUT_SECONDS = 15.0
INSTALL_HINT = "install bubblewrap (apt-get install bubblewrap) or set ADE_SANDBOX_BWRAP"


@dataclass(frozen=True)
class SandboxLimits:
    """Per-process limits (``setrlimit`` through ``prlimit``) of a sandboxed command."""

    cpu_seconds: int = 30
    memory_bytes: int = 1024 * 1024 * 1024
    file_size_bytes: int = 64 * 1024 * 1024
    processes: int = 256
    open_files: int = 256
    scratch_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_bytes", "file_size_bytes", "processes"):
            if getattr(self, name) < 1:
                raise ValueError(f"sandbox limit {name} must be positive")


@dataclass(frozen=True)
class SandboxConfig:
    """Where the tools are (names looked up on PATH, or absolute paths) and the limits.
    ``hidden``: directories never visible in a sandbox (the data directory)."""

    bwrap: str = "bwrap"
    prlimit: str = "prlimit"
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    hidden: tuple[Path, ...] = ()


class SandboxUnavailable(Exception):
    """No working sandbox here: previews are refused rather than run unprotected."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class HostPath:
    """A system path the sandbox shows: bound read-only, or recreated as a symlink
    (``/bin -> usr/bin`` on merged-/usr systems)."""

    path: str
    link_target: str | None = None


def host_layout() -> tuple[HostPath, ...]:
    """Which of ``SYSTEM_PATHS`` and ``ETC_PATHS`` exist here, and which are symlinks."""
    found = []
    for path in (*SYSTEM_PATHS, *ETC_PATHS):
        if os.path.islink(path) and path in SYSTEM_PATHS:
            found.append(HostPath(path, os.readlink(path)))
        elif os.path.exists(path):
            found.append(HostPath(path))
    return tuple(found)


def bwrap_argv(
    argv: Sequence[str],
    *,
    tools: tuple[str, str],
    cwd: Path | None,
    hidden: Sequence[Path],
    layout: Sequence[HostPath],
    limits: SandboxLimits,
) -> list[str]:
    """The full argv: ``prlimit`` with the limits, ``bwrap`` with the sandbox, ``argv``.

    ``tools`` are the absolute paths of prlimit and bwrap; ``cwd`` (a resolved path, or
    None for a probe) is bound read-only and is where ``argv`` starts; each of
    ``hidden`` that lies strictly inside ``cwd`` is covered with an empty read-only tmpfs.
    """
    prlimit, bwrap = tools
    full = [
        prlimit,
        f"--cpu={limits.cpu_seconds}",
        f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_size_bytes}",
        f"--nproc={limits.processes}",
        f"--nofile={limits.open_files}",
        "--core=0",
        "--",
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
        "--uid",
        str(SANDBOX_ID),
        "--gid",
        str(SANDBOX_ID),
    ]
    for entry in layout:
        if entry.link_target is not None:
            full += ["--symlink", entry.link_target, entry.path]
        else:
            full += ["--ro-bind", entry.path, entry.path]
    full += ["--proc", "/proc", "--dev", "/dev"]
    full += ["--size", str(limits.scratch_bytes), "--tmpfs", SCRATCH]
    if cwd is not None:
        full += ["--ro-bind", str(cwd), str(cwd)]
        for path in sorted(set(hidden)):
            if path != cwd and path.is_relative_to(cwd):
                full += ["--tmpfs", str(path), "--remount-ro", str(path)]
    full += ["--chdir", str(cwd) if cwd is not None else SCRATCH, "--", *argv]
    return full


def sandbox_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """What a sandboxed command sees: nothing of the worker's environment."""
    base = {
        "PATH": SANDBOX_PATH,
        "HOME": SCRATCH,
        "TMPDIR": SCRATCH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    return base | dict(extra)


def _tools(config: SandboxConfig) -> tuple[str, str]:
    """Absolute paths of prlimit and bwrap, or ``SandboxUnavailable``."""
    found = []
    for tool, what in ((config.prlimit, "prlimit (util-linux)"), (config.bwrap, "bwrap")):
        path = shutil.which(tool)
        if path is None:
            hint = INSTALL_HINT if tool == config.bwrap else "install util-linux"
            raise SandboxUnavailable(
                f"shell previews need a sandbox and {what} was not found ({tool!r}): {hint}"
            )
        found.append(os.path.abspath(path))
    return found[0], found[1]


# Two first previews racing both probe: harmless, and simpler than a lock shared by
# event loops.
_probed: dict[tuple[str, str, int, int], str | None] = {}


async def ensure_usable(config: SandboxConfig, run_as: RunAs) -> tuple[str, str]:
    """The tools' paths, once a sandbox has been seen to work for ``run_as``: a probe
    (``true`` in a sandbox with every option a preview gets) runs once per tools and
    user, and its answer, good or bad, is kept until the process restarts.

    Raises:
        SandboxUnavailable: a tool is missing or the probe failed (message: its output).
    """
    tools = _tools(config)
    key = (*tools, run_as.uid, run_as.gid)
    if key not in _probed:
        _probed[key] = await _probe(tools, config.limits, run_as)
    problem = _probed[key]
    if problem is not None:
        raise SandboxUnavailable(problem)
    return tools


async def _probe(tools: tuple[str, str], limits: SandboxLimits, run_as: RunAs) -> str | None:
    argv = bwrap_argv(
        ["true"], tools=tools, cwd=None, hidden=(), layout=host_layout(), limits=limits
    )
    try:
        run = await run_command(
            argv,
            cwd=Path("/"),
            timeout=PROBE_TIMEOUT_SECONDS,
            env=sandbox_environment({}),
            run_as=run_as,
        )
    except OSError as exc:
        return f"shell previews need a sandbox and bwrap cannot start: {exc}"
    if run.ok:
        return None
    why = run.output.strip()[-500:] or f"exit code {run.exit_code}"
    return (
        f"shell previews need a sandbox and bubblewrap does not work here as {run_as} "
        f"(user namespaces disabled?): {why}"
    )


async def run_sandboxed(
    argv: Sequence[str],
    *,
    cwd: Path,
    hidden: Sequence[Path],
    env: Mapping[str, str],
    timeout: float,
    run_as: RunAs,
    config: SandboxConfig,
) -> Run:
    """Run ``argv`` in the sandbox with ``cwd`` (resolved) as its read-only working
    directory.

    Raises:
        SandboxUnavailable: see ``ensure_usable``.
    """
    tools = await ensure_usable(config, run_as)
    full = bwrap_argv(
        argv,
        tools=tools,
        cwd=cwd,
        hidden=(*config.hidden, *hidden),
        layout=host_layout(),
        limits=config.limits,
    )
    try:
        return await run_command(
            full, cwd=Path("/"), timeout=timeout, env=sandbox_environment(env), run_as=run_as
        )
    except OSError as exc:  # the tools vanished since the probe
        raise SandboxUnavailable(f"the sandbox cannot start: {exc}") from None
