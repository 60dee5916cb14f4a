"""The throttling rules: login backoff (auth.backoff), exhaustively over small
parameters, and a WebSocket client's message budget."""

from __future__ import annotations

import itertools

import pytest

from community_ade.api.routes.ws import MessageBudget
from community_ade.auth.backoff import Backoff
from community_ade.errors import RateLimited


@pytest.mark.parametrize(
    ("free", "base", "cap"),
    [(f, b, c) for f, b, c in itertools.product([1, 2, 5], [0.5, 1.0, 3.0], [3.0, 60.0]) if b <= c],
)
def test_free_failures_then_doubling_up_to_the_cap(free: int, base: float, cap: float) -> None:
    rule = Backoff(free, base, cap)
    previous = 0.0
    for failures in range(0, free + 80):
        delay = rule.delay(failures)
        if failures < free:
            assert delay == 0.0
        else:
            assert delay == min(cap, base * 2 ** (failures - free))
            assert previous <= delay <= cap
        assert rule.starts_lockout(failures) == (failures == free)
        previous = delay
    assert rule.delay(10**9) == cap  # no overflow, however many failures


def test_the_wait_runs_from_the_newest_failure() -> None:
    rule = Backoff(free=3, base_seconds=2.0, cap_seconds=60.0)
    assert rule.remaining(2, last_failure=100.0, now=100.0) == 0.0
    assert rule.remaining(3, last_failure=100.0, now=100.5) == 1.5
    assert rule.remaining(3, last_failure=100.0, now=102.0) == 0.0  # waited out: may try
    assert rule.remaining(4, last_failure=100.0, now=101.0) == 3.0
    assert rule.remaining(50, last_failure=100.0, now=100.0) == 60.0


@pytest.mark.parametrize(("free", "base", "cap"), [(0, 1.0, 2.0), (1, 0.0, 1.0), (1, 2.0, 1.0)])
def test_nonsense_parameters_are_refused(free: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="need free"):
        Backoff(free, base, cap)


def test_a_websockets_message_budget_refills_each_window() -> None:
    budget = MessageBudget(3, window_seconds=60.0)
    for now in (0.0, 1.0, 59.0):
        budget.spend(now)
    with pytest.raises(RateLimited) as refused:
        budget.spend(59.5)
    assert refused.value.retry_after == 1
    budget.spend(60.0)  # a new window
    budget.spend(60.0)
    budget.spend(61.0)
    with pytest.raises(RateLimited, match="more than 3 messages in 60 s"):
        budget.spend(70.0)
