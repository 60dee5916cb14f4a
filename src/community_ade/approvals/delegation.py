"""Pure delegation: "if X approves, count it as my vote too" (architecture §4).

A delegation is scoped (task types, resource types, max risk), time-boxed, revocable and
one level deep: only a human's own approval triggers the delegations made *to* them; the
vote it derives for a delegator never triggers that delegator's delegations in turn. It
never works to or for the submitter or the owner of the submitting agent.

No IO: the caller passes the stored delegations and the time of the vote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from community_ade.approvals.policy import check_aware, normalize_globs, task_type_matches
from community_ade.approvals.risk import (
    ResourceRef,
    ResourceType,
    RiskScore,
    check_percent,
    parse_resource_types,
    risk_value,
)
from community_ade.errors import InvalidInput


@dataclass(frozen=True, kw_only=True)
class Delegation:
    """``delegator``'s standing consent that ``delegate``'s approval counts as theirs.

    Active on ``[valid_from, valid_until)`` and before ``revoked_at``. It covers a task when
    the task type matches one of ``task_types``, *every* resource type the task touches is in
    ``resource_types`` (empty: any; a grant of authority does not stretch to resources it
    does not name), and the risk is at most ``max_risk``.
    """

    id: str
    delegator: str
    delegate: str
    task_types: tuple[str, ...] = ("*",)
    resource_types: frozenset[ResourceType] = frozenset()
    max_risk: float = 100.0
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None = None

    def __post_init__(self) -> None:
        for attr in ("id", "delegator", "delegate"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"a delegation needs a non-empty {attr}")
        if self.delegator == self.delegate:
            raise InvalidInput(f"{self.delegator} cannot delegate to themselves")
        where = f"delegation {self.id}"
        object.__setattr__(self, "task_types", normalize_globs(self.task_types, where))
        object.__setattr__(self, "resource_types", parse_resource_types(self.resource_types))
        check_percent(self.max_risk, f"{where}: max_risk")
        check_aware(self.valid_from, f"{where}: valid_from")
        check_aware(self.valid_until, f"{where}: valid_until")
        if self.valid_until <= self.valid_from:
            raise InvalidInput(f"{where}: valid_until must be after valid_from")
        if self.revoked_at is not None:
            check_aware(self.revoked_at, f"{where}: revoked_at")

    def active_at(self, at: datetime) -> bool:
        check_aware(at, "the time of the vote")
        if self.revoked_at is not None and at >= self.revoked_at:
            return False
        return self.valid_from <= at < self.valid_until

    def covers(
        self, task_type: str, resources: Sequence[ResourceRef], risk: RiskScore | float
    ) -> bool:
        touched = {r.type for r in resources}
        return (
            task_type_matches(self.task_types, task_type)
            and (not self.resource_types or touched <= self.resource_types)
            and risk_value(risk) <= self.max_risk
        )

    def revoke(self, at: datetime) -> Delegation:
        """A copy revoked at ``at``; revoking twice keeps the first revocation."""
        check_aware(at, "the time of revocation")
        if self.revoked_at is not None:
            return self
        return dataclasses.replace(self, revoked_at=at)


def applicable_delegations(
    delegations: Iterable[Delegation],
    voter: str,
    task_type: str,
    resources: Sequence[ResourceRef],
    risk: RiskScore | float,
    at: datetime,
    submitter: str,
    agent_owner: str | None,
    *,
    eligible: Callable[[str], bool] | None = None,
) -> list[Delegation]:
    """The delegations ``voter``'s own approval at ``at`` triggers: one per delegator (the
    lowest id when several apply), sorted by delegator.

    Call it for a human's direct approval only: depth 1 means the votes it derives are
    never fed back in. ``eligible`` (e.g. ``policy.is_eligible`` over the delegator's
    groups) keeps only delegators who could fill a slot.
    """
    check_aware(at, "the time of the vote")
    parties = {submitter, agent_owner} - {None}
    if voter in parties:
        return []
    chosen: dict[str, Delegation] = {}
    for d in sorted(delegations, key=lambda d: (d.delegator, d.id)):
        if (
            d.delegate == voter
            and d.delegator not in parties
            and d.delegator not in chosen
            and d.active_at(at)
            and d.covers(task_type, resources, risk)
            and (eligible is None or eligible(d.delegator))
        ):
            chosen[d.delegator] = d
    return list(chosen.values())


def delegations_for_vote(
    delegations: Iterable[Delegation],
    voter: str,
    task_type: str,
    resources: Sequence[ResourceRef],
    risk: RiskScore | float,
    at: datetime,
    submitter: str,
    agent_owner: str | None,
    *,
    eligible: Callable[[str], bool] | None = None,
) -> list[str]:
    """The delegators for whom an approval by ``voter`` also counts (sorted)."""
    found = applicable_delegations(
        delegations,
        voter,
        task_type,
        resources,
        risk,
        at,
        submitter,
        agent_owner,
        eligible=eligible,
    )
    return [d.delegator for d in found]
