"""``shell``: run a command an admin's profile allows, in a working directory under a
workspace root.

Payload::

    {"profile": "git-diff-stat", "params": {}, "cwd": "/srv/repos/api",
     "timeout_seconds": 60}

The profile (``shell_profile``, stored by admins) holds the argv templates of the
command, of its preview and of its rollback; the submitter chooses the profile, fills in
its typed parameters and names the working directory. Commands run without a shell: what
the reviewer reads is exactly what is executed.

``plan`` runs the profile's preview command, if it has one, **in the sandbox**
(``sandbox``: bubblewrap, no network, the working directory read-only, nothing else of
the host that matters) and shows its output. Its output is part of the preview's digest
and of the precondition fingerprint, so output that changes between submit and apply
sends the task back for review. Without a working sandbox previews are refused, never run
unprotected.

``apply`` runs the command as ``ADE_SHELL_USER`` (never root; ``nobody`` when the worker
is root and it is unset) with ``ADE_TASK_ID`` and ``ADE_FENCE`` and the profile's
variables in its environment (nothing else from the worker's but ``PATH``), records the
exit code and the output, and kills the whole process group on timeout, on cancellation
and if the worker dies (``commands``, ``watchdog``). ``rollback`` runs the profile's
rollback command the same way. The fence record of the working directory is checked and
advanced right before the command starts.

Free-form tasks (``{"command": [...], "cwd": ..., "rollback_command": [...]}``) exist
only where an admin turned them on (``ADE_SHELL_FREE_FORM``); they never have a preview
command: nothing a submitter wrote runs before approval.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from community_ade.errors import InvalidInput
from community_ade.execution.executors import fencing
from community_ade.execution.executors.base import (
    STATE_DIR_NAME,
    AbsolutePath,
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
    model_errors,
    parsed_for_apply,
)
from community_ade.execution.executors.commands import (
    Run,
    RunAs,
    RunAsProblem,
    command_environment,
    resolve_run_as,
    run_command,
)
from community_ade.execution.executors.sandbox import SandboxUnavailable, run_sandboxed
from community_ade.execution.executors.shell_profile import (
    MAX_PARAMETERS,
    MAX_TIMEOUT_SECONDS,
    MAX_VALUE_LENGTH,
    PARAMETER_NAME,
    PROFILE_NAME,
    Argv,
    ShellConfig,
    apply_environment,
    argv_problem,
    deceptive,
    preview_environment,
    render,
)

TASK_TYPE = "shell"
DEFAULT_TIMEOUT_SECONDS = 60.0
_PROFILE_KEYS = frozenset({"profile", "params", "cwd", "timeout_seconds"})
_FREE_FORM_KEYS = frozenset({"command", "cwd", "timeout_seconds", "rollback_command"})
_PREVIEW_REFUSED = (
    "a task cannot bring its own preview command: previews run only from an admin's "
    'shell profile, in a sandbox (name one with "profile")'
)
_ENVIRONMENT = "PATH, HOME, LANG, LC_ALL, ADE_TASK_ID, ADE_FENCE"


@dataclass(frozen=True)
class ShellTask:
    """A payload of the right shape: a profile with its parameters, or (``profile``
    None) a free-form ``command``. Whether the profile exists and the parameters fit it
    is decided at plan."""

    cwd: str
    timeout_seconds: float | None
    profile: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    rollback_command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Commands:
    """A task resolved against its profile (or free-form): exactly what would run."""

    command: tuple[str, ...]
    preview: tuple[str, ...] | None
    rollback: tuple[str, ...] | None
    timeout_seconds: float
    preview_env: Mapping[str, str]
    apply_env: Mapping[str, str]
    profile: str | None


Cwd = Annotated[
    AbsolutePath,
    Field(
        description="The absolute working directory; it must lie inside a workspace root "
        "(ADE_WORKSPACE_ROOTS) and, for a profile task, inside the profile's cwd_roots.",
    ),
]
TimeoutSeconds = Annotated[
    float | None,
    Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="How long the command may run (at most the profile's max_timeout_seconds; "
        f"default {DEFAULT_TIMEOUT_SECONDS:g}).",
    ),
]


class ShellProfileTask(BaseModel):
    """Run the command of an admin's shell profile (GET /api/v1/shell-profiles)."""

    model_config = ConfigDict(extra="forbid")

    profile: str = Field(pattern=PROFILE_NAME, description="The profile's name.")
    params: dict[str, Annotated[str, Field(max_length=MAX_VALUE_LENGTH)] | int] = Field(
        default_factory=dict,
        max_length=MAX_PARAMETERS,
        json_schema_extra={"propertyNames": {"pattern": PARAMETER_NAME}},
        description="Values of the profile's parameters; their types, bounds and defaults "
        "are the profile's.",
    )
    cwd: Cwd
    timeout_seconds: TimeoutSeconds


class ShellCommandTask(BaseModel):
    """Run a command of the task's own: only where an admin allows free-form commands
    (ADE_SHELL_FREE_FORM); it never has a preview command."""

    model_config = ConfigDict(extra="forbid")

    command: Argv = Field(description="The command as argv (no shell): the program first.")
    rollback_command: Argv | None = Field(
        default=None, description="Run, as argv, if the apply has to be rolled back."
    )
    cwd: Cwd
    timeout_seconds: TimeoutSeconds


class ShellPayload(RootModel[ShellProfileTask | ShellCommandTask]):
    """A command to run in a working directory: an admin's shell profile with its
    parameters or, where allowed, a command of the task's own."""

    # The payload's JSON Schema. ``parse`` checks first, and what a schema cannot say (argv
    # bytes and characters; the profile's own parameters at plan); this model last.


def cwd_problem(cwd: object) -> str | None:
    if not isinstance(cwd, str) or not cwd:
        return "must be a non-empty string"
    if deceptive(cwd):
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


def params_problems(params: object) -> list[FieldError]:
    """The shape of ``params``: names and scalar values (their types are the profile's)."""
    if not isinstance(params, Mapping):
        return [FieldError("params", "must be an object")]
    if len(params) > MAX_PARAMETERS:
        return [FieldError("params", f"must have at most {MAX_PARAMETERS} entries")]
    errors = []
    for name, value in params.items():
        path = f"params.{name}"
        if not isinstance(name, str) or not _matches(PARAMETER_NAME, name):
            errors.append(FieldError(path, "is not a parameter name"))
        elif isinstance(value, bool) or not isinstance(value, str | int):
            errors.append(FieldError(path, "must be a string or a whole number"))
        elif isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
            errors.append(FieldError(path, f"must be at most {MAX_VALUE_LENGTH} characters"))
    return errors


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def parse(payload: object) -> tuple[ShellTask | None, tuple[FieldError, ...]]:
    """The validated payload, or None and every problem found. Pure: no filesystem."""
    if not isinstance(payload, Mapping):
        return None, (FieldError("", "payload must be an object"),)
    profiled = "profile" in payload
    errors: list[FieldError] = []
    if "preview_command" in payload:
        errors.append(FieldError("preview_command", _PREVIEW_REFUSED))
    allowed = _PROFILE_KEYS if profiled else _FREE_FORM_KEYS
    errors += [
        FieldError(str(key), "unknown field" + (" (a profile task has no command)" * profiled))
        for key in payload
        if key not in allowed and key != "preview_command"
    ]
    if profiled:
        name = payload["profile"]
        if not isinstance(name, str) or not _matches(PROFILE_NAME, name):
            errors.append(FieldError("profile", "must be a profile name (a-z 0-9 . _ -)"))
        errors += params_problems(payload.get("params", {}))
    else:
        for key in ("command", "rollback_command"):
            value = payload.get(key)
            if (key == "command" or value is not None) and (problem := argv_problem(value)):
                errors.append(FieldError(key, problem))
    if (problem := cwd_problem(payload.get("cwd"))) is not None:
        errors.append(FieldError("cwd", problem))
    timeout = payload.get("timeout_seconds")
    if timeout is not None and (problem := timeout_problem(timeout)) is not None:
        errors.append(FieldError("timeout_seconds", problem))
    errors = errors or model_errors(ShellPayload, payload)
    if errors:
        return None, tuple(errors)
    if profiled:
        return ShellTask(
            cwd=str(payload["cwd"]),
            timeout_seconds=None if timeout is None else float(timeout),
            profile=str(payload["profile"]),
            params=dict(payload.get("params", {})),
        ), ()
    rollback = payload.get("rollback_command")
    return ShellTask(
        cwd=str(payload["cwd"]),
        timeout_seconds=None if timeout is None else float(timeout),
        command=tuple(payload["command"]),
        rollback_command=None if rollback is None else tuple(rollback),
    ), ()


def render_argv(argv: Sequence[str]) -> str:
    """``argv`` as one line a reviewer can read and paste into a POSIX shell."""
    return shlex.join(argv)


class ShellExecutor:
    """Run a command an admin's shell profile allows: the payload names the profile, fills
    in its typed parameters and names the working directory (``{"profile": "git-commit",
    "params": {"message": "..."}, "cwd": "/srv/repos/api"}``; GET /api/v1/shell-profiles
    lists the profiles). The profile's preview runs in a sandbox at submit; the approved
    command runs as the shell user.

    validate, plan (the profile's preview, sandboxed), snapshot, apply, rollback."""

    task_type = TASK_TYPE
    payload_model = ShellPayload

    def validate(self, payload: Payload) -> ValidationReport:
        return ValidationReport.of(parse(payload)[1])

    async def plan(self, payload: Payload, context: PlanContext) -> Plan:
        spec, errors = parse(payload)
        if spec is None:
            raise invalid(TASK_TYPE, errors)
        cwd = _working_directory(spec, context)
        commands = await _resolve(spec, cwd, context)
        run_as = _run_as(_config(context))
        lines = _header(commands, cwd, run_as)
        preview: Run | None = None
        if commands.preview is None:
            lines.append("preview command: none")
        else:
            preview = await _preview(commands, cwd, context, run_as)
            lines += [
                f"preview command: {render_argv(commands.preview)} (sandboxed)",
                f"preview exit code: {preview.exit_code}",
                "preview output:",
                preview.output.rstrip("\n"),
            ]
        text = "\n".join(lines) + "\n"
        return Plan.build(
            preview=text,
            format="text",
            precondition_fingerprint=_digest([text]),
            lines_changed=1 if preview is None else preview.output.count("\n") + 1,
            summary=f"run {render_argv(commands.command)[:200]} in {cwd}",
        )

    async def snapshot(self, payload: Payload, plan: Plan, context: ApplyContext) -> Snapshot:
        """What the apply will run, checked against the approved preview: the working
        directory and the digest of the preview's header (command, rollback, user,
        environment), which a rollback checks again."""
        task = await _approved(payload, plan.preview, context)
        return Snapshot(TASK_TYPE, {"cwd": str(task.cwd), "approved": task.header_digest})

    async def apply(
        self, payload: Payload, plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult:
        task = await _approved(payload, plan.preview, context)
        commands = task.commands
        run = await _run_fenced(commands.command, task, context)
        shown = render_argv(commands.command)[:200]
        details = {"exit_code": str(run.exit_code), "output": run.output}
        if run.exit_code is None:
            raise ApplyFailed(
                f"the command did not finish within {commands.timeout_seconds:g} s and was killed",
                output=run.output,
            )
        if not run.ok:
            raise ApplyFailed(
                f"the command exited with {run.exit_code}",
                exit_code=run.exit_code,
                output=run.output,
            )
        return ApplyResult(summary=f"ran {shown}: exit 0", details=details)

    async def rollback(
        self, payload: Payload, snapshot: Snapshot, context: ApplyContext
    ) -> RollbackOutcome:
        try:
            task = await _resolved_for_apply(payload, context)
            if task.header_digest != snapshot.data_of(TASK_TYPE).get("approved"):
                return "rollback_failed"  # its profile changed since: not what was approved
            if task.commands.rollback is None:
                return "nothing_to_roll_back"
            run = await _run_fenced(task.commands.rollback, task, context)
        except ApplyFailed:
            return "rollback_failed"
        return "rolled_back" if run.ok else "rollback_failed"


if TYPE_CHECKING:  # mypy proves the class fits the protocol the registry expects
    _conforms: ApplyingExecutor = ShellExecutor()


def _config(context: PlanContext) -> ShellConfig:
    return context.shell if context.shell is not None else ShellConfig()


def _spec(payload: Payload) -> ShellTask:
    return parsed_for_apply(TASK_TYPE, parse(payload))


def _refuse(path: str, message: str, **details: Any) -> InvalidInput:
    return invalid(TASK_TYPE, [FieldError(path, message)], **details)


def _working_directory(spec: ShellTask, context: PlanContext) -> Path:
    cwd = context.confine(spec.cwd, task_type=TASK_TYPE, field_path="cwd")
    if not cwd.is_dir():
        raise _refuse("cwd", f"{spec.cwd} is not a directory")
    for private in _config(context).sandbox.hidden:
        real = private.resolve()
        if cwd == real or cwd.is_relative_to(real) or real.is_relative_to(cwd):
            raise _refuse(
                "cwd",
                f"{spec.cwd} overlaps the data directory {private}, which only the server "
                "may read: shell working directories must lie outside it (ADE_WORKSPACE_ROOTS)",
            )
    return cwd


async def _resolve(spec: ShellTask, cwd: Path, context: PlanContext) -> Commands:
    """What ``spec`` would run: its profile's templates filled in (``InvalidInput`` for a
    missing profile, a parameter that does not fit, a cwd outside the profile's roots),
    or its free-form command where those are allowed."""
    config = _config(context)
    if spec.profile is None:
        if not config.free_form:
            raise _refuse(
                "command",
                "free-form commands are turned off here (ADE_SHELL_FREE_FORM): name an "
                'admin\'s shell profile with "profile" instead',
            )
        assert spec.command is not None
        return Commands(
            command=spec.command,
            preview=None,
            rollback=spec.rollback_command,
            timeout_seconds=spec.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
            preview_env={},
            apply_env={},
            profile=None,
        )
    profile = await config.profiles.get(spec.profile)
    if profile is None:
        raise _refuse(
            "profile",
            f"there is no shell profile {spec.profile!r}; an admin defines them "
            "(GET /api/v1/shell-profiles lists them)",
        )
    values, errors = profile.arguments(spec.params)
    if profile.cwd_roots and not _under_any(cwd, profile.cwd_roots):
        roots = ", ".join(profile.cwd_roots)
        errors.append(FieldError("cwd", f"profile {spec.profile!r} runs only under {roots}"))
    limit = profile.max_timeout_seconds
    if spec.timeout_seconds is not None and spec.timeout_seconds > limit:
        errors.append(FieldError("timeout_seconds", f"profile allows at most {limit:g} s"))
    for name in profile.path_parameters():
        if name in values and (problem := _path_problem(cwd, values[name], context)):
            errors.append(FieldError(f"params.{name}", problem))
    if errors:
        raise invalid(TASK_TYPE, errors)
    return Commands(
        command=render(profile.command, values),
        preview=None if profile.preview is None else render(profile.preview, values),
        rollback=None if profile.rollback is None else render(profile.rollback, values),
        timeout_seconds=spec.timeout_seconds or min(DEFAULT_TIMEOUT_SECONDS, limit),
        preview_env=preview_environment(profile),
        apply_env=apply_environment(profile),
        profile=spec.profile,
    )


def _under_any(cwd: Path, roots: Sequence[str]) -> bool:
    real = [Path(root).resolve() for root in roots]
    return any(cwd == root or cwd.is_relative_to(root) for root in real)


def _path_problem(cwd: Path, value: str, context: PlanContext) -> str | None:
    """Why ``value`` (relative) escapes ``cwd`` once symlinks are followed, or None."""
    try:
        real = (cwd / value).resolve()
    except (OSError, RuntimeError) as exc:
        return f"cannot be resolved: {exc}"
    if not (real == cwd or real.is_relative_to(cwd)):
        return f"leads outside the working directory (to {real})"
    if context.is_reserved(real):
        return f"is inside {STATE_DIR_NAME}/, Community ADE's own state"
    return None


def _run_as(config: ShellConfig) -> RunAs:
    try:
        return resolve_run_as(config.user)
    except RunAsProblem as exc:
        raise _refuse("", str(exc)) from None


def _header(commands: Commands, cwd: Path, run_as: RunAs) -> list[str]:
    """The preview's lines before the preview command's output: everything the apply
    and the rollback depend on."""
    lines = [
        f"profile: {commands.profile or 'none (a free-form command)'}",
        f"command: {render_argv(commands.command)}",
        f"cwd: {cwd}",
        f"timeout: {commands.timeout_seconds:g} s",
        f"runs as: {run_as}",
        "rollback: " + ("none" if commands.rollback is None else render_argv(commands.rollback)),
        f"environment: {_ENVIRONMENT}",
    ]
    if commands.apply_env:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(commands.apply_env.items()))
        lines.append(f"profile environment: {shown}")
    return lines


async def _preview(commands: Commands, cwd: Path, context: PlanContext, run_as: RunAs) -> Run:
    assert commands.preview is not None
    timeout = context.command_timeout_seconds
    root = context.root_of(cwd)
    # Other workspace roots and the root's own state stay out of sight when they lie
    # inside the working directory (the data directory is in the sandbox config).
    hidden = [r.resolve() for r in context.allowed_roots]
    if root is not None:
        hidden.append(root / STATE_DIR_NAME)
    try:
        run = await run_sandboxed(
            commands.preview,
            cwd=cwd,
            hidden=[path for path in hidden if path.is_dir()],
            env=commands.preview_env,
            timeout=timeout,
            run_as=run_as,
            config=_config(context).sandbox,
        )
    except SandboxUnavailable as exc:
        raise _refuse("profile", exc.message, sandbox=exc.message) from None
    if run.exit_code is None:
        late = f"the preview did not finish within {timeout:g} s"
        raise _refuse("profile", late, output=run.output)
    return run


def _apply_directory(spec: ShellTask, context: ApplyContext) -> Path:
    try:
        return _working_directory(spec, context.plan_context)
    except InvalidInput as exc:
        raise ApplyFailed(exc.message) from None


@dataclass(frozen=True)
class _ApplyTask:
    """A task resolved at apply: what it runs, where, as whom, and the preview header
    those make (which must be the approved preview's)."""

    commands: Commands
    cwd: Path
    run_as: RunAs
    header: str

    @property
    def header_digest(self) -> str:
        return _digest([self.header])


async def _resolved_for_apply(payload: Payload, context: ApplyContext) -> _ApplyTask:
    spec = _spec(payload)
    cwd = _apply_directory(spec, context)
    try:
        commands = await _resolve(spec, cwd, context.plan_context)
        run_as = resolve_run_as(_config(context.plan_context).user)
    except InvalidInput as exc:
        raise ApplyFailed(exc.message) from None
    except RunAsProblem as exc:
        raise ApplyFailed(str(exc)) from None
    header = "\n".join(_header(commands, cwd, run_as)) + "\n"
    return _ApplyTask(commands, cwd, run_as, header)


async def _approved(payload: Payload, preview: str, context: ApplyContext) -> _ApplyTask:
    """The task as it would run now, if that is what the approved ``preview`` shows. The
    worker re-plans right before; this closes the gap after it (a profile saved between
    the re-plan and the run), so what runs is exactly what was approved."""
    task = await _resolved_for_apply(payload, context)
    if not preview.startswith(task.header):
        raise ApplyFailed(
            "what the task would run no longer matches its approved preview (its shell "
            "profile or the shell user changed since); submit it again"
        )
    return task


async def _run_fenced(argv: Sequence[str], task: _ApplyTask, context: ApplyContext) -> Run:
    """Check and advance the working directory's fence record, then run ``argv`` as the
    shell user."""
    cwd, run_as = task.cwd, task.run_as
    root = context.plan_context.root_of(cwd)
    assert root is not None  # confined
    record = fencing.record_path(root / STATE_DIR_NAME / "fences", f"dir:{cwd}")
    # The command runs outside the record's lock: it may take minutes, and holding a
    # file lock that long would stall every other writer's check.
    await fencing.advance([record], context.fence, target=str(cwd))
    ours = {"ADE_TASK_ID": context.task_id, "ADE_FENCE": str(context.fence)}
    env = command_environment(dict(task.commands.apply_env) | ours, home=run_as.home)
    try:
        return await run_command(
            argv, cwd=cwd, timeout=task.commands.timeout_seconds, env=env, run_as=run_as
        )
    except OSError as exc:
        raise ApplyFailed(f"cannot run {argv[0]!r} as {run_as}: {exc}") from None


def _digest(value: Any) -> str:
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()
