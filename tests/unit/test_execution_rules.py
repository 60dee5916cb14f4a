"""The pure decisions of the execution pipeline: lock request, backoff, retry, bands."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.errors import InvalidInput
from community_ade.execution.queue import BAND_LIMITS, BANDS, QueueKeys, band_of
from community_ade.execution.rules import (
    Failure,
    backoff_delay,
    check_lockable,
    lock_resources,
    should_retry,
)
from community_ade.locks.model import Mode

X, S = Mode.EXCLUSIVE, Mode.SHARED


def ref(type_: str, id_: str, *actions: str) -> dict[str, object]:
    return {"type": type_, "id": id_, "actions": list(actions)}


def test_a_task_locks_itself_exclusively_and_its_resources_by_their_actions() -> None:
    wanted = lock_resources(
        "t1",
        [
            ref("database", "orders", "read"),
            ref("configuration", "app", "write"),
            ref("service", "api", "read", "write"),
            ref("storage", "bucket"),
        ],
    )
    assert wanted == {
        "task:t1": X,
        "database:orders": S,
        "configuration:app": X,
        "service:api": X,
        "storage:bucket": X,  # no actions named: assume it writes
    }


@pytest.mark.parametrize(
    ("first", "second", "mode"),
    [(("read",), ("write",), X), (("write",), ("read",), X), (("read",), ("read",), S)],
)
def test_a_resource_named_twice_takes_the_stronger_mode(
    first: tuple[str, ...], second: tuple[str, ...], mode: Mode
) -> None:
    wanted = lock_resources("t", [ref("database", "db", *first), ref("database", "db", *second)])
    assert wanted["database:db"] is mode


@given(
    attempt=st.integers(1, 200),
    base=st.floats(0.01, 10),
    cap=st.floats(0.01, 1000),
    seed=st.integers(0, 2**32),
)
def test_backoff_stays_in_the_upper_half_of_the_capped_exponential(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, rand=random.Random(seed))
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling * (1 + 1e-9)


def test_backoff_grows_and_is_jittered() -> None:
    rand = random.Random(7)
    ceilings = [
        max(backoff_delay(n, base=1, cap=60, rand=rand) for _ in range(50)) for n in (1, 2, 3)
    ]
    assert ceilings[0] < ceilings[1] < ceilings[2]
    assert len({backoff_delay(3, base=1, cap=60, rand=rand) for _ in range(20)}) > 1
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, base=1, cap=1)


@pytest.mark.parametrize(
    ("transient", "attempts", "outcome", "retry"),
    [
        (True, 1, "rolled_back", True),
        (True, 2, "nothing_to_roll_back", True),
        (True, 3, "rolled_back", False),  # attempts used up
        (False, 1, "rolled_back", False),  # permanent
        (True, 1, "rollback_failed", False),  # never retry over an unknown state
    ],
)
def test_only_transient_failures_with_attempts_left_and_a_clean_rollback_retry(
    transient: bool, attempts: int, outcome: str, retry: bool
) -> None:
    assert should_retry(Failure("x", transient, outcome), attempts, 3) is retry


@given(st.integers(-10, 2000))
def test_bands_order_priorities(priority: int) -> None:
    band = band_of(priority)
    assert 0 <= band < BANDS
    assert band_of(priority + 1) >= band
    for limit, b in zip(BAND_LIMITS, range(BANDS), strict=False):
        if priority <= limit:
            assert band <= b


def test_band_edges_and_keys_share_one_hash_tag() -> None:
    assert [band_of(p) for p in (0, 50, 51, 100, 101, 1000)] == [0, 0, 1, 1, 2, 2]
    keys = QueueKeys.named("tasks")
    assert all("{tasks}" in k for k in keys.script_keys)
    assert len(set(keys.script_keys)) == 3 + BANDS


def test_check_lockable_applies_the_lock_models_rules_to_what_the_worker_will_ask() -> None:
    fine = [{"type": "database", "id": f"db-{n}", "actions": ["read"]} for n in range(63)]
    check_lockable(fine)  # with the task's own lock: 64, the most one request may name
    with pytest.raises(InvalidInput, match="at most 64") as too_many:
        check_lockable([*fine, {"type": "database", "id": "one-more", "actions": ["read"]}])
    assert too_many.value.details["errors"][0]["path"] == "resources"
    with pytest.raises(InvalidInput) as bad:
        check_lockable([*fine[:2], {"type": "secret", "id": "a b"}, {"type": "secret", "id": "}"}])
    assert [e["path"] for e in bad.value.details["errors"]] == [
        "resources[2].id",
        "resources[3].id",
    ]
