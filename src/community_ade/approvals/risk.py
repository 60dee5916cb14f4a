"""Pure risk model: resource references, the four risk inputs, the score and the quorum.

``risk = criticality×0.4 + magnitude×0.3 + blast_radius×0.2 + failure_rate×0.1``, each input
0–100 (the brief's formula and weights, deliberately not configurable). The default inputs
follow architecture §4; their tables live in a ``RiskTable`` so a deployment can tune them
without touching the formula.

Rounding: each input is rounded to one decimal (half up) when a ``RiskInputs`` is built, and
the total is computed from the rounded inputs in exact decimal arithmetic and rounded to one
decimal (half up). So the total a reviewer sees can be recomputed by hand from the inputs
shown, and the quorum boundaries (50, 75) apply to the total as shown: 74.96 shows as 75.0
and needs 3 approvals.

No IO here: callers pass everything (the preview's size, the recent apply outcomes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

from community_ade.errors import InvalidInput

WEIGHTS = (Decimal("0.4"), Decimal("0.3"), Decimal("0.2"), Decimal("0.1"))
"""Weights of criticality, magnitude, blast radius and failure rate (from the brief)."""


class ResourceType(StrEnum):
    DATABASE = "database"
    SERVICE = "service"
    INFRASTRUCTURE = "infrastructure"
    CONFIGURATION = "configuration"
    SECRET = "secret"
    NETWORK = "network"
    STORAGE = "storage"


class Scope(StrEnum):
    GLOBAL = "global"
    CLUSTER = "cluster"
    NAMESPACE = "namespace"
    INSTANCE = "instance"


class Action(StrEnum):
    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    EXECUTE = "execute"


class RiskLevel(StrEnum):
    """The dashboard's risk badge; the bands are the quorum bands."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


E = TypeVar("E", bound=StrEnum)


def parse_enum(cls: type[E], value: object, what: str) -> E:
    """``cls(value)`` with a message that lists the allowed values."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and value in cls._value2member_map_:
        return cls(value)
    allowed = ", ".join(m.value for m in cls)
    raise InvalidInput(f"unknown {what} {value!r}: use one of {allowed}")


def parse_resource_types(values: Iterable[ResourceType | str]) -> frozenset[ResourceType]:
    """A set of resource types from enums or their names (policy and delegation scopes)."""
    if isinstance(values, str):
        values = (values,)
    return frozenset(parse_enum(ResourceType, v, "resource type") for v in values)


def check_percent(value: object, what: str) -> float:
    """A finite number in 0–100 (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a number between 0 and 100, got {value!r}")
    if not 0 <= value <= 100:
        raise InvalidInput(f"{what} must be between 0 and 100, got {value}")
    return float(value)


def round1(value: float) -> float:
    """Round to one decimal, half up, on the decimal the user sees (not the binary float)."""
    return float(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class ResourceRef:
    """A resource a task touches (the brief's resource reference).

    Strings are accepted for the enum fields (they come from JSON). Actions are stored
    de-duplicated in the enum's order, so two references that mean the same compare equal.
    """

    type: ResourceType
    id: str
    name: str | None = None
    scope: Scope = Scope.NAMESPACE
    namespace: str | None = None
    actions: tuple[Action, ...] = (Action.READ,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", parse_enum(ResourceType, self.type, "resource type"))
        if not isinstance(self.id, str) or not self.id.strip():
            raise InvalidInput("a resource needs a non-empty id")
        object.__setattr__(self, "scope", parse_enum(Scope, self.scope, "scope"))
        raw: Iterable[object] = (self.actions,) if isinstance(self.actions, str) else self.actions
        chosen = {parse_enum(Action, a, "action") for a in raw}
        if not chosen:
            # An empty list would make "every action is read" vacuously true: refuse it.
            raise InvalidInput(f"resource {self.type}:{self.id} needs at least one action")
        object.__setattr__(self, "actions", tuple(a for a in Action if a in chosen))

    @property
    def key(self) -> tuple[ResourceType, str]:
        """Identity of the resource (the lock key uses the same pair)."""
        return (self.type, self.id)

    @property
    def read_only(self) -> bool:
        return self.actions == (Action.READ,)


def _frozen_table(
    cls: type[E], given: Mapping[E, float] | Mapping[str, float], defaults: Mapping[E, float]
) -> Mapping[E, float]:
    merged = dict(defaults)
    for key, value in given.items():
        parsed = parse_enum(cls, key, cls.__name__)
        merged[parsed] = check_percent(value, f"risk table weight of {parsed}")
    return MappingProxyType(merged)


DEFAULT_CRITICALITY: Mapping[ResourceType, float] = MappingProxyType(
    {
        ResourceType.SECRET: 100.0,
        ResourceType.DATABASE: 90.0,
        ResourceType.INFRASTRUCTURE: 80.0,
        ResourceType.NETWORK: 70.0,
        ResourceType.SERVICE: 60.0,
        ResourceType.CONFIGURATION: 50.0,
        ResourceType.STORAGE: 40.0,
    }
)
DEFAULT_SCOPE_WEIGHTS: Mapping[Scope, float] = MappingProxyType(
    {Scope.GLOBAL: 100.0, Scope.CLUSTER: 75.0, Scope.NAMESPACE: 50.0, Scope.INSTANCE: 25.0}
)


@dataclass(frozen=True)
class RiskTable:
    """The configurable part of the default risk inputs (architecture §4).

    A partial mapping overrides only the entries it names; the rest keep their defaults.
    """

    criticality: Mapping[ResourceType, float] = field(
        default_factory=lambda: DEFAULT_CRITICALITY, hash=False
    )
    read_only_factor: float = 0.3
    scope_weights: Mapping[Scope, float] = field(
        default_factory=lambda: DEFAULT_SCOPE_WEIGHTS, hash=False
    )
    per_extra_resource: float = 10.0
    magnitude_decades: float = 3.0  # 10**3 - 1 = 999 changed lines reach 100
    failure_window: int = 50

    def __post_init__(self) -> None:
        crit = _frozen_table(ResourceType, self.criticality, DEFAULT_CRITICALITY)
        object.__setattr__(self, "criticality", crit)
        weights = _frozen_table(Scope, self.scope_weights, DEFAULT_SCOPE_WEIGHTS)
        object.__setattr__(self, "scope_weights", weights)
        f = self.read_only_factor
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 <= f <= 1:
            raise InvalidInput(f"the read-only factor must be between 0 and 1, got {f!r}")
        check_percent(self.per_extra_resource, "the blast radius per extra resource")
        m = self.magnitude_decades
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 < m < math.inf:
            raise InvalidInput("magnitude_decades must be a positive number")
        w = self.failure_window
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise InvalidInput("the failure-rate window must be a positive number of applies")


DEFAULT_TABLE = RiskTable()


def criticality(resources: Sequence[ResourceRef], table: RiskTable = DEFAULT_TABLE) -> float:
    """The most critical resource type, × ``read_only_factor`` when the task only reads.

    The read-only discount applies only when every action of every resource is ``read``
    (architecture §4): reading a secret while writing storage still counts the secret fully.
    No resources → 0.
    """
    if not resources:
        return 0.0
    top = max(table.criticality[r.type] for r in resources)
    if all(r.read_only for r in resources):
        top *= table.read_only_factor
    return round1(min(100.0, top))


def magnitude(lines_changed: int, table: RiskTable = DEFAULT_TABLE) -> float:
    """``min(100, 100 × log10(1 + lines) / 3)``: 9 lines → 33.3, 99 → 66.7, 999+ → 100."""
    if isinstance(lines_changed, bool) or not isinstance(lines_changed, int) or lines_changed < 0:
        raise InvalidInput(f"lines changed must be a non-negative integer, got {lines_changed!r}")
    return round1(min(100.0, 100.0 * math.log10(1 + lines_changed) / table.magnitude_decades))


def blast_radius(resources: Sequence[ResourceRef], table: RiskTable = DEFAULT_TABLE) -> float:
    """Weight of the widest scope + 10 per further resource, capped at 100.

    Resources are counted once per ``(type, id)``; the widest scope is the one with the
    highest weight. No resources → 0.
    """
    if not resources:
        return 0.0
    distinct = {r.key for r in resources}
    widest = max(table.scope_weights[r.scope] for r in resources)
    return round1(min(100.0, widest + table.per_extra_resource * (len(distinct) - 1)))


def failure_rate(recent_failures: Sequence[bool], table: RiskTable = DEFAULT_TABLE) -> float:
    """Percentage of the last ``failure_window`` applies of the task type that failed.

    ``recent_failures`` holds one boolean per apply, oldest first, ``True`` when it failed.
    With fewer applies than the window the percentage is over those there are; none → 0.
    """
    window = list(recent_failures)[-table.failure_window :]
    if not window:
        return 0.0
    return round1(100.0 * sum(1 for failed in window if failed) / len(window))


@dataclass(frozen=True)
class RiskInputs:
    """The four inputs, each 0–100, stored rounded to one decimal (half up)."""

    criticality: float
    magnitude: float
    blast_radius: float
    failure_rate: float

    def __post_init__(self) -> None:
        for name in ("criticality", "magnitude", "blast_radius", "failure_rate"):
            value = check_percent(getattr(self, name), name.replace("_", " "))
            object.__setattr__(self, name, round1(value))


@dataclass(frozen=True)
class RiskScore:
    """The total with the inputs it came from (the approval view shows both)."""

    inputs: RiskInputs
    total: float = field(init=False)

    def __post_init__(self) -> None:
        i = self.inputs
        values = (i.criticality, i.magnitude, i.blast_radius, i.failure_rate)
        exact = sum(
            (Decimal(repr(v)) * w for v, w in zip(values, WEIGHTS, strict=True)), Decimal(0)
        )
        total = float(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
        object.__setattr__(self, "total", total)

    @property
    def quorum(self) -> int:
        return quorum_for_risk(self.total)

    @property
    def level(self) -> RiskLevel:
        if self.total >= 75:
            return RiskLevel.HIGH
        return RiskLevel.MEDIUM if self.total >= 50 else RiskLevel.LOW


def score_task(
    resources: Sequence[ResourceRef],
    lines_changed: int,
    recent_failures: Sequence[bool],
    table: RiskTable = DEFAULT_TABLE,
) -> RiskScore:
    """The risk of a task from the default inputs."""
    return RiskScore(
        RiskInputs(
            criticality=criticality(resources, table),
            magnitude=magnitude(lines_changed, table),
            blast_radius=blast_radius(resources, table),
            failure_rate=failure_rate(recent_failures, table),
        )
    )


def risk_value(risk: RiskScore | float) -> float:
    """The total of a score, or a bare number checked to be 0–100."""
    return risk.total if isinstance(risk, RiskScore) else check_percent(risk, "risk")


def quorum_for_risk(risk: RiskScore | float) -> int:
    """Approvals the risk alone demands (the brief): ≥ 75 → 3, ≥ 50 → 2, else 1."""
    value = risk_value(risk)
    if value >= 75:
        return 3
    return 2 if value >= 50 else 1
