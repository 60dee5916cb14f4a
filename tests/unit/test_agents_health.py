"""Agent health rules (pure): offline, degraded, online, and the numbers shown."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.agents.health import (
    FAILURE_STREAK,
    MIN_SAMPLE,
    WINDOW,
    Evidence,
    FinishedTask,
    Status,
    assess,
    median,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
LATER = NOW + timedelta(seconds=10)
EARLIER = NOW - timedelta(seconds=1)


def evidence(
    *,
    leases: Sequence[datetime] = (),
    session: datetime | None = None,
    in_use: int = 0,
    waiting: int = 0,
    capacity: int = 4,
    finished: Sequence[FinishedTask] = (),
    seen: Sequence[datetime | None] = (),
) -> Evidence:
    return Evidence(NOW, leases, session, in_use, waiting, capacity, finished, seen)


def ok(ms: int = 100) -> FinishedTask:
    return FinishedTask(True, ms, None)


def failed(error: str = "boom", ms: int = 100) -> FinishedTask:
    return FinishedTask(False, ms, error)


def test_without_a_lease_or_session_it_is_offline() -> None:
    health = assess(evidence())
    assert health.status == Status.OFFLINE
    assert health.reasons == ("no live lease and no lock session",)
    assert assess(evidence(leases=[EARLIER], session=EARLIER)).status == Status.OFFLINE
    assert assess(evidence(leases=[NOW])).status == Status.OFFLINE  # a deadline is exclusive


@pytest.mark.parametrize(
    ("leases", "session"), [([LATER], None), ([], LATER), ([EARLIER, LATER], None)]
)
def test_a_live_lease_or_lock_session_is_online(
    leases: list[datetime], session: datetime | None
) -> None:
    health = assess(evidence(leases=leases, session=session))
    assert health.status == Status.ONLINE
    assert health.reasons == ()
    assert health.live_leases == sum(1 for d in leases if d > NOW)


def test_a_low_success_rate_degrades() -> None:
    tasks = [ok(), failed(), failed(), ok(), failed()]
    health = assess(evidence(leases=[LATER], finished=tasks))
    assert health.status == Status.DEGRADED
    assert health.reasons == ("2 of its last 5 tasks succeeded (below 50%)",)
    assert health.success_rate == 0.4


def test_too_few_tasks_do_not_judge_a_rate() -> None:
    health = assess(evidence(leases=[LATER], finished=[failed(), ok()][: MIN_SAMPLE - 1]))
    assert health.status == Status.ONLINE


def test_a_streak_of_failures_degrades_even_at_a_good_rate() -> None:
    tasks = [failed()] * FAILURE_STREAK + [ok()] * 10
    health = assess(evidence(leases=[LATER], finished=tasks))
    assert health.status == Status.DEGRADED
    assert health.reasons == (f"its last {FAILURE_STREAK} tasks failed",)


def test_only_the_window_counts() -> None:
    tasks = [ok()] * WINDOW + [failed()] * 100
    health = assess(evidence(leases=[LATER], finished=tasks))
    assert health.status == Status.ONLINE
    assert health.success_rate == 1.0
    assert health.sample == WINDOW


def test_saturation_degrades() -> None:
    health = assess(evidence(session=LATER, in_use=2, waiting=1, capacity=2))
    assert health.status == Status.DEGRADED
    assert health.reasons == ("at capacity (2/2) with 1 waiting",)
    assert health.load == 1.0
    full_but_nobody_waits = assess(evidence(session=LATER, in_use=2, capacity=2))
    assert full_but_nobody_waits.status == Status.ONLINE


def test_the_numbers_shown() -> None:
    tasks = [failed("newest", 300), ok(100), failed("older", 200)]
    health = assess(evidence(finished=tasks, seen=[None, EARLIER, NOW - timedelta(hours=1)]))
    assert health.last_error == "newest"
    assert health.p50_duration_ms == 200
    assert health.last_seen == EARLIER
    assert assess(evidence()).last_seen is None
    assert assess(dataclasses.replace(evidence(), last_run=EARLIER)).last_run == EARLIER
    assert assess(evidence()).success_rate is None


def test_median_is_the_lower_middle() -> None:
    assert median([]) is None
    assert median([5]) == 5
    assert median([4, 1, 3, 2]) == 2


@given(
    st.lists(st.booleans(), max_size=40),
    st.booleans(),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(1, 5),
)
def test_status_follows_the_rules(
    outcomes: list[bool], alive: bool, in_use: int, waiting: int, capacity: int
) -> None:
    tasks = [ok() if o else failed() for o in outcomes]
    health = assess(
        evidence(
            leases=[LATER] if alive else [],
            in_use=in_use,
            waiting=waiting,
            capacity=capacity,
            finished=tasks,
        )
    )
    recent = outcomes[:WINDOW]
    failing = (len(recent) >= MIN_SAMPLE and sum(recent) / len(recent) < 0.5) or (
        len(recent) >= FAILURE_STREAK and not any(recent[:FAILURE_STREAK])
    )
    saturated = in_use >= capacity and waiting > 0
    if not alive:
        assert health.status == Status.OFFLINE
    elif failing or saturated:
        assert health.status == Status.DEGRADED
    else:
        assert health.status == Status.ONLINE
    assert 0.0 <= health.load <= 1.0
