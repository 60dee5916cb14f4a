"""The pure clock rules (``approvals/timeouts.py``): when reminders fall and which is due,
which rule decides, every timeout outcome, and escalation through the eligibility rules."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.approvals.accounting import Vote, account, eligible_reviewers
from community_ade.approvals.policy import (
    GroupRequirement,
    Policy,
    PolicyRule,
    compute_requirements,
    is_eligible,
)
from community_ade.approvals.timeouts import (
    ApprovalTimeout,
    Clocks,
    Outcome,
    ReviewTimeout,
    ReviewTimeoutRule,
    approval_timeout_outcome,
    check_reminders,
    clocks_document,
    clocks_from_document,
    due_reminder,
    first_reminder_at,
    reminder_times,
    review_timeout_outcome,
)
from community_ade.errors import InvalidInput

T0 = datetime(2026, 1, 1, tzinfo=UTC)

fractions = st.lists(
    st.floats(min_value=0.01, max_value=0.99), min_size=1, max_size=5, unique=True
).map(sorted)


@given(
    fractions,
    st.integers(min_value=10, max_value=10**6),
    st.lists(st.floats(min_value=0, max_value=1.2), max_size=30).map(sorted),
)
def test_a_sweep_at_any_times_sends_each_fraction_at_most_once_in_order(
    fs: list[float], window: int, at: list[float]
) -> None:
    deadline = T0 + timedelta(seconds=window)
    sent, out = 0, []
    nxt = first_reminder_at(T0, deadline, fs)
    for f in at:
        now = T0 + timedelta(seconds=window * f)
        due = due_reminder(T0, deadline, fs, sent, now)
        if due is None:
            continue
        assert now < deadline  # never at or after the deadline
        assert nxt is not None
        assert now >= nxt  # the index the sweep reads says it is due
        assert due.index >= sent
        assert reminder_times(T0, deadline, fs)[due.index] <= now
        out.append(due.index)
        sent, nxt = due.sent, due.next_at
    assert out == sorted(set(out))  # each once, in order
    # Everything passed before the last sweep was sent, or superseded by a later one.
    if at and T0 + timedelta(seconds=window * at[-1]) < deadline:
        last = T0 + timedelta(seconds=window * at[-1])
        passed = [i for i, t in enumerate(reminder_times(T0, deadline, fs)) if t <= last]
        assert sent == (passed[-1] + 1 if passed else 0)


def test_a_late_sweep_sends_the_latest_fraction_only() -> None:
    deadline = T0 + timedelta(seconds=100)
    due = due_reminder(T0, deadline, (0.2, 0.5, 0.9), 0, T0 + timedelta(seconds=60))
    assert due is not None
    assert (due.index, due.sent, due.next_at) == (1, 2, T0 + timedelta(seconds=90))
    assert due_reminder(T0, deadline, (0.2, 0.5, 0.9), 2, T0 + timedelta(seconds=60)) is None
    assert due_reminder(T0, deadline, (0.9,), 0, deadline) is None


@pytest.mark.parametrize(
    "bad", [[0], [1], [1.5], [-0.1], [0.5, 0.5], [0.9, 0.1], [0.1] * 6, [True], ["0.5"]]
)
def test_bad_reminders_are_refused(bad: list[object]) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_reminders(bad, "rule 'r'")  # type: ignore[arg-type]
    assert caught.value.details.get("field") == "reminders"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action": "escalate"},
        {"action": "escalate", "group": "leads"},
        {"action": "escalate", "ttl": timedelta(hours=1)},
        {"action": "escalate", "group": "leads", "ttl": timedelta(0)},
        {"action": "auto_approve"},
        {"action": "auto_approve", "risk_below": 101},
        {"action": "reject", "risk_below": 10},
        {"action": "expire", "group": "leads"},
        {"action": "later"},
    ],
)
def test_bad_timeout_rules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        ReviewTimeoutRule(**kwargs)  # type: ignore[arg-type]


ESCALATE = ReviewTimeoutRule(ReviewTimeout.ESCALATE, group="leads", ttl=timedelta(hours=1))
RULES = [
    ReviewTimeoutRule(),
    ReviewTimeoutRule(ReviewTimeout.REJECT),
    ESCALATE,
    ReviewTimeoutRule(ReviewTimeout.AUTO_APPROVE, risk_below=30),
]


@given(
    st.sampled_from(RULES),
    st.floats(min_value=0, max_value=100),
    st.booleans(),
)
def test_every_review_timeout_outcome(
    rule: ReviewTimeoutRule, risk: float, escalated: bool
) -> None:
    outcome = review_timeout_outcome(Clocks(on_review_timeout=rule), risk, escalated=escalated)
    expected = {
        ReviewTimeout.EXPIRE: Outcome.EXPIRE,
        ReviewTimeout.REJECT: Outcome.REJECT,
        ReviewTimeout.ESCALATE: Outcome.EXPIRE if escalated else Outcome.ESCALATE,
        ReviewTimeout.AUTO_APPROVE: Outcome.AUTO_APPROVE if risk < 30 else Outcome.EXPIRE,
    }[rule.action]
    assert outcome.outcome is expected
    assert outcome.reason


@pytest.mark.parametrize(
    ("rule", "re_reviewed", "expected"),
    [
        (ApprovalTimeout.EXPIRE, False, Outcome.EXPIRE),
        (ApprovalTimeout.EXPIRE, True, Outcome.EXPIRE),
        (ApprovalTimeout.RE_REVIEW, False, Outcome.RE_REVIEW),
        (ApprovalTimeout.RE_REVIEW, True, Outcome.EXPIRE),
    ],
)
def test_every_approval_timeout_outcome(
    rule: ApprovalTimeout, re_reviewed: bool, expected: Outcome
) -> None:
    clocks = Clocks(on_approval_timeout=rule)
    assert approval_timeout_outcome(clocks, re_reviewed=re_reviewed).outcome is expected


def test_the_first_matched_rule_that_sets_a_clock_decides_it() -> None:
    policy = Policy(
        version=4,
        rules=(
            PolicyRule(name="silent", task_types=("*",)),
            PolicyRule(name="reminds", task_types=("*",), reminders=(0.5,)),
            PolicyRule(
                name="escalates",
                task_types=("*",),
                on_review_timeout=ESCALATE,
                reminders=(0.1, 0.2),
                on_approval_timeout=ApprovalTimeout.RE_REVIEW,
            ),
            PolicyRule(
                name="rejects", task_types=("*",), on_review_timeout=ReviewTimeoutRule("reject")
            ),
        ),
    )
    clocks = compute_requirements(policy, "files.write", [], 10).clocks
    assert (clocks.reminders, clocks.reminders_rule) == ((0.5,), "reminds")
    assert (clocks.on_review_timeout, clocks.review_timeout_rule) == (ESCALATE, "escalates")
    assert clocks.on_approval_timeout is ApprovalTimeout.RE_REVIEW
    assert clocks.approval_timeout_rule == "escalates"
    nothing = compute_requirements(Policy(version=0), "files.write", [], 10).clocks
    assert nothing == Clocks()


def test_escalation_opens_every_slot_to_the_group_through_the_eligibility_rules() -> None:
    policy = Policy(
        version=1,
        rules=(
            PolicyRule(
                name="r", task_types=("*",), groups=(GroupRequirement("owners", 1),), min_total=2
            ),
        ),
    )
    req = compute_requirements(policy, "files.write", [], 10)
    groups = {"dave": {"leads"}, "olga": {"owners"}, "alice": {"leads"}}
    assert not is_eligible(req, {"leads"})
    escalated = dataclasses.replace(req, escalated_to="leads")
    assert is_eligible(escalated, {"leads"})
    votes = [Vote(actor="dave", decision="approve", at=T0)]
    before = account(req, votes, submitter="alice", groups=groups)
    assert before.approvals == 0
    assert "dave" in before.ignored[0].reason
    after = account(escalated, votes, submitter="alice", groups=groups)
    assert after.approvals == 1
    assert after.blocked_by == ("needs 2 approvals in total, has 1",)
    # The submitter stays out, also as a member of the escalation group.
    listed = eligible_reviewers(escalated, groups, submitter="alice")
    assert dict(listed.by_group) == {"owners": ("olga",), "leads": ("dave",)}


@given(
    st.one_of(st.just(()), fractions.map(tuple)),
    st.sampled_from(RULES),
    st.sampled_from(list(ApprovalTimeout)),
    st.sampled_from([None, "a rule"]),
)
def test_the_stored_form_of_the_clocks_reads_back_the_same(
    reminders: tuple[float, ...],
    rule: ReviewTimeoutRule,
    approval: ApprovalTimeout,
    name: str | None,
) -> None:
    clocks = Clocks(reminders, name, rule, name, approval, name)
    assert clocks_from_document(clocks_document(clocks)) == clocks


def test_a_task_stored_before_the_clocks_gets_the_defaults() -> None:
    assert clocks_from_document({}) == Clocks()
