"""Pure lock model: modes, validated requests, the compatibility rule and the lock settings.

No IO here. The Lua scripts implement the same rules (``_lib.lua``); the tests check
the two against each other.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from community_ade.errors import InvalidInput
from community_ade.settings import DOMAIN_PATTERN, Settings

MAX_RESOURCE_NAME = 256
MAX_RESOURCES = 64
_NAME_RE = re.compile(r"[^\s{}]+")


class Mode(StrEnum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"

    @property
    def code(self) -> str:
        """The one-letter code the scripts store."""
        return "x" if self is Mode.EXCLUSIVE else "s"

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise InvalidInput(f"unknown lock mode {value!r}: use one of {allowed}") from None


ResourceSpec = Mapping[str, "Mode | str"] | Iterable[tuple[str, "Mode | str"]]


def check_name(kind: str, value: str, limit: int = MAX_RESOURCE_NAME) -> str:
    """A task, agent or resource id: non-empty, bounded, no whitespace or braces."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{kind} must be a non-empty string")
    if len(value) > limit:
        raise InvalidInput(f"{kind} {value[:40]!r}… is longer than {limit} characters")
    if not _NAME_RE.fullmatch(value):
        raise InvalidInput(f"{kind} {value!r} may not contain whitespace or braces")
    return value


def normalize_resources(resources: ResourceSpec) -> tuple[tuple[str, Mode], ...]:
    """Validate a resource set and return it sorted by name.

    Naming one resource twice keeps the stronger mode (exclusive wins).
    """
    items = tuple(resources.items() if isinstance(resources, Mapping) else resources)
    try:
        return _normalize(items)
    except TypeError:  # an unhashable item: validate without the cache
        return _normalize.__wrapped__(items)


@functools.lru_cache(maxsize=1024)
def _normalize(items: tuple[tuple[str, Mode | str], ...]) -> tuple[tuple[str, Mode], ...]:
    # Services ask for the same few resource sets again and again: validate each once.
    chosen: dict[str, Mode] = {}
    for name, mode in items:
        check_name("resource", name)
        parsed = Mode.parse(mode)
        if chosen.get(name) is not Mode.EXCLUSIVE:
            chosen[name] = parsed
    if not chosen:
        raise InvalidInput("a lock request needs at least one resource")
    if len(chosen) > MAX_RESOURCES:
        raise InvalidInput(f"a lock request may name at most {MAX_RESOURCES} resources")
    return tuple(sorted(chosen.items()))


def check_domain(domain: str) -> str:
    """A lock domain becomes a Redis Cluster hash tag: letters, digits and ``_.:-`` only."""
    if not isinstance(domain, str) or not re.fullmatch(DOMAIN_PATTERN, domain):
        raise InvalidInput(
            f"invalid lock domain {domain!r}: 1-64 letters, digits, '_', '.', ':' or '-'"
        )
    return domain


@dataclass(frozen=True)
class LockRequest:
    """One task asking, on behalf of one agent, for a set of resources."""

    task: str
    agent: str
    resources: tuple[tuple[str, Mode], ...]

    @classmethod
    def build(cls, task: str, agent: str, resources: ResourceSpec) -> LockRequest:
        return cls(
            task=check_name("task", task),
            agent=check_name("agent", agent),
            resources=normalize_resources(resources),
        )


def compatible(mode: Mode, holders: Iterable[Mode]) -> bool:
    """May a request in ``mode`` join these holders (all of other tasks)?"""
    held = list(holders)
    if mode is Mode.EXCLUSIVE:
        return not held
    return Mode.EXCLUSIVE not in held


def grantable(mode: Mode, holders: Iterable[Mode], earlier_waiters: Iterable[Mode]) -> bool:
    """FIFO rule for one resource: compatible with the holders and with every waiter ahead.

    Exclusive goes first in line onto a free resource; shared joins shared holders unless an
    exclusive waits ahead (so writers are not starved by a stream of readers).
    """
    return compatible(mode, holders) and compatible(mode, earlier_waiters)


@dataclass(frozen=True)
class LockConfig:
    """Timing and limits of the lock manager, in milliseconds where they reach Redis."""

    lease_ms: int = 30_000
    renew_ms: int = 10_000
    lock_delay_ms: int = 1_000
    deadlock_timeout_ms: int = 1_000
    default_capacity: int = 4
    backstop_ms: int = 1_000
    events_maxlen: int = 10_000

    def __post_init__(self) -> None:
        if self.lease_ms <= 0:
            raise InvalidInput("the lease must be positive")
        if not 0 < self.renew_ms < self.lease_ms:
            raise InvalidInput(
                f"the renewal interval ({self.renew_ms} ms) must be positive and shorter than "
                f"the lease ({self.lease_ms} ms)"
            )
        if self.lock_delay_ms < 0:
            raise InvalidInput("the lock-delay may not be negative")
        if self.deadlock_timeout_ms <= 0 or self.backstop_ms <= 0:
            raise InvalidInput("deadlock timeout and backstop must be positive")
        if self.default_capacity < 1:
            raise InvalidInput("an agent's capacity is at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> LockConfig:
        lease_ms = round(settings.lock_lease_seconds * 1000)
        renew = settings.lock_renew_seconds
        return cls(
            lease_ms=lease_ms,
            renew_ms=round(renew * 1000) if renew is not None else max(1, lease_ms // 3),
            lock_delay_ms=round(settings.lock_delay_seconds * 1000),
            deadlock_timeout_ms=round(settings.lock_deadlock_timeout_seconds * 1000),
            default_capacity=settings.lock_default_capacity,
            backstop_ms=round(settings.lock_backstop_seconds * 1000),
            events_maxlen=settings.lock_events_maxlen,
        )
