"""Executor plugins, found through the entry point group ``community_ade.executors``.

Each entry point's name is a task type and its object an executor class (instantiated
without arguments) or instance. The built-ins register themselves the same way in
``pyproject.toml``, so a third-party package that declares an entry point in this group
adds a task type without any change here.

Loading happens once per process (cached): plugins are imported at first use, and a
plugin that fails to import, is not an ``Executor``, or claims a task type other than its
entry point's name is left out with an error in the log rather than taking every other
task type down with it. When two distributions claim the same task type, this package's
own entry point wins (a plugin cannot silently replace a built-in); between two
third-party ones the type is ambiguous and left out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType

from community_ade.errors import InvalidInput
from community_ade.execution.executors.base import (
    Applier,
    ApplyContext,
    ApplyFailed,
    ApplyingExecutor,
    ApplyResult,
    Executor,
    FieldError,
    Plan,
    PlanContext,
    RollbackOutcome,
    Snapshot,
    ValidationReport,
    applier_of,
    description_of,
    digest_of,
    field_errors,
    field_path,
    payload_schema_of,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Applier",
    "ApplyContext",
    "ApplyFailed",
    "ApplyResult",
    "ApplyingExecutor",
    "Executor",
    "FieldError",
    "Plan",
    "PlanContext",
    "RollbackOutcome",
    "Snapshot",
    "ValidationReport",
    "agent_applied_types",
    "applier_of",
    "description_of",
    "digest_of",
    "field_errors",
    "field_path",
    "get_executor",
    "load_executors",
    "payload_schema_of",
]

ENTRY_POINT_GROUP = "community_ade.executors"
_OWN_DISTRIBUTION = "community-ade"

log = logging.getLogger(__name__)


@functools.cache
def load_executors() -> Mapping[str, Executor]:
    """Every installed executor by task type (read-only; call ``cache_clear`` to rescan)."""
    claims: dict[str, list[EntryPoint]] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        claims.setdefault(point.name, []).append(point)
    found: dict[str, Executor] = {}
    for task_type, points in sorted(claims.items()):
        chosen = _choose(task_type, points)
        executor = None if chosen is None else _instantiate(chosen)
        if executor is not None:
            found[task_type] = executor
    return MappingProxyType(found)


def get_executor(task_type: str) -> Executor:
    """The executor of ``task_type``; ``InvalidInput`` naming the known types otherwise."""
    executors = load_executors()
    try:
        return executors[task_type]
    except KeyError:
        known = sorted(executors)
        listed = ", ".join(known) or "none installed"
        raise InvalidInput(
            f"unknown task type {task_type!r}: known types are {listed}",
            task_type=task_type,
            known=known,
        ) from None


def agent_applied_types() -> frozenset[str]:
    """The installed task types their agents apply (never queued for a worker)."""
    return frozenset(t for t, e in load_executors().items() if applier_of(e) == "agent")


def _distribution(point: EntryPoint) -> str:
    dist = point.dist
    return "" if dist is None else dist.name.lower().replace("_", "-")


def _choose(task_type: str, points: list[EntryPoint]) -> EntryPoint | None:
    unique = {(p.value, _distribution(p)): p for p in points}  # one dist seen twice
    if len(unique) == 1:
        return next(iter(unique.values()))
    own = [p for (_, dist), p in unique.items() if dist == _OWN_DISTRIBUTION]
    if own:
        log.warning(
            "task type %r is claimed by several distributions; the built-in one is used",
            task_type,
        )
        return own[0]
    log.error(
        "task type %r is claimed by several distributions (%s); it is disabled",
        task_type,
        ", ".join(sorted(f"{dist or '?'}:{value}" for value, dist in unique)),
    )
    return None


def _instantiate(point: EntryPoint) -> Executor | None:
    try:
        target = point.load()
        executor = target() if isinstance(target, type) else target
    except Exception:
        log.exception("executor plugin %r (%s) failed to load", point.name, point.value)
        return None
    if not isinstance(executor, Executor):
        log.error("executor plugin %r (%s) is not an Executor", point.name, point.value)
        return None
    if executor.task_type != point.name:
        log.error(
            "executor plugin %r (%s) says its task type is %r; it is disabled",
            point.name,
            point.value,
            executor.task_type,
        )
        return None
    return executor
