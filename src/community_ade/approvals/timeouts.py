"""Pure rules of the review and approval clocks: reminders and timeout outcomes.

A policy rule may set ``reminders`` (fractions of the review window) and what happens
when a window closes undecided (``on_review_timeout``) or an approval is not applied in
time (``on_approval_timeout``). The sweep asks these functions what is due at ``now`` and
does it; nothing here reads a clock or a database.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from community_ade.approvals.risk import check_percent, parse_enum
from community_ade.errors import InvalidInput

MAX_REMINDERS = 5


class ReviewTimeout(StrEnum):
    """What the sweep does when ``review_ttl`` passes before a decision."""

    EXPIRE = "expire"  # EXPIRED, as before this rule existed
    REJECT = "reject"  # REJECTED by the system
    ESCALATE = "escalate"  # a named group may fill the open slots, with a new deadline; once
    AUTO_APPROVE = "auto_approve"  # APPROVED by the system, only when the risk is below a bound


class ApprovalTimeout(StrEnum):
    """What the sweep does when ``approval_ttl`` passes without an apply."""

    EXPIRE = "expire"
    RE_REVIEW = "re_review"  # back to review with a new deadline; votes go stale; once


@dataclass(frozen=True)
class ReviewTimeoutRule:
    """``on_review_timeout`` of one rule. ``group`` and ``ttl`` belong to ``escalate``,
    ``risk_below`` to ``auto_approve``; each is required there and refused elsewhere."""

    action: ReviewTimeout = ReviewTimeout.EXPIRE
    group: str | None = None
    ttl: timedelta | None = None
    risk_below: float | None = None

    def __post_init__(self) -> None:
        action = parse_enum(ReviewTimeout, self.action, "on_review_timeout.action")
        object.__setattr__(self, "action", action)
        escalate = action is ReviewTimeout.ESCALATE
        if escalate and (not isinstance(self.group, str) or not self.group.strip()):
            raise InvalidInput("escalate needs the name of a group", field="group")
        if escalate and (not isinstance(self.ttl, timedelta) or self.ttl <= timedelta(0)):
            raise InvalidInput("escalate needs a positive new review window", field="ttl")
        if not escalate and (self.group is not None or self.ttl is not None):
            raise InvalidInput("group and ttl belong to escalate only", field="group")
        if action is ReviewTimeout.AUTO_APPROVE:
            if self.risk_below is None:
                raise InvalidInput("auto_approve needs a risk bound", field="risk_below")
            check_percent(self.risk_below, "on_review_timeout.risk_below")
        elif self.risk_below is not None:
            raise InvalidInput("risk_below belongs to auto_approve only", field="risk_below")


def check_reminders(fractions: Iterable[float], where: str) -> tuple[float, ...]:
    """Reminder times as fractions of the review window: each strictly between 0 and 1,
    strictly increasing, at most ``MAX_REMINDERS``."""
    items = tuple(fractions)
    if len(items) > MAX_REMINDERS:
        raise InvalidInput(f"{where}: at most {MAX_REMINDERS} reminders", field="reminders")
    for f in items:
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
            raise InvalidInput(
                f"{where}: a reminder is a fraction of review_ttl strictly between 0 and 1, "
                f"got {f!r}",
                field="reminders",
            )
    if any(b <= a for a, b in itertools.pairwise(items)):
        raise InvalidInput(f"{where}: reminders must be strictly increasing", field="reminders")
    return tuple(float(f) for f in items)


@dataclass(frozen=True)
class Clocks:
    """The clock rules a task gets: each from the first matched rule (policy order) that
    sets it, with that rule's name, so an outcome can say which rule decided it."""

    reminders: tuple[float, ...] = ()
    reminders_rule: str | None = None
    on_review_timeout: ReviewTimeoutRule = ReviewTimeoutRule()
    review_timeout_rule: str | None = None
    on_approval_timeout: ApprovalTimeout = ApprovalTimeout.EXPIRE
    approval_timeout_rule: str | None = None


class _RuleClocks(Protocol):
    """What ``combine_clocks`` reads of a rule (``PolicyRule`` has these fields)."""

    @property
    def name(self) -> str: ...
    @property
    def reminders(self) -> tuple[float, ...]: ...
    @property
    def on_review_timeout(self) -> ReviewTimeoutRule | None: ...
    @property
    def on_approval_timeout(self) -> ApprovalTimeout | None: ...


def combine_clocks(matched: Sequence[_RuleClocks]) -> Clocks:
    """The first matched rule that sets a field decides it; a rule that is silent leaves
    it to the next. No rule: no reminders, and both timeouts expire (the old behaviour)."""
    reminding = next((r for r in matched if r.reminders), None)
    review = next((r for r in matched if r.on_review_timeout is not None), None)
    approval = next((r for r in matched if r.on_approval_timeout is not None), None)
    return Clocks(
        reminders=reminding.reminders if reminding else (),
        reminders_rule=reminding.name if reminding else None,
        on_review_timeout=(
            review.on_review_timeout if review and review.on_review_timeout else ReviewTimeoutRule()
        ),
        review_timeout_rule=review.name if review else None,
        on_approval_timeout=(
            approval.on_approval_timeout
            if approval and approval.on_approval_timeout
            else ApprovalTimeout.EXPIRE
        ),
        approval_timeout_rule=approval.name if approval else None,
    )


def clocks_document(clocks: Clocks) -> dict[str, Any]:
    """The clock rules a task got, each with the rule that set it (None: the default)."""
    review = clocks.on_review_timeout
    return {
        "reminders": list(clocks.reminders),
        "reminders_rule": clocks.reminders_rule,
        "on_review_timeout": {
            "action": review.action.value,
            "group": review.group,
            "review_ttl_seconds": int(review.ttl.total_seconds()) if review.ttl else None,
            "risk_below": review.risk_below,
            "rule": clocks.review_timeout_rule,
        },
        "on_approval_timeout": {
            "action": clocks.on_approval_timeout.value,
            "rule": clocks.approval_timeout_rule,
        },
    }


def clocks_from_document(doc: Mapping[str, Any]) -> Clocks:
    """The inverse of ``clocks_document``; a task stored before clocks existed gets the
    defaults (no reminders, both timeouts expire)."""
    review = doc.get("on_review_timeout") or {}
    approval = doc.get("on_approval_timeout") or {}
    ttl = review.get("review_ttl_seconds")
    return Clocks(
        reminders=tuple(doc.get("reminders") or ()),
        reminders_rule=doc.get("reminders_rule"),
        on_review_timeout=ReviewTimeoutRule(
            ReviewTimeout(review.get("action", "expire")),
            group=review.get("group"),
            ttl=timedelta(seconds=ttl) if ttl else None,
            risk_below=review.get("risk_below"),
        ),
        review_timeout_rule=review.get("rule"),
        on_approval_timeout=ApprovalTimeout(approval.get("action", "expire")),
        approval_timeout_rule=approval.get("rule"),
    )


def reminder_times(
    opened: datetime, deadline: datetime, fractions: Sequence[float]
) -> tuple[datetime, ...]:
    """When each reminder of a review window ``[opened, deadline]`` falls."""
    window = deadline - opened
    return tuple(opened + window * f for f in fractions)


@dataclass(frozen=True)
class ReminderDue:
    """The reminder to send now (``index`` into the fractions), how many are then sent,
    and when the next one falls (None: no more in this window)."""

    index: int
    sent: int
    next_at: datetime | None


def due_reminder(
    opened: datetime, deadline: datetime, fractions: Sequence[float], sent: int, now: datetime
) -> ReminderDue | None:
    """The reminder due at ``now``, given ``sent`` already sent in this window. Several
    passed at once (a sweep was late) make one reminder, the latest: each fraction is
    sent at most once, and never one that is already out of date. None at or after the
    deadline: the timeout outcome speaks then."""
    if now >= deadline:
        return None
    times = reminder_times(opened, deadline, fractions)
    passed = [i for i, at in enumerate(times) if at <= now and i >= sent]
    if not passed:
        return None
    index = passed[-1]
    later = times[index + 1 :]
    return ReminderDue(index, index + 1, later[0] if later else None)


def first_reminder_at(
    opened: datetime, deadline: datetime, fractions: Sequence[float]
) -> datetime | None:
    times = reminder_times(opened, deadline, fractions)
    return times[0] if times else None


class Outcome(StrEnum):
    """What the sweep does to an overdue task."""

    EXPIRE = "expire"
    REJECT = "reject"
    ESCALATE = "escalate"
    AUTO_APPROVE = "auto_approve"
    RE_REVIEW = "re_review"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str


def review_timeout_outcome(clocks: Clocks, risk: float, *, escalated: bool) -> Decision:
    """The outcome of a review window closing undecided. Escalation happens once: the
    escalated window closing expires the task. Auto-approval needs the risk strictly below
    the rule's bound; at or above it the task expires."""
    rule = clocks.on_review_timeout
    if rule.action is ReviewTimeout.ESCALATE:
        if escalated:
            return Decision(Outcome.EXPIRE, f"the escalation to {rule.group} also timed out")
        return Decision(Outcome.ESCALATE, f"review timed out: escalated to {rule.group}")
    if rule.action is ReviewTimeout.AUTO_APPROVE:
        assert rule.risk_below is not None  # checked when the rule was built
        if risk < rule.risk_below:
            return Decision(
                Outcome.AUTO_APPROVE,
                f"review timed out; risk {risk} below the bound {rule.risk_below}",
            )
        return Decision(
            Outcome.EXPIRE,
            f"review timed out; risk {risk} not below the auto-approve bound {rule.risk_below}",
        )
    if rule.action is ReviewTimeout.REJECT:
        return Decision(Outcome.REJECT, "review timed out: rejected by policy")
    return Decision(Outcome.EXPIRE, "review timed out")


def approval_timeout_outcome(clocks: Clocks, *, re_reviewed: bool) -> Decision:
    """The outcome of an approval not applied in time. Re-review happens once, so a task
    no one applies cannot cycle between review and approval for ever."""
    if clocks.on_approval_timeout is ApprovalTimeout.RE_REVIEW:
        if re_reviewed:
            return Decision(Outcome.EXPIRE, "the approval after re-review also timed out")
        return Decision(Outcome.RE_REVIEW, "approval timed out: back to review")
    return Decision(Outcome.EXPIRE, "approval timed out")
