"""Shell profiles: the commands an admin allows, as argv templates with typed parameters
that a submitter fills in (docs/executors.md#shell).

A template is a list of arguments; an argument that is exactly ``{name}`` is replaced by
the value of parameter ``name``, whole: never spliced into a longer argument, never
split, never seen by a shell, so a value cannot add arguments or change what the others
mean. The program (the first argument) is always literal. A value that starts with ``-``
(which a program would read as an option) is refused unless its parameter says
otherwise (``allow_leading_dash``, or an admin's own enum choice or negative range).

Pure: Pydantic models and functions, no IO. The stored form is the model's JSON.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from community_ade.execution.executors.base import FieldError
from community_ade.execution.executors.sandbox import SandboxConfig

PROFILE_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
PARAMETER_NAME = r"^[a-z_][a-z0-9_]{0,63}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MAX_ARGS = 1000
MAX_COMMAND_BYTES = 64 * 1024
MAX_PARAMETERS = 32
MAX_VALUE_LENGTH = 4096
MAX_TIMEOUT_SECONDS = 3600.0
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]{0,63})\}")
_DECEPTIVE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_SAFE_INT = 2**53


def deceptive(text: str) -> bool:
    """Whether ``text`` holds control, format or separator characters (NUL included),
    which could make what a reviewer reads differ from what runs."""
    return any(unicodedata.category(c) in _DECEPTIVE for c in text)


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


def _text_problem(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not value:
        return "must not be empty"
    if len(value) > limit:
        return f"must be at most {limit} characters"
    if deceptive(value):
        return "must not contain control, format or separator characters"
    return None


class _Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(default="", max_length=500)

    @abstractmethod
    def problem(self, value: object) -> str | None:
        """Why ``value`` does not fit this parameter, or None."""

    def argument(self, value: Any) -> str:
        return str(value)

    @model_validator(mode="after")
    def _default_fits(self) -> _Parameter:
        default = getattr(self, "default", None)
        if default is not None and (problem := self.problem(default)) is not None:
            raise ValueError(f"default {default!r} {problem}")
        return self


class StringParameter(_Parameter):
    """Text, optionally matching ``pattern`` (the whole value, Python ``re`` syntax)."""

    type: Literal["string"]
    pattern: str | None = Field(default=None, max_length=1000)
    max_length: int = Field(default=256, ge=1, le=MAX_VALUE_LENGTH)
    allow_leading_dash: bool = False
    default: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    def problem(self, value: object) -> str | None:
        if (problem := _text_problem(value, self.max_length)) is not None:
            return problem
        assert isinstance(value, str)
        if value.startswith("-") and not self.allow_leading_dash:
            return "must not start with '-' (it would be read as an option)"
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            return f"must match {self.pattern}"
        return None


class IntegerParameter(_Parameter):
    """A whole number in ``[minimum, maximum]``."""

    type: Literal["integer"]
    minimum: int = Field(default=0, ge=-_SAFE_INT, le=_SAFE_INT)
    maximum: int = Field(default=_SAFE_INT, ge=-_SAFE_INT, le=_SAFE_INT)
    default: int | None = None

    @model_validator(mode="after")
    def _range(self) -> IntegerParameter:
        if self.minimum > self.maximum:
            raise ValueError("minimum must not exceed maximum")
        return self

    def problem(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a whole number"
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return "must be a whole number"
        if not self.minimum <= value <= self.maximum:
            return f"must be between {self.minimum} and {self.maximum}"
        return None

    def argument(self, value: Any) -> str:
        return str(int(value))


class EnumParameter(_Parameter):
    """One of the admin's ``choices`` (which may start with ``-``: the admin wrote them)."""

    type: Literal["enum"]
    choices: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        min_length=1, max_length=100
    )
    default: str | None = None

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[str]) -> list[str]:
        if len(set(choices)) != len(choices):
            raise ValueError("choices must be distinct")
        if any(deceptive(c) for c in choices):
            raise ValueError("choices must not contain control or format characters")
        return choices

    def problem(self, value: object) -> str | None:
        if value not in self.choices:
            return f"must be one of: {', '.join(self.choices)}"
        return None


class PathParameter(_Parameter):
    """A relative path that must stay inside the working directory (checked again at
    plan with symlinks resolved); passed as written."""

    type: Literal["path"]
    default: str | None = None

    def problem(self, value: object) -> str | None:
        if (problem := _text_problem(value, MAX_VALUE_LENGTH)) is not None:
            return problem
        assert isinstance(value, str)
        if os.path.isabs(value):
            return "must be relative to the working directory"
        if value.startswith("-"):
            return "must not start with '-' (write ./-name)"
        if ".." in Path(value).parts:
            return "must not contain '..'"
        return None


Parameter = Annotated[
    StringParameter | IntegerParameter | EnumParameter | PathParameter,
    Field(discriminator="type"),
]
Argv = Annotated[list[str], Field(min_length=1, max_length=MAX_ARGS)]
ParameterName = Annotated[str, Field(pattern=PARAMETER_NAME)]
EnvName = Annotated[str, Field(pattern=ENV_NAME)]
EnvValue = Annotated[str, Field(max_length=MAX_VALUE_LENGTH)]
"""Plain values only, visible to everyone who can read the profile. Secret references
will be a second form of value, resolved in ``apply_environment`` and never given to a
preview (``preview_environment``)."""


class ShellProfile(BaseModel):
    """What one named profile allows (its name is its key, not part of the document)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(default="", max_length=2000)
    command: Argv
    preview: Argv | None = None
    rollback: Argv | None = None
    parameters: dict[ParameterName, Parameter] = Field(
        default_factory=dict, max_length=MAX_PARAMETERS
    )
    cwd_roots: list[str] = Field(default_factory=list, max_length=32)
    max_timeout_seconds: float = Field(default=300.0, gt=0, le=MAX_TIMEOUT_SECONDS)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=64)

    @field_validator("command", "preview", "rollback")
    @classmethod
    def _argv(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None:
            if (problem := argv_problem(argv)) is not None:
                raise ValueError(problem)
            for arg in argv:
                named = _PLACEHOLDER.search(arg)
                if named is not None and _PLACEHOLDER.fullmatch(arg) is None:
                    raise ValueError(
                        f"{arg!r}: a placeholder must be a whole argument ({named.group(0)})"
                    )
            if _PLACEHOLDER.fullmatch(argv[0]):
                raise ValueError("the program (the first argument) must not be a placeholder")
        return argv

    @field_validator("cwd_roots")
    @classmethod
    def _absolute(cls, roots: list[str]) -> list[str]:
        for root in roots:
            if not os.path.isabs(root) or "\x00" in root or deceptive(root):
                raise ValueError(f"{root!r} must be an absolute path")
        return roots

    @field_validator("env")
    @classmethod
    def _not_ours(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if name.upper().startswith("ADE_"):
                raise ValueError(f"{name}: ADE_* variables are set by Community ADE")
            if "\x00" in value:
                raise ValueError(f"{name}: must not contain NUL")
        return env

    @model_validator(mode="after")
    def _placeholders_declared(self) -> ShellProfile:
        used = {
            match.group(1)
            for template in self.templates()
            for arg in template
            if (match := _PLACEHOLDER.fullmatch(arg))
        }
        if undeclared := sorted(used - set(self.parameters)):
            raise ValueError(f"undeclared parameters: {', '.join(undeclared)}")
        if unused := sorted(set(self.parameters) - used):
            raise ValueError(f"parameters used by no template: {', '.join(unused)}")
        return self

    def templates(self) -> list[list[str]]:
        return [t for t in (self.command, self.preview, self.rollback) if t is not None]

    def arguments(self, params: object) -> tuple[dict[str, str], list[FieldError]]:
        """The submitter's ``params`` as argument strings, and every problem (each with
        the path ``params.<name>``)."""
        if not isinstance(params, Mapping):
            return {}, [FieldError("params", "must be an object")]
        errors = [
            FieldError(f"params.{name}", f"unknown parameter; the profile has: {self._names()}")
            for name in params
            if name not in self.parameters
        ]
        values: dict[str, str] = {}
        for name, spec in self.parameters.items():
            value = params.get(name, spec.default)
            if value is None:
                errors.append(FieldError(f"params.{name}", "is required"))
            elif (problem := spec.problem(value)) is not None:
                errors.append(FieldError(f"params.{name}", problem))
            else:
                values[name] = spec.argument(value)
        return values, errors

    def path_parameters(self) -> list[str]:
        return [n for n, spec in self.parameters.items() if isinstance(spec, PathParameter)]

    def _names(self) -> str:
        return ", ".join(sorted(self.parameters)) or "none"


def render(template: Sequence[str], values: Mapping[str, str]) -> tuple[str, ...]:
    """``template`` with each whole-argument placeholder replaced by its value."""
    return tuple(
        values[match.group(1)] if (match := _PLACEHOLDER.fullmatch(arg)) else arg
        for arg in template
    )


def preview_environment(profile: ShellProfile) -> dict[str, str]:
    """The profile's variables a sandboxed preview gets (secrets, once they exist, never)."""
    return dict(profile.env)


def apply_environment(profile: ShellProfile) -> dict[str, str]:
    """The profile's variables an approved apply or rollback gets."""
    return dict(profile.env)


class ShellProfileSource(Protocol):
    """Where profiles come from at plan and apply: the database (``StoredShellProfiles``
    in ``execution.shell_profiles``), or a fixed mapping."""

    async def get(self, name: str) -> ShellProfile | None: ...


@dataclass(frozen=True)
class StaticShellProfiles:
    """A fixed set of profiles (none by default: nothing but free-form commands, if
    those are allowed, can run)."""

    profiles: Mapping[str, ShellProfile] = field(default_factory=dict)

    async def get(self, name: str) -> ShellProfile | None:
        return self.profiles.get(name)


@dataclass(frozen=True)
class ShellConfig:
    """Everything the shell executor needs beyond the plan context's roots:
    ``profiles``, the ``sandbox``, ``user`` (``ADE_SHELL_USER``; None: the safe default,
    see ``commands.resolve_run_as``) and ``free_form`` (``ADE_SHELL_FREE_FORM``: whether
    tasks may carry their own ``command`` instead of naming a profile)."""

    profiles: ShellProfileSource = field(default_factory=StaticShellProfiles)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    user: str | None = None
    free_form: bool = False
