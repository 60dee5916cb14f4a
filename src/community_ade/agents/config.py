"""An agent's configuration (pure): its shape, its validation and the diff of two versions.

No database, no Redis: the service hands in what validation needs to know about the
world (the catalogue, whether the name is taken) and stores what comes out.

Validation reports every problem at once (``ValidationReport``, as executors do), each
naming its field (``parameters.temperature``) and the allowed range, so a form can mark
all of them in one round trip.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from community_ade.auth import names
from community_ade.errors import InvalidInput
from community_ade.execution.executors.base import FieldError, ValidationReport

NAME_LENGTH = (3, 100)
DESCRIPTION_MAX = 2_000
TAG_LENGTH = (1, 40)
TAGS_MAX = 20
SYSTEM_PROMPT_MAX = 50_000
TOOLS_MAX = 100
TASK_TYPES_MAX = 50
TASK_TYPE_LENGTH = (1, 100)
TEMPERATURE = (0.0, 2.0)
TOP_P = (0.0, 1.0)
CAPACITY = (1, 100)
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 1.0
DEFAULT_MAX_TOKENS = 4_096


@dataclass(frozen=True)
class Parameters:
    """Sampling parameters. ``max_tokens`` and ``context_window`` are bounded by the
    model's context window, which only the catalogue knows."""

    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    max_tokens: int = DEFAULT_MAX_TOKENS
    context_window: int | None = None  # None: the model's whole context window

    def document(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "context_window": self.context_window,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Parameters:
        """Missing or null values take their defaults (a null context window: the model's)."""

        def given(key: str, default: Any) -> Any:
            value = doc.get(key)
            return default if value is None else value

        return cls(
            temperature=given("temperature", DEFAULT_TEMPERATURE),
            top_p=given("top_p", DEFAULT_TOP_P),
            max_tokens=given("max_tokens", DEFAULT_MAX_TOKENS),
            context_window=doc.get("context_window"),
        )


@dataclass(frozen=True)
class AgentConfig:
    """Everything a version of an agent holds. Lists keep the order given."""

    name: str
    model: str
    description: str = ""
    tags: tuple[str, ...] = ()
    system_prompt: str = ""
    tools: tuple[str, ...] = ()
    parameters: Parameters = field(default_factory=Parameters)
    capacity: int = 4
    allowed_task_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.name, str):  # stored and compared NFKC-normalised
            object.__setattr__(self, "name", names.normal(self.name))

    def document(self) -> dict[str, Any]:
        """The JSON form stored with each version (and compared by ``diff``)."""
        return {
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "model": self.model,
            "system_prompt": self.system_prompt,
            "tools": list(self.tools),
            "parameters": self.parameters.document(),
            "capacity": self.capacity,
            "allowed_task_types": list(self.allowed_task_types),
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> AgentConfig:
        return cls(
            name=doc["name"],
            model=doc.get("model", ""),
            description=doc.get("description", ""),
            tags=tuple(doc.get("tags", ())),
            system_prompt=doc.get("system_prompt", ""),
            tools=tuple(doc.get("tools", ())),
            parameters=Parameters.from_document(doc.get("parameters") or {}),
            capacity=doc.get("capacity", 4),
            allowed_task_types=tuple(doc.get("allowed_task_types", ())),
        )


@dataclass(frozen=True)
class Catalogue:
    """What validation needs from the catalogue: model id → context window, tool ids."""

    context_windows: Mapping[str, int]
    tools: frozenset[str]


def _between(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high


def _check_text_list(
    path: str, values: Sequence[str], limit: int, length: tuple[int, int]
) -> Iterator[FieldError]:
    low, high = length
    if len(values) > limit:
        yield FieldError(path, f"at most {limit} entries, got {len(values)}")
    for i, value in enumerate(values):
        if not low <= len(value.strip()) <= high or len(value) > high:
            yield FieldError(f"{path}[{i}]", f"must be {low} to {high} characters")
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        yield FieldError(path, f"duplicates: {', '.join(duplicates)}")


def _parameter_errors(params: Parameters, model_window: int | None) -> Iterator[FieldError]:
    low, high = TEMPERATURE
    if not _between(params.temperature, low, high):
        yield FieldError(
            "parameters.temperature",
            f"must be between {low:g} and {high:g}, got {params.temperature}",
        )
    low, high = TOP_P
    if not _between(params.top_p, low, high):
        yield FieldError(
            "parameters.top_p", f"must be between {low:g} and {high:g}, got {params.top_p}"
        )
    window = params.context_window
    if window is not None and not 1 <= window <= (model_window or window):
        limit = "the model's context window" if model_window is None else str(model_window)
        yield FieldError(
            "parameters.context_window", f"must be between 1 and {limit}, got {window}"
        )
        window = None
    ceiling = window or model_window
    if not 1 <= params.max_tokens <= (ceiling or params.max_tokens):
        limit = "the context window" if ceiling is None else str(ceiling)
        yield FieldError(
            "parameters.max_tokens", f"must be between 1 and {limit}, got {params.max_tokens}"
        )


class NameTaken(StrEnum):
    """Who already has the name a configuration asks for."""

    LIVE = "live"
    # A deleted agent keeps its name, so its history and audit events stay unambiguous.
    DELETED = "deleted"


def validate(
    config: AgentConfig,
    catalogue: Catalogue,
    *,
    name_taken: NameTaken | None,
    lookalike: str | None = None,
) -> ValidationReport:
    """Every problem of ``config``, each naming its field and the allowed range;
    ``lookalike`` is another agent's name this one could be mistaken for (``names``)."""
    errors: list[FieldError] = []
    low, high = NAME_LENGTH
    name = config.name
    if not low <= len(name) <= high:
        errors.append(FieldError("name", f"must be {low} to {high} characters, got {len(name)}"))
    elif name != name.strip() or not name.isprintable():
        errors.append(FieldError("name", "printable characters, no leading or trailing space"))
    elif name_taken is NameTaken.LIVE:
        errors.append(FieldError("name", f"an agent named {name!r} already exists"))
    elif name_taken is NameTaken.DELETED:
        message = f"an agent named {name!r} was deleted, and names are not reused"
        errors.append(FieldError("name", message + " (its history keeps it): choose another"))
    elif lookalike is not None:
        message = f"looks like the existing agent {lookalike!r} (confusable characters, "
        errors.append(FieldError("name", message + "Unicode TS #39): choose another"))
    if len(config.description) > DESCRIPTION_MAX:
        errors.append(FieldError("description", f"at most {DESCRIPTION_MAX} characters"))
    errors.extend(_check_text_list("tags", config.tags, TAGS_MAX, TAG_LENGTH))
    model_window = catalogue.context_windows.get(config.model)
    if model_window is None:
        known = ", ".join(sorted(catalogue.context_windows)) or "none"
        errors.append(
            FieldError("model", f"unknown model {config.model!r}; the catalogue has: {known}")
        )
    if len(config.system_prompt) > SYSTEM_PROMPT_MAX:
        errors.append(FieldError("system_prompt", f"at most {SYSTEM_PROMPT_MAX} characters"))
    errors.extend(_check_text_list("tools", config.tools, TOOLS_MAX, (1, 100)))
    unknown = [t for t in config.tools if t not in catalogue.tools]
    if unknown:
        errors.append(FieldError("tools", f"not in the catalogue: {', '.join(unknown)}"))
    errors.extend(_parameter_errors(config.parameters, model_window))
    low_cap, high_cap = CAPACITY
    if not low_cap <= config.capacity <= high_cap:
        errors.append(
            FieldError(
                "capacity", f"must be between {low_cap} and {high_cap}, got {config.capacity}"
            )
        )
    errors.extend(
        _check_text_list(
            "allowed_task_types", config.allowed_task_types, TASK_TYPES_MAX, TASK_TYPE_LENGTH
        )
    )
    return ValidationReport.of(errors)


def refuse(report: ValidationReport) -> InvalidInput:
    """The domain error for a failed report: its message names the first few problems,
    its ``errors`` detail carries all of them as ``{"path", "message"}``."""
    shown = "; ".join(str(e) for e in report.errors[:5])
    return InvalidInput(
        f"invalid agent configuration: {shown}",
        errors=[{"path": e.path, "message": e.message} for e in report.errors],
    )


# -- versions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between two versions. When both sides are lists (or
    missing), ``added`` and ``removed`` say which entries; ``before``/``after`` are the
    whole values either way."""

    field: str
    before: Any
    after: Any
    added: tuple[Any, ...] | None = None
    removed: tuple[Any, ...] | None = None

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"field": self.field, "from": self.before, "to": self.after}
        if self.added is not None and self.removed is not None:
            doc["added"] = list(self.added)
            doc["removed"] = list(self.removed)
        return doc


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _list_or_none(value: Any) -> bool:
    return value is None or isinstance(value, list)


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[FieldChange]:
    """Field by field (nested objects by dotted path, in sorted order), what changed from
    ``before`` to ``after``; a field missing on one side counts as None."""
    old, new = _flatten(before), _flatten(after)
    changes: list[FieldChange] = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if _list_or_none(a) and _list_or_none(b):
            a_list, b_list = a or [], b or []
            added = tuple(x for x in b_list if x not in a_list)
            removed = tuple(x for x in a_list if x not in b_list)
            changes.append(FieldChange(key, a, b, added, removed))
        else:
            changes.append(FieldChange(key, a, b))
    return changes
