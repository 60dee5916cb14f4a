"""The executor protocol and the values it exchanges.

An executor owns one task type. The approval side needs only ``validate`` (pure: is this
payload well formed?) and ``plan`` (read the world, write nothing: what exactly would
change?). The execution side additionally needs ``snapshot``, ``apply`` and ``rollback``;
they form a separate protocol, ``ApplyingExecutor``, so an executor that can only preview
is a complete, honest object rather than one with methods that raise.

The plan's ``preview`` is the *stash* of architecture §3: the canonical, content-addressed
change set that reviewers approve by its ``digest``. ``precondition_fingerprint`` names
the state of the world the preview was computed against; the worker plans again before
applying and compares both, so a change is only ever applied to the world it was
reviewed against.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, Field, ValidationError

from community_ade.errors import InvalidInput
from community_ade.execution.executors import urls

if TYPE_CHECKING:
    from community_ade.execution.executors.shell_profile import ShellConfig, ShellProfileSource
    from community_ade.secrets.references import SecretSource
    from community_ade.settings import Settings

PreviewFormat = Literal["diff", "text", "json"]
"""How a dashboard should render a preview: a unified diff, plain text, or a JSON document."""

RollbackOutcome = Literal["rolled_back", "rollback_failed", "nothing_to_roll_back"]
"""The outcomes architecture §3 records for a failed apply."""

Applier = Literal["worker", "agent"]
"""Who carries out an approved task: an ``ade worker`` (the executor is an
``ApplyingExecutor``), or the agent that proposed it (the executor says ``applied_by =
"agent"``; the agent claims the task, applies, and reports the outcome)."""

Payload = Mapping[str, Any]
"""A task's payload as submitted (decoded JSON); each executor parses its own shape."""

AbsolutePath = Annotated[str, Field(min_length=1, pattern="^/")]
"""A payload model's field naming a path the plan confines to the workspace roots."""

_MAX_ERRORS_IN_MESSAGE = 5
T = TypeVar("T")


def digest_of(preview: str) -> str:
    """sha256 (hex) of the UTF-8 encoding of a canonical preview: the preview's identity.

    Reviews name the digest they saw, so the same change must always hash the same:
    executors canonicalise the preview (order, line endings) before it gets here.
    """
    return hashlib.sha256(preview.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; ``path`` locates it, e.g. ``changes[3].path``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class ValidationReport:
    """Every problem found in a payload, not just the first, so a client can fix them in
    one round trip (the API answers 422 with this report)."""

    errors: tuple[FieldError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    @classmethod
    def of(cls, errors: Iterable[FieldError]) -> ValidationReport:
        return cls(tuple(errors))

    def raise_if_invalid(self, task_type: str) -> None:
        """Turn a failed report into the domain error the API maps to 422."""
        if self.errors:
            raise invalid(task_type, self.errors)


def field_path(location: Iterable[str | int]) -> str:
    """A location in a payload (keys and list indexes) as executors write it:
    ``("changes", 3, "path")`` → ``changes[3].path``."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def field_errors(error: ValidationError) -> list[FieldError]:
    """A Pydantic validation error (a ``payload_model`` parsing a payload) as field
    errors."""
    return [FieldError(field_path(detail["loc"]), detail["msg"]) for detail in error.errors()]


def model_errors(model: type[BaseModel], payload: object) -> list[FieldError]:
    """What ``model`` (an executor's ``payload_model``) refuses in ``payload``. Executors
    whose own checks say more than a schema run it after them, when they found nothing:
    a payload ``validate`` accepts then always fits the schema the executor publishes."""
    try:
        model.model_validate(payload, strict=True)
    except ValidationError as exc:
        return field_errors(exc)
    return []


def invalid(task_type: str, errors: Iterable[FieldError], **details: Any) -> InvalidInput:
    """An ``InvalidInput`` whose message lists the first few problems and whose details
    carry all of them as ``errors`` (a list of ``{"path", "message"}``)."""
    found = tuple(errors)
    shown = "; ".join(str(e) for e in found[:_MAX_ERRORS_IN_MESSAGE])
    more = len(found) - _MAX_ERRORS_IN_MESSAGE
    suffix = f" (and {more} more)" if more > 0 else ""
    return InvalidInput(
        f"invalid {task_type} task: {shown}{suffix}",
        task_type=task_type,
        errors=[{"path": e.path, "message": e.message} for e in found],
        **details,
    )


STATE_DIR_NAME = ".ade"
"""The directory under each workspace root where Community ADE keeps its own state (the
fence records of the targets below that root); no task may name a path inside it."""


@dataclass(frozen=True)
class PlanContext:
    """What a plan may touch, derived from settings (``from_settings``).

    ``allowed_roots`` are the workspace roots (``ADE_WORKSPACE_ROOTS``): every path a task
    names must resolve, symlinks followed, inside one of them. Without any root nothing
    can be planned, which is the safe default for a misconfigured deployment.
    ``http_allowlist`` holds the URL prefixes ``http.request`` may call (``urls``);
    ``fence_dir`` is where targets without a directory of their own (an HTTP endpoint)
    keep their fence records; without it such targets cannot be applied. ``shell`` is
    the shell executor's configuration (profiles, sandbox, user; None: its defaults).
    """

    allowed_roots: tuple[Path, ...]
    command_timeout_seconds: float = 30.0
    git_executable: str = "git"
    http_allowlist: tuple[str, ...] = ()
    fence_dir: Path | None = None
    shell: ShellConfig | None = None

    def __post_init__(self) -> None:
        for root in self.allowed_roots:
            if not root.is_absolute():
                raise ValueError(f"workspace root {root} must be an absolute path")
        if not self.command_timeout_seconds > 0:
            raise ValueError("command_timeout_seconds must be positive")
        if self.fence_dir is not None and not self.fence_dir.is_absolute():
            raise ValueError(f"fence directory {self.fence_dir} must be an absolute path")
        urls.parse_allowlist(self.http_allowlist)  # a bad entry fails at startup, loudly

    @classmethod
    def from_settings(
        cls, settings: Settings, *, shell_profiles: ShellProfileSource | None = None
    ) -> PlanContext:
        """The one place settings become a context (API, worker, CLI; through
        ``Runtime.plan_context``, which passes the stored shell profiles)."""
        from community_ade.execution.executors.sandbox import SandboxConfig, SandboxLimits
        from community_ade.execution.executors.shell_profile import (
            ShellConfig,
            StaticShellProfiles,
        )

        mib = 1024 * 1024
        sandbox = SandboxConfig(
            bwrap=settings.sandbox_bwrap,
            limits=SandboxLimits(
                cpu_seconds=settings.sandbox_cpu_seconds,
                memory_bytes=settings.sandbox_memory_mb * mib,
                file_size_bytes=settings.sandbox_file_size_mb * mib,
                processes=settings.sandbox_max_processes,
                scratch_bytes=settings.sandbox_scratch_mb * mib,
            ),
            hidden=(settings.data_dir.absolute(),),
        )
        return cls(
            allowed_roots=tuple(p.absolute() for p in settings.allowed_workspace_roots),
            http_allowlist=tuple(settings.http_allowlist),
            fence_dir=settings.data_dir.absolute() / "fences",
            shell=ShellConfig(
                profiles=shell_profiles or StaticShellProfiles(),
                sandbox=sandbox,
                user=settings.shell_user,
                free_form=settings.shell_free_form,
            ),
        )

    @property
    def http_targets(self) -> tuple[urls.Target, ...]:
        return urls.parse_allowlist(self.http_allowlist)

    def root_of(self, real: Path) -> Path | None:
        """The resolved allowed root ``real`` (a resolved path) lies in, or None."""
        for root in self.allowed_roots:
            allowed = root.resolve()
            if real == allowed or real.is_relative_to(allowed):
                return allowed
        return None

    def is_reserved(self, real: Path) -> bool:
        """Whether ``real`` (resolved) is the state directory of its root or inside it."""
        root = self.root_of(real)
        return root is not None and real.is_relative_to(root / STATE_DIR_NAME)

    def confine(self, path: str, *, task_type: str, field_path: str) -> Path:
        """The real path of an existing ``path`` if it lies inside an allowed root
        (or is one); else ``InvalidInput``. Roots are resolved too, so a root reached
        through a symlink (``/tmp`` on some systems) still matches."""

        def refuse(message: str) -> InvalidInput:
            return invalid(task_type, [FieldError(field_path, message)])

        if not self.allowed_roots:
            raise refuse("no workspace roots are configured (ADE_WORKSPACE_ROOTS)")
        try:
            real = Path(path).resolve(strict=True)
        except FileNotFoundError:
            raise refuse(f"{path} does not exist") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise refuse(f"{path} cannot be resolved: {exc}") from None
        if self.root_of(real) is None:
            roots = ", ".join(str(r) for r in self.allowed_roots)
            raise refuse(f"{path} is outside the workspace roots ({roots})")
        if self.is_reserved(real):
            raise refuse(f"{path} is inside {STATE_DIR_NAME}/, Community ADE's own state")
        return real


@dataclass(frozen=True)
class Plan:
    """The preview of one task and what it was computed against.

    ``digest`` is always ``digest_of(preview)``: it is checked on construction, so a plan
    rebuilt from storage with a tampered preview cannot be mistaken for the approved one.
    ``lines_changed`` feeds the risk magnitude (architecture §4); ``summary`` is one line for
    lists and notifications and is not part of the digest.
    """

    preview: str
    format: PreviewFormat
    digest: str
    precondition_fingerprint: str
    lines_changed: int
    summary: str

    def __post_init__(self) -> None:
        if self.digest != digest_of(self.preview):
            raise ValueError("plan digest does not match its preview")
        if self.lines_changed < 0:
            raise ValueError("lines_changed must not be negative")

    @classmethod
    def build(
        cls,
        *,
        preview: str,
        format: PreviewFormat,
        precondition_fingerprint: str,
        lines_changed: int,
        summary: str,
    ) -> Plan:
        """A plan whose digest is computed from its preview."""
        return cls(
            preview=preview,
            format=format,
            digest=digest_of(preview),
            precondition_fingerprint=precondition_fingerprint,
            lines_changed=lines_changed,
            summary=summary,
        )


@runtime_checkable
class Executor(Protocol):
    """The part of an executor the approval lifecycle uses at submit.

    ``validate`` is pure (no filesystem, no network) so it can run on every edit of a
    draft. ``plan`` validates again, then reads the world to compute the preview, and
    must have no side effects: it runs at submit, before anyone approved anything, and
    again at apply to detect that the world moved. A payload that cannot be planned
    (bad path, patch that does not apply) raises ``InvalidInput``.
    """

    @property
    def task_type(self) -> str: ...

    def validate(self, payload: Payload) -> ValidationReport: ...

    async def plan(self, payload: Payload, context: PlanContext) -> Plan: ...


def applier_of(executor: Executor) -> Applier:
    """Who applies the tasks of ``executor``: ``applied_by`` where it says so, else a
    worker."""
    return "agent" if getattr(executor, "applied_by", "worker") == "agent" else "worker"


def payload_schema_of(executor: Executor) -> dict[str, Any] | None:
    """The JSON Schema of the executor's payload, from its ``payload_model`` (a Pydantic
    model), self-contained where the model is not recursive; None for an executor that
    publishes none."""
    model = getattr(executor, "payload_model", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return self_contained(model.model_json_schema())
    return None


_DEFS = "#/$defs/"


def self_contained(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every ``#/$defs/...`` reference replaced by the definition, so it
    still means the same nested in another document (an MCP tool's input under
    ``payload``, a form). A recursive schema cannot be unfolded and is returned as is."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def unfold(node: Any, within: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [unfold(item, within) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS):
            name = ref.removeprefix(_DEFS)
            if name in within:
                raise RecursionError(name)
            siblings = {k: unfold(v, within) for k, v in node.items() if k != "$ref"}
            return unfold(defs[name], within | {name}) | siblings
        # OpenAPI's discriminator names definitions by reference; "oneOf" says it all.
        skip = {"$defs"} | ({"discriminator"} if "oneOf" in node else set())
        return {k: unfold(v, within) for k, v in node.items() if k not in skip}

    try:
        unfolded: dict[str, Any] = unfold(schema, frozenset())
    except RecursionError:
        return schema
    return unfolded


def description_of(executor: Executor) -> str:
    """One paragraph on what the executor does: its ``description``, else the first
    paragraph of its class's (or module's) docstring."""
    given = getattr(executor, "description", None)
    if isinstance(given, str) and given.strip():
        return given.strip()
    cls = type(executor)
    doc = cls.__doc__ or (
        sys.modules[cls.__module__].__doc__ if cls.__module__ in sys.modules else ""
    )
    return " ".join((doc or "").strip().split("\n\n")[0].split())


@dataclass(frozen=True)
class ApplyContext:
    """What an apply runs under: the plan's confinement, the task, and the fencing token
    of the lock grant (architecture §5), which the executor passes to the target so that a
    holder whose grant was lost cannot write after a newer one did. ``secrets`` reveals
    the values of the secrets a payload refers to (``secrets.references``); None: the
    apply has none to give, and a task that refers to one fails."""

    plan_context: PlanContext
    task_id: str
    fence: int
    secrets: SecretSource | None = None


@dataclass(frozen=True)
class Snapshot:
    """What an apply is about to overwrite, taken before it starts.

    ``data`` must be JSON-serialisable: the worker stores the snapshot before applying,
    so a rollback can still run after the worker that applied has died.
    """

    task_type: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def data_of(self, task_type: str) -> Mapping[str, Any]:
        """``data``, after checking this is a snapshot of ``task_type`` (``ApplyFailed``)."""
        if self.task_type != task_type:
            raise ApplyFailed(f"a {self.task_type} snapshot is not a {task_type} snapshot")
        return self.data


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did, for the task's record (e.g. the new commit)."""

    summary: str
    details: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class ApplyingExecutor(Executor, Protocol):
    """An executor that can also carry out what it planned (the execution side).

    The worker re-plans and compares digest and fingerprint, then calls ``snapshot``,
    persists it, calls ``apply`` with the approved ``plan`` (the stash, not a
    recomputation), and on failure ``rollback`` with the stored snapshot.
    """

    async def snapshot(self, payload: Payload, plan: Plan, context: ApplyContext) -> Snapshot: ...

    async def apply(
        self, payload: Payload, plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult: ...

    async def rollback(
        self, payload: Payload, snapshot: Snapshot, context: ApplyContext
    ) -> RollbackOutcome: ...


@runtime_checkable
class BuiltUponChecking(Protocol):
    """An applying executor that can tell, for an interrupted attempt, whether its change
    is in place *and later changes were made on top of it*. A rollback would then have
    to undo those too, so the worker settles the task as applied (it was, once) instead.
    An executor without this method is always rolled back."""

    async def built_upon(
        self, payload: Payload, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult | None:
        """The result of the attempt made from ``snapshot``, when its change is in place
        and built upon; None otherwise (roll it back)."""
        ...


class ApplyFailed(Exception):
    """An apply (or snapshot) did not succeed. ``transient`` failures (a network blip, a
    busy target) are retried with backoff; the others fail the task at once. ``details``
    (e.g. ``exit_code``, ``output``) go into the task's result for the reviewer to read."""

    def __init__(self, message: str, *, transient: bool = False, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.details = details


def parsed_for_apply(task_type: str, parsed: tuple[T | None, Iterable[FieldError]]) -> T:
    """A payload parsed again at apply time. It was valid at submit, so a failure here
    means the stored task is damaged: a permanent ``ApplyFailed``."""
    spec, errors = parsed
    if spec is None:
        raise ApplyFailed(invalid(task_type, errors).message)
    return spec
