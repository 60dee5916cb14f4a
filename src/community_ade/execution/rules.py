"""Pure decisions of the execution pipeline: what a task locks, how long a retry waits,
whether a failure is retried. No IO; tested exhaustively in ``tests/unit``."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from community_ade.locks.model import Mode


def lock_resources(task_id: str, resources: Sequence[Mapping[str, Any]]) -> dict[str, Mode]:
    """The lock request of a task: the task itself (``task:<id>``, exclusive, so two
    deliveries of one task never run at once) and each of its resources as
    ``<type>:<id>`` — shared when every action on it only reads, exclusive otherwise.
    A resource named twice takes the stronger mode."""
    wanted: dict[str, Mode] = {f"task:{task_id}": Mode.EXCLUSIVE}
    for ref in resources:
        name = f"{ref['type']}:{ref['id']}"
        actions = set(ref.get("actions") or ())
        mode = Mode.SHARED if actions and actions <= {"read"} else Mode.EXCLUSIVE
        if wanted.get(name) is not Mode.EXCLUSIVE:
            wanted[name] = mode
    return wanted


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
