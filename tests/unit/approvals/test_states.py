"""Exhaustive tests of the pure task lifecycle (``community_ade.approvals.states``).

The expected table below is written out by hand from docs/architecture.md §3, in the
values stored in the database and sent over the wire; it is deliberately not derived
from the module.
"""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.approvals.states import (
    CANCELLABLE,
    OPEN_FOR_REVIEW,
    TERMINAL_STATES,
    TRANSITIONS,
    TaskState,
    Trigger,
    allowed_triggers,
    is_terminal,
    next_state,
)
from community_ade.errors import InvalidTransition

STATES = [
    "DRAFT",
    "SUBMITTED",
    "REVIEWING",
    "APPROVED",
    "APPLYING",
    "COMPLETED",
    "REJECTED",
    "CANCELLED",
    "EXPIRED",
    "FAILED",
]
TRIGGERS = [
    "submit",
    "auto_approve",
    "first_review",
    "requirements_met",
    "reject",
    "request_changes",
    "review_expired",
    "review_timeout_reject",
    "review_timeout_approve",
    "start_apply",
    "preconditions_moved",
    "approval_expired",
    "approval_re_review",
    "apply_succeeded",
    "apply_retry",
    "apply_failed",
    "cancel",
]
# (from, trigger) -> to, one line per edge of architecture.md §3.
EXPECTED = {
    ("DRAFT", "submit"): "SUBMITTED",
    ("DRAFT", "auto_approve"): "APPROVED",
    ("SUBMITTED", "first_review"): "REVIEWING",
    ("SUBMITTED", "requirements_met"): "APPROVED",
    ("REVIEWING", "requirements_met"): "APPROVED",
    ("SUBMITTED", "reject"): "REJECTED",
    ("REVIEWING", "reject"): "REJECTED",
    ("SUBMITTED", "request_changes"): "DRAFT",
    ("REVIEWING", "request_changes"): "DRAFT",
    ("SUBMITTED", "review_expired"): "EXPIRED",
    ("REVIEWING", "review_expired"): "EXPIRED",
    ("SUBMITTED", "review_timeout_reject"): "REJECTED",
    ("REVIEWING", "review_timeout_reject"): "REJECTED",
    ("SUBMITTED", "review_timeout_approve"): "APPROVED",
    ("REVIEWING", "review_timeout_approve"): "APPROVED",
    ("APPROVED", "start_apply"): "APPLYING",
    ("APPROVED", "preconditions_moved"): "SUBMITTED",
    ("APPROVED", "approval_expired"): "EXPIRED",
    ("APPROVED", "approval_re_review"): "SUBMITTED",
    ("APPLYING", "apply_succeeded"): "COMPLETED",
    ("APPLYING", "apply_retry"): "APPROVED",
    ("APPLYING", "apply_failed"): "FAILED",
    ("DRAFT", "cancel"): "CANCELLED",
    ("SUBMITTED", "cancel"): "CANCELLED",
    ("REVIEWING", "cancel"): "CANCELLED",
    ("APPROVED", "cancel"): "CANCELLED",
}
TERMINAL = {"COMPLETED", "REJECTED", "CANCELLED", "EXPIRED", "FAILED"}


def _successors(state: str) -> set[str]:
    return {to for (source, _), to in EXPECTED.items() if source == state}


def _reachable(start: str) -> set[str]:
    seen, todo = {start}, deque([start])
    while todo:
        for nxt in _successors(todo.popleft()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_enums_name_exactly_the_designed_states_and_triggers() -> None:
    assert [s.value for s in TaskState] == STATES
    assert [s.name for s in TaskState] == STATES
    assert [t.value for t in Trigger] == TRIGGERS


@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(STATES, TRIGGERS)))
def test_every_state_and_trigger_pair(state: str, trigger: str) -> None:
    expected = EXPECTED.get((state, trigger))
    if expected is None:
        with pytest.raises(InvalidTransition):
            next_state(TaskState(state), Trigger(trigger))
        assert Trigger(trigger) not in allowed_triggers(TaskState(state))
    else:
        assert next_state(TaskState(state), Trigger(trigger)) == TaskState(expected)
        assert Trigger(trigger) in allowed_triggers(TaskState(state))


def test_table_holds_exactly_the_designed_edges_and_is_frozen() -> None:
    assert {(s.value, t.value): to.value for (s, t), to in TRANSITIONS.items()} == EXPECTED
    with pytest.raises(TypeError):
        TRANSITIONS[TaskState.DRAFT, Trigger.CANCEL] = TaskState.COMPLETED  # type: ignore[index]


def test_terminal_states_allow_nothing_and_every_other_state_has_a_way_out() -> None:
    assert {s.value for s in TERMINAL_STATES} == TERMINAL
    for state in TaskState:
        assert is_terminal(state) == (state.value in TERMINAL)
        assert bool(allowed_triggers(state)) != is_terminal(state)


def test_every_state_is_reachable_from_draft() -> None:
    assert _reachable("DRAFT") == set(STATES)


def test_a_terminal_state_stays_reachable_from_every_state() -> None:
    # Cycles exist (request changes, retry, preconditions moved), but none is a trap.
    for state in _reachable("DRAFT"):
        assert _reachable(state) & TERMINAL, state


def test_review_and_cancel_helpers() -> None:
    assert {s.value for s in OPEN_FOR_REVIEW} == {"SUBMITTED", "REVIEWING"}
    assert {s.value for s in CANCELLABLE} == {"DRAFT", "SUBMITTED", "REVIEWING", "APPROVED"}


def test_refusal_names_the_state_the_trigger_and_what_is_allowed() -> None:
    with pytest.raises(InvalidTransition) as caught:
        next_state(TaskState.REVIEWING, Trigger.START_APPLY)
    error = caught.value
    assert error.code == "invalid_transition"
    assert "REVIEWING" in error.message
    assert "start_apply" in error.message
    allowed = [
        "requirements_met",
        "reject",
        "request_changes",
        "review_expired",
        "review_timeout_reject",
        "review_timeout_approve",
        "cancel",
    ]
    for trigger in allowed:
        assert trigger in error.message
    assert error.details == {"state": "REVIEWING", "trigger": "start_apply", "allowed": allowed}


def test_refusal_from_a_terminal_state_says_nothing_is_allowed() -> None:
    with pytest.raises(InvalidTransition, match="final") as caught:
        next_state(TaskState.COMPLETED, Trigger.CANCEL)
    assert caught.value.details["allowed"] == []


@given(st.lists(st.sampled_from(TRIGGERS), max_size=60))
def test_random_trigger_sequences_follow_the_table(triggers: list[str]) -> None:
    state = "DRAFT"
    for trigger in triggers:
        try:
            moved = next_state(TaskState(state), Trigger(trigger)).value
        except InvalidTransition:
            assert (state, trigger) not in EXPECTED
            continue
        assert state not in TERMINAL
        assert EXPECTED[state, trigger] == moved
        state = moved
