"""Pure task lifecycle: the states, the triggers and the transition table of architecture §3.

No IO here. The service checks a trigger's guard (validation, quorum, TTL, locks) and
then asks ``next_state`` where the task goes; anything not in the table is refused with
``InvalidTransition`` (``409 invalid_transition`` over HTTP). Keeping the table as data
lets the tests check every state × trigger pair, and the dashboard show what is possible.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from community_ade.errors import InvalidTransition


class TaskState(StrEnum):
    DRAFT = "DRAFT"
    SUBMITTED = "SUBMITTED"
    REVIEWING = "REVIEWING"
    APPROVED = "APPROVED"
    APPLYING = "APPLYING"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"


class Trigger(StrEnum):
    """Why a task moves. Each trigger's guard is checked by the service, not here."""

    # Validation passed; preview, digest, risk and requirements stored.
    SUBMIT = "submit"
    # Submit, when policy auto-approves: a decision recorded by actor ``system``.
    AUTO_APPROVE = "auto_approve"
    # The first review was recorded and did not by itself decide the task.
    FIRST_REVIEW = "first_review"
    # Every requirement (rules and risk quorum) is satisfied.
    REQUIREMENTS_MET = "requirements_met"
    # An eligible reviewer rejected: a veto.
    REJECT = "reject"
    # A reviewer asked for changes; all votes are dismissed.
    REQUEST_CHANGES = "request_changes"
    # ``review_ttl`` passed before a decision.
    REVIEW_EXPIRED = "review_expired"
    # ``review_ttl`` passed and the rule's ``on_review_timeout`` is ``reject``.
    REVIEW_TIMEOUT_REJECT = "review_timeout_reject"
    # ``review_ttl`` passed, the rule's ``on_review_timeout`` is ``auto_approve`` and the
    # risk is below its bound: a decision recorded by actor ``system``.
    REVIEW_TIMEOUT_APPROVE = "review_timeout_approve"
    # A worker holds all locks and the digest and precondition fingerprint still match.
    START_APPLY = "start_apply"
    # At apply, the preconditions moved: new preview, votes on the old digest go stale.
    PRECONDITIONS_MOVED = "preconditions_moved"
    # ``approval_ttl`` passed without an apply.
    APPROVAL_EXPIRED = "approval_expired"
    # ``approval_ttl`` passed and the rule's ``on_approval_timeout`` is ``re_review``
    # (once): votes go stale, a new review deadline runs.
    APPROVAL_RE_REVIEW = "approval_re_review"
    # The apply succeeded.
    APPLY_SUCCEEDED = "apply_succeeded"
    # A transient failure with attempts left: re-queued with backoff.
    APPLY_RETRY = "apply_retry"
    # The apply failed for good; rollback ran and its outcome is recorded.
    APPLY_FAILED = "apply_failed"
    # The submitter or an admin cancelled before apply began.
    CANCEL = "cancel"


_S = TaskState
_OPEN = (_S.SUBMITTED, _S.REVIEWING)

# architecture §3, one row per line of its table: (from states, trigger, to state).
_TABLE: tuple[tuple[tuple[TaskState, ...], Trigger, TaskState], ...] = (
    ((_S.DRAFT,), Trigger.SUBMIT, _S.SUBMITTED),
    ((_S.DRAFT,), Trigger.AUTO_APPROVE, _S.APPROVED),
    ((_S.SUBMITTED,), Trigger.FIRST_REVIEW, _S.REVIEWING),
    (_OPEN, Trigger.REQUIREMENTS_MET, _S.APPROVED),
    (_OPEN, Trigger.REJECT, _S.REJECTED),
    (_OPEN, Trigger.REQUEST_CHANGES, _S.DRAFT),
    (_OPEN, Trigger.REVIEW_EXPIRED, _S.EXPIRED),
    (_OPEN, Trigger.REVIEW_TIMEOUT_REJECT, _S.REJECTED),
    (_OPEN, Trigger.REVIEW_TIMEOUT_APPROVE, _S.APPROVED),
    ((_S.APPROVED,), Trigger.START_APPLY, _S.APPLYING),
    ((_S.APPROVED,), Trigger.PRECONDITIONS_MOVED, _S.SUBMITTED),
    ((_S.APPROVED,), Trigger.APPROVAL_EXPIRED, _S.EXPIRED),
    ((_S.APPROVED,), Trigger.APPROVAL_RE_REVIEW, _S.SUBMITTED),
    ((_S.APPLYING,), Trigger.APPLY_SUCCEEDED, _S.COMPLETED),
    ((_S.APPLYING,), Trigger.APPLY_RETRY, _S.APPROVED),
    ((_S.APPLYING,), Trigger.APPLY_FAILED, _S.FAILED),
    # "DRAFT…APPROVED": not APPLYING, where a worker holds the locks and owns the outcome.
    ((_S.DRAFT, *_OPEN, _S.APPROVED), Trigger.CANCEL, _S.CANCELLED),
)

#: Every edge of the lifecycle: ``(from_state, trigger) -> to_state``.
TRANSITIONS: Mapping[tuple[TaskState, Trigger], TaskState] = MappingProxyType(
    {(source, trigger): target for sources, trigger, target in _TABLE for source in sources}
)

_ALLOWED: Mapping[TaskState, frozenset[Trigger]] = MappingProxyType(
    {state: frozenset(t for (s, t) in TRANSITIONS if s is state) for state in TaskState}
)

TERMINAL_STATES = frozenset({_S.COMPLETED, _S.REJECTED, _S.CANCELLED, _S.EXPIRED, _S.FAILED})
#: Awaiting review: reviews are accepted and ``review_ttl`` runs.
OPEN_FOR_REVIEW = frozenset(_OPEN)
#: The submitter or an admin may still cancel.
CANCELLABLE = frozenset(s for (s, t) in TRANSITIONS if t is Trigger.CANCEL)


def allowed_triggers(state: TaskState) -> frozenset[Trigger]:
    """The triggers that move a task out of ``state`` (none for a terminal state)."""
    return _ALLOWED[state]


def is_terminal(state: TaskState) -> bool:
    return state in TERMINAL_STATES


def next_state(state: TaskState, trigger: Trigger) -> TaskState:
    """Where ``trigger`` takes a task in ``state``.

    Raises:
        InvalidTransition: the table has no such edge; the error names the triggers that
            are allowed from ``state``, so a client can tell what it may do instead.
    """
    target = TRANSITIONS.get((state, trigger))
    if target is None:
        allowed = [t.value for t in Trigger if t in _ALLOWED[state]]
        options = ", ".join(allowed) if allowed else "none, the state is final"
        raise InvalidTransition(
            f"a task in state {state.value} cannot take trigger {trigger.value!r}; "
            f"allowed from {state.value}: {options}",
            state=state.value,
            trigger=trigger.value,
            allowed=allowed,
        )
    return target
