"""Pure decisions of the execution pipeline: what a task locks, how long a retry waits,
whether a failure is retried. No IO; tested exhaustively in ``tests/unit``."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from community_ade.errors import InvalidInput
from community_ade.locks.model import Mode, check_name, normalize_resources


def lock_name(ref: Mapping[str, Any]) -> str:
    """The lock a task takes for one of its resources: ``<type>:<id>``."""
    return f"{ref['type']}:{ref['id']}"


def lock_resources(task_id: str, resources: Sequence[Mapping[str, Any]]) -> dict[str, Mode]:
    """The lock request of a task: the task itself (``task:<id>``, exclusive, so two
    deliveries of one task never run at once) and each of its resources as
    ``<type>:<id>`` — shared when every action on it only reads, exclusive otherwise.
    A resource named twice takes the stronger mode."""
    wanted: dict[str, Mode] = {f"task:{task_id}": Mode.EXCLUSIVE}
    for ref in resources:
        name = lock_name(ref)
        actions = set(ref.get("actions") or ())
        mode = Mode.SHARED if actions and actions <= {"read"} else Mode.EXCLUSIVE
        if wanted.get(name) is not Mode.EXCLUSIVE:
            wanted[name] = mode
    return wanted


def check_lockable(resources: Sequence[Mapping[str, Any]]) -> None:
    """Refuse, naming the field, resources the worker could never lock: the lock
    manager's own rules applied to the request ``lock_resources`` will make, so that a
    task is refused when it is written, not dead-lettered once approved."""
    errors = []
    for index, ref in enumerate(resources):
        try:
            check_name("resource", lock_name(ref))
        except InvalidInput as exc:
            errors.append({"path": f"resources[{index}].id", "message": exc.message})
    if not errors:
        try:
            normalize_resources(lock_resources(str(uuid.UUID(int=0)), resources))
        except InvalidInput as exc:
            errors.append({"path": "resources", "message": exc.message})
    if errors:
        shown = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5])
        raise InvalidInput(f"resources the lock manager refuses: {shown}", errors=errors)


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: random.Random | None = None
) -> float:
    """Seconds before retry number ``attempt`` (1 = after the first failure):
    exponential (``base × 2^(attempt-1)``, at most ``cap``) with "equal jitter" — a random
    point in the upper half — so that tasks failing together do not retry together."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt}")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return ceiling / 2 + (rand or random).uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Failure:
    """How one attempt failed."""

    message: str
    transient: bool
    rollback_outcome: str


def should_retry(failure: Failure, attempts: int, max_attempts: int) -> bool:
    """Retry only a transient failure, with attempts left, whose rollback left the target
    as it was (retrying over a failed rollback would apply onto an unknown state)."""
    return (
        failure.transient
        and attempts < max_attempts
        and failure.rollback_outcome != "rollback_failed"
    )
