"""An agent's health (pure): online, degraded or offline, and why.

The service gathers the evidence (the agent's HTTP leases and lock-manager session from
Redis, its recent finished tasks and its tokens from the database); ``assess`` decides.

Rules, in order:

1. **offline**: no sign of life now: no unexpired lease (``POST /leases``, renewed by
   heartbeats) and no lock-manager session of the agent (a worker holding or waiting for
   apply locks for it, kept by the lock manager's own heartbeat).
2. **degraded**: alive, but
   - failing: of its last ``WINDOW`` finished tasks (at least ``MIN_SAMPLE``), fewer
     than ``MIN_SUCCESS_RATE`` completed, or the newest ``FAILURE_STREAK`` all failed; or
   - saturated: every permit of its capacity is in use and more requests wait.
3. **online** otherwise.

``last_seen`` is the latest of: a lease heartbeat, a lock session renewal, the use of one
of its tokens (recorded at most once a minute), the last change to one of its tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

WINDOW = 20
MIN_SAMPLE = 3
MIN_SUCCESS_RATE = 0.5
FAILURE_STREAK = 3


class Status(StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


@dataclass(frozen=True)
class FinishedTask:
    """One task the agent submitted that ended (COMPLETED or FAILED)."""

    succeeded: bool
    duration_ms: int | None
    error: str | None


@dataclass(frozen=True)
class Evidence:
    """Everything ``assess`` looks at. ``finished`` is newest first."""

    now: datetime
    lease_deadlines: Sequence[datetime]  # of the agent's HTTP leases
    lock_session_deadline: datetime | None  # the lock manager's session lease, if any
    in_use: int  # lock permits held
    waiting: int  # lock requests waiting
    capacity: int
    finished: Sequence[FinishedTask]
    seen: Iterable[datetime | None]  # every "last seen" time the service knows of
    last_run: datetime | None = None  # when its newest finished task finished


@dataclass(frozen=True)
class Health:
    status: Status
    reasons: tuple[str, ...]
    active_tasks: int
    capacity: int
    waiting: int
    live_leases: int
    success_rate: float | None  # over the last ``sample`` finished tasks
    sample: int
    p50_duration_ms: int | None
    last_error: str | None
    last_seen: datetime | None
    last_run: datetime | None = None

    @property
    def load(self) -> float:
        return min(1.0, self.active_tasks / self.capacity) if self.capacity > 0 else 0.0


def median(values: Sequence[int]) -> int | None:
    """The p50 of ``values`` (lower median: always one of the values), None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def assess(evidence: Evidence) -> Health:
    now = evidence.now
    live_leases = sum(1 for deadline in evidence.lease_deadlines if deadline > now)
    session = evidence.lock_session_deadline
    has_session = session is not None and session > now
    recent = list(evidence.finished[:WINDOW])
    successes = sum(1 for t in recent if t.succeeded)
    rate = successes / len(recent) if recent else None
    durations = [t.duration_ms for t in recent if t.duration_ms is not None]
    last_error = next((t.error for t in recent if not t.succeeded and t.error), None)
    seen = [t for t in evidence.seen if t is not None]

    reasons: list[str] = []
    if not live_leases and not has_session:
        status = Status.OFFLINE
        reasons.append("no live lease and no lock session")
    else:
        streak = recent[:FAILURE_STREAK]
        if rate is not None and len(recent) >= MIN_SAMPLE and rate < MIN_SUCCESS_RATE:
            reasons.append(
                f"{successes} of its last {len(recent)} tasks succeeded "
                f"(below {MIN_SUCCESS_RATE:.0%})"
            )
        elif len(streak) == FAILURE_STREAK and not any(t.succeeded for t in streak):
            reasons.append(f"its last {FAILURE_STREAK} tasks failed")
        if evidence.in_use >= evidence.capacity and evidence.waiting > 0:
            reasons.append(
                f"at capacity ({evidence.in_use}/{evidence.capacity}) with "
                f"{evidence.waiting} waiting"
            )
        status = Status.DEGRADED if reasons else Status.ONLINE
    return Health(
        status=status,
        reasons=tuple(reasons),
        active_tasks=evidence.in_use,
        capacity=evidence.capacity,
        waiting=evidence.waiting,
        live_leases=live_leases,
        success_rate=rate,
        sample=len(recent),
        p50_duration_ms=median(durations),
        last_error=last_error,
        last_seen=max(seen, default=None),
        last_run=evidence.last_run,
    )
