"""``shell``: run a command in a working directory under a workspace root.

Payload::

    {"command": ["make", "deploy"], "cwd": "/abs/workspace/service",
     "timeout_seconds": 300,
     "preview_command": ["make", "-n", "deploy"],
     "rollback_command": ["make", "undeploy"]}

Commands are argv lists, run without a shell: what the reviewer reads is exactly what is
executed, with no quoting or expansion in between. Shell features are one explicit,
visible step away: ``["/bin/sh", "-c", "..."]``.

``plan`` runs ``preview_command`` when there is one and shows its output; that command
must be free of side effects, which is the submitter's responsibility (plan runs at
submit, before anyone approved anything, and again before apply). Its output must also be
deterministic: it is part of the preview's digest and of the precondition fingerprint, so
output that changes between submit and apply sends the task back for review.

``apply`` runs ``command`` with ``ADE_TASK_ID`` and ``ADE_FENCE`` in its environment
(nothing else from the worker's environment but ``PATH`` and ``HOME``: the worker's own
secrets stay out), records the exit code and the output (stdout and stderr interleaved,
bounded), and kills the whole process group on timeout, on cancellation, and if the
worker process dies while it runs (``watchdog``). ``rollback`` runs ``rollback_command``
the same way, if there is one. The fence record of the working directory is checked and
advanced right before the command starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shlex
import signal
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from community_ade.errors import InvalidInput
from community_ade.execution.executors import fencing
from community_ade.execution.executors.base import (
    STATE_DIR_NAME,
    ApplyContext,
    ApplyFailed,
    ApplyingExecutor,
    ApplyResult,
    FieldError,
    Payload,
    Plan,
    PlanContext,
    RollbackOutcome,
    Snapshot,
    ValidationReport,
    invalid,
    parsed_for_apply,
)
from community_ade.execution.executors.watchdog import WATCHDOG

TASK_TYPE = "shell"
MAX_ARGS = 1000
MAX_COMMAND_BYTES = 64 * 1024
MAX_TIMEOUT_SECONDS = 3600.0
DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_OUTPUT_BYTES = 64 * 1024
"""Output kept per run: the first and the last half of this, the middle elided."""
_PAYLOAD_KEYS = frozenset(
    {"command", "cwd", "timeout_seconds", "preview_command", "rollback_command"}
)
_DECEPTIVE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


@dataclass(frozen=True)
class ShellTask:
    """A validated payload."""

    command: tuple[str, ...]
    cwd: str
    timeout_seconds: float
    preview_command: tuple[str, ...] | None
    rollback_command: tuple[str, ...] | None


def argv_problem(argv: object) -> str | None:
    """Why ``argv`` is not an acceptable command, or None."""
    if not isinstance(argv, Sequence) or isinstance(argv, str | bytes):
        return 'must be a list of strings (argv), e.g. ["make", "deploy"]'
    if not argv:
        return "must name a program"
    if len(argv) > MAX_ARGS:
        return f"must have at most {MAX_ARGS} arguments"
    if not all(isinstance(arg, str) for arg in argv):
        return "must contain strings only"
    if not argv[0]:
        return "must name a program (the first element is empty)"
    if any("\x00" in arg for arg in argv):
        return "must not contain NUL"
    try:
        size = sum(len(arg.encode("utf-8")) for arg in argv)
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    if size > MAX_COMMAND_BYTES:
        return f"must be at most {MAX_COMMAND_BYTES} bytes"
    return None


def cwd_problem(cwd: object) -> str | None:
    if not isinstance(cwd, str) or not cwd:
        return "must be a non-empty string"
    if any(unicodedata.category(c) in _DECEPTIVE for c in cwd):
        return "must not contain control, format or separator characters (NUL included)"
    if not os.path.isabs(cwd):
        return "must be an absolute path"
    return None


def timeout_problem(timeout: object) -> str | None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        return "must be a number of seconds"
    if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        return f"must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g}"
    return None


def parse(payload: object) -> tuple[ShellTask | None, tuple[FieldError, ...]]:
    """The validated payload, or None and every problem found. Pure: no filesystem."""
    if not isinstance(payload, Mapping):
        return None, (FieldError("", "payload must be an object"),)
    errors = [FieldError(str(key), "unknown field") for key in payload if key not in _PAYLOAD_KEYS]
    for name in ("command", "preview_command", "rollback_command"):
        value = payload.get(name)
        if (name == "command" or value is not None) and (problem := argv_problem(value)):
            errors.append(FieldError(name, problem))
    if (problem := cwd_problem(payload.get("cwd"))) is not None:
        errors.append(FieldError("cwd", problem))
    timeout = payload.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if (problem := timeout_problem(timeout)) is not None:
        errors.append(FieldError("timeout_seconds", problem))
    if errors:
        return None, tuple(errors)

    def argv(name: str) -> tuple[str, ...] | None:
        value = payload.get(name)
        return None if value is None else tuple(value)

    command = argv("command")
    assert command is not None  # checked above
    return ShellTask(
        command=command,
        cwd=str(payload["cwd"]),
        timeout_seconds=float(timeout),
        preview_command=argv("preview_command"),
        rollback_command=argv("rollback_command"),
    ), ()


@dataclass(frozen=True)
class Run:
    """How a command ended: ``exit_code`` None when it was killed at its timeout."""

    exit_code: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def bounded(data: bytes, limit: int = MAX_OUTPUT_BYTES) -> str:
    """``data`` as text, its middle elided beyond ``limit`` bytes (the start says what
    ran, the end how it failed)."""
    if len(data) > limit:
        half = limit // 2
        omitted = len(data) - 2 * half
        data = data[:half] + f"\n[... {omitted} bytes omitted ...]\n".encode() + data[-half:]
    return data.decode("utf-8", "replace")


def command_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """What a command sees: PATH, HOME, a UTF-8 locale and ``extra``; not the worker's
    own environment (database URLs, tokens)."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env | dict(extra)


async def run_command(
    argv: Sequence[str], *, cwd: Path, timeout: float, env: Mapping[str, str]
) -> Run:
    """Run ``argv`` in its own process group; on timeout or cancellation the whole group
    is killed (a ``sh -c`` and everything it started) before this returns or raises.

    The group is also killed if this process dies while the command runs, and, under a
    lease (``watchdog.bound_to_lease``), once the lease runs out unrenewed (``watchdog``).

    Raises:
        OSError: the program could not be started (not found, not executable).
    """
    WATCHDOG.ready()
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
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


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def render(argv: Sequence[str]) -> str:
    """``argv`` as one line a reviewer can read and paste into a POSIX shell."""
    return shlex.join(argv)


class ShellExecutor:
    """``shell``: validate, plan (run the preview command), snapshot, apply, rollback."""

    task_type = TASK_TYPE

    def validate(self, payload: Payload) -> ValidationReport:
        return ValidationReport.of(parse(payload)[1])

    async def plan(self, payload: Payload, context: PlanContext) -> Plan:
        spec, errors = parse(payload)
        if spec is None:
            raise invalid(TASK_TYPE, errors)
        cwd = _working_directory(spec, context)
        lines = [
            f"command: {render(spec.command)}",
            f"cwd: {cwd}",
            f"timeout: {spec.timeout_seconds:g} s",
            "rollback: "
            + ("none" if spec.rollback_command is None else render(spec.rollback_command)),
            "environment: PATH, HOME, LANG, LC_ALL, ADE_TASK_ID, ADE_FENCE",
        ]
        preview: Run | None = None
        if spec.preview_command is None:
            lines.append("preview command: none")
        else:
            preview = await _preview(spec.preview_command, cwd, context)
            lines += [
                f"preview command: {render(spec.preview_command)}",
                f"preview exit code: {preview.exit_code}",
                "preview output:",
                preview.output.rstrip("\n"),
            ]
        world = [list(spec.command), str(cwd), preview and [preview.exit_code, preview.output]]
        return Plan.build(
            preview="\n".join(lines) + "\n",
            format="text",
            precondition_fingerprint=_digest(world),
            lines_changed=1 if preview is None else preview.output.count("\n") + 1,
            summary=f"run {render(spec.command)[:200]} in {cwd}",
        )

    async def snapshot(self, payload: Payload, plan: Plan, context: ApplyContext) -> Snapshot:
        spec = _spec(payload)
        cwd = _apply_directory(spec, context)
        return Snapshot(TASK_TYPE, {"cwd": str(cwd)})

    async def apply(
        self, payload: Payload, plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult:
        spec = _spec(payload)
        run = await _run_fenced(spec.command, spec, context)
        details = {"exit_code": str(run.exit_code), "output": run.output}
        if run.exit_code is None:
            raise ApplyFailed(
                f"the command did not finish within {spec.timeout_seconds:g} s and was killed",
                output=run.output,
            )
        if not run.ok:
            raise ApplyFailed(
                f"the command exited with {run.exit_code}",
                exit_code=run.exit_code,
                output=run.output,
            )
        return ApplyResult(summary=f"ran {render(spec.command)[:200]}: exit 0", details=details)

    async def rollback(
        self, payload: Payload, snapshot: Snapshot, context: ApplyContext
    ) -> RollbackOutcome:
        spec = _spec(payload)
        if spec.rollback_command is None:
            return "nothing_to_roll_back"
        try:
            run = await _run_fenced(spec.rollback_command, spec, context)
        except ApplyFailed:
            return "rollback_failed"
        return "rolled_back" if run.ok else "rollback_failed"


if TYPE_CHECKING:  # mypy proves the class fits the protocol the registry expects
    _conforms: ApplyingExecutor = ShellExecutor()


def _spec(payload: Payload) -> ShellTask:
    return parsed_for_apply(TASK_TYPE, parse(payload))


def _working_directory(spec: ShellTask, context: PlanContext) -> Path:
    cwd = context.confine(spec.cwd, task_type=TASK_TYPE, field_path="cwd")
    if not cwd.is_dir():
        raise invalid(TASK_TYPE, [FieldError("cwd", f"{spec.cwd} is not a directory")])
    return cwd


def _apply_directory(spec: ShellTask, context: ApplyContext) -> Path:
    try:
        return _working_directory(spec, context.plan_context)
    except InvalidInput as exc:
        raise ApplyFailed(exc.message) from None


async def _preview(argv: Sequence[str], cwd: Path, context: PlanContext) -> Run:
    timeout = context.command_timeout_seconds
    try:
        run = await run_command(argv, cwd=cwd, timeout=timeout, env=command_environment({}))
    except OSError as exc:
        raise invalid(TASK_TYPE, [FieldError("preview_command", f"cannot run: {exc}")]) from None
    if run.exit_code is None:
        raise invalid(
            TASK_TYPE,
            [FieldError("preview_command", f"did not finish within {timeout:g} s")],
            output=run.output,
        )
    return run


async def _run_fenced(argv: Sequence[str], spec: ShellTask, context: ApplyContext) -> Run:
    """Check and advance the working directory's fence record, then run ``argv``."""
    cwd = _apply_directory(spec, context)
    root = context.plan_context.root_of(cwd)
    assert root is not None  # confined
    record = fencing.record_path(root / STATE_DIR_NAME / "fences", f"dir:{cwd}")
    # The command runs outside the record's lock: it may take minutes, and holding a
    # file lock that long would stall every other writer's check.
    await fencing.advance([record], context.fence, target=str(cwd))
    env = command_environment({"ADE_TASK_ID": context.task_id, "ADE_FENCE": str(context.fence)})
    try:
        return await run_command(argv, cwd=cwd, timeout=spec.timeout_seconds, env=env)
    except OSError as exc:
        raise ApplyFailed(f"cannot run {argv[0]!r}: {exc}") from None


def _digest(value: Any) -> str:
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()
