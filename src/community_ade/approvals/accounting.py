"""Pure requirement accounting: which vote fills which slot, and why a task is blocked.

architecture §4: "one human act fills at most one slot"; a delegated vote counts as the
delegator's, marked ``via_delegation``. The assignment of votes to slots is a maximum
matching (a vote that could fill either of two groups never blocks the other), computed
as a unit-capacity flow: acts → counted users → slots. Sizes are tiny.

No IO: the caller passes the requirement set, the votes and the memberships.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from community_ade.approvals.policy import (
    ActorKind,
    Requirements,
    Slot,
    check_aware,
    is_eligible,
    why_not_eligible,
)
from community_ade.approvals.risk import parse_enum
from community_ade.errors import InvalidInput


class Decision(StrEnum):
    """A recorded vote. ``request_changes`` dismisses votes and ``delegate`` creates a
    delegation; neither is a vote, so neither appears here."""

    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True, kw_only=True)
class Vote:
    """A recorded vote. A vote with ``via_delegation_for`` is the delegator's vote, derived
    from ``actor``'s approval; ``actor`` and that delegator share one human act."""

    actor: str
    decision: Decision
    via_delegation_for: str | None = None
    at: datetime
    kind: ActorKind = ActorKind.HUMAN

    def __post_init__(self) -> None:
        if not isinstance(self.actor, str) or not self.actor:
            raise InvalidInput("a vote needs an actor")
        object.__setattr__(self, "decision", parse_enum(Decision, self.decision, "decision"))
        object.__setattr__(self, "kind", parse_enum(ActorKind, self.kind, "actor kind"))
        if self.via_delegation_for == self.actor:
            raise InvalidInput(f"{self.actor} cannot vote through a delegation to themselves")
        check_aware(self.at, "a vote's time")

    @property
    def counts_as(self) -> str:
        return self.via_delegation_for or self.actor


@dataclass(frozen=True)
class SlotFill:
    slot: Slot
    vote: Vote
    counted_as: str
    via_delegation: bool


@dataclass(frozen=True)
class IgnoredVote:
    vote: Vote
    reason: str


@dataclass(frozen=True)
class Accounting:
    """Which vote fills which slot, what is still open and why the task is blocked."""

    requirements: Requirements
    fills: tuple[SlotFill, ...]
    open_slots: tuple[Slot, ...]
    approvals: int  # slots filled, all of them counting toward the total
    needed: int
    vetoed: bool
    rejections: tuple[Vote, ...]
    ignored: tuple[IgnoredVote, ...]
    blocked_by: tuple[str, ...]
    satisfied: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "satisfied", not self.vetoed and not self.open_slots)


def _current(votes: Iterable[Vote], ignored: list[IgnoredVote]) -> list[Vote]:
    """The latest vote per (actor, delegator); earlier ones are superseded."""
    latest: dict[tuple[str, str | None], Vote] = {}
    for vote in sorted(votes, key=lambda v: v.at):  # stable: input order breaks ties
        key = (vote.actor, vote.via_delegation_for)
        if key in latest:
            ignored.append(IgnoredVote(latest[key], "superseded by a later vote"))
        latest[key] = vote
    return list(latest.values())


def _ignore_reason(
    requirements: Requirements,
    vote: Vote,
    parties: tuple[str, str | None],
    groups: Mapping[str, Collection[str]],
    roles: Mapping[str, Collection[str]],
) -> str | None:
    if vote.kind is ActorKind.AGENT:
        return "agents never approve"
    if vote.kind is ActorKind.SYSTEM:
        return "the system only auto-approves"
    if vote.via_delegation_for and vote.decision is Decision.REJECT:
        return "a delegation carries approvals only"
    submitter, owner = parties
    for user in dict.fromkeys((vote.actor, vote.counts_as)):
        if user == submitter:
            return f"self review: {user} submitted the task"
        if owner is not None and user == owner:
            return f"self review: {user} owns the submitting agent"
    if not is_eligible(requirements, groups.get(vote.counts_as, ()), roles.get(vote.counts_as, ())):
        return why_not_eligible(requirements, vote.counts_as)
    return None


_Node = tuple[str, str]
_SOURCE: _Node = ("source", "")
_SINK: _Node = ("sink", "")


class _Network:
    """Unit-capacity flow network (acts → counted users → slots), solved by shortest
    augmenting paths. Sizes are a handful of votes × a handful of slots."""

    def __init__(self) -> None:
        self.residual: dict[_Node, dict[_Node, int]] = {}

    def add(self, u: _Node, v: _Node) -> None:
        self.residual.setdefault(u, {})[v] = 1
        self.residual.setdefault(v, {}).setdefault(u, 0)

    def used(self, u: _Node, v: _Node) -> bool:
        return self.residual.get(v, {}).get(u, 0) > 0

    def saturate(self) -> None:
        while (path := self._path()) is not None:
            for u, v in itertools.pairwise(path):
                self.residual[u][v] -= 1
                self.residual[v][u] += 1

    def _path(self) -> list[_Node] | None:
        parent: dict[_Node, _Node] = {_SOURCE: _SOURCE}
        queue = deque([_SOURCE])
        while queue:
            u = queue.popleft()
            for v, capacity in self.residual.get(u, {}).items():
                if capacity > 0 and v not in parent:
                    parent[v] = u
                    if v == _SINK:
                        path = [v]
                        while path[-1] != _SOURCE:
                            path.append(parent[path[-1]])
                        return path[::-1]
                    queue.append(v)
        return None


def _assign(
    requirements: Requirements,
    slots: Sequence[Slot],
    approvals: Sequence[Vote],
    groups: Mapping[str, Collection[str]],
) -> list[SlotFill]:
    """A maximum assignment: each act (actor) fills at most one slot, each counted user at
    most one slot. Group slots are saturated first, then the general ones; augmenting paths
    never empty a filled slot, so the result fills as many group slots as possible and, of
    those assignments, as many slots as possible. Earlier acts win ties."""
    net = _Network()
    acts = sorted(
        {v.actor for v in approvals}, key=lambda a: min(v.at for v in approvals if v.actor == a)
    )
    by_pair = {(v.actor, v.counts_as): v for v in approvals}
    for actor in acts:
        net.add(_SOURCE, ("act", actor))
    for vote in sorted(approvals, key=lambda v: (acts.index(v.actor), v.via_delegation_for or "")):
        user = vote.counts_as
        net.add(("act", vote.actor), ("in", user))
        net.add(("in", user), ("out", user))
        for i, slot in enumerate(slots):
            if requirements.may_fill(slot, groups.get(user, ())):
                net.add(("out", user), ("slot", str(i)))
    for phase in (True, False):
        for i, slot in enumerate(slots):
            if (slot.group is not None) is phase:
                net.add(("slot", str(i)), _SINK)
        net.saturate()
    fills = []
    for i, slot in enumerate(slots):
        if not net.used(("slot", str(i)), _SINK):
            continue
        user = next(u for (_, u) in by_pair if net.used(("out", u), ("slot", str(i))))
        actor = next(a for a in acts if net.used(("act", a), ("in", user)))
        vote = by_pair[(actor, user)]
        fills.append(SlotFill(slot, vote, user, vote.via_delegation_for is not None))
    return fills


def _unused_reason(vote: Vote, fills: Sequence[SlotFill]) -> str:
    for fill in fills:
        if fill.vote.actor == vote.actor:
            return (
                f"one act fills one slot: {vote.actor}'s approval already fills {fill.slot.label}"
            )
        if fill.counted_as == vote.counts_as:
            return f"{vote.counts_as} is already counted in {fill.slot.label}"
    return "no open slot it can fill"


def _blocked_by(
    requirements: Requirements,
    open_slots: Sequence[Slot],
    approvals: int,
    rejections: Sequence[Vote],
) -> list[str]:
    reasons = []
    if rejections:
        reasons.append("rejected by " + ", ".join(dict.fromkeys(v.actor for v in rejections)))
    for g in requirements.groups:
        missing = sum(1 for s in open_slots if s.group == g.group)
        if missing:
            also = f" (or {requirements.escalated_to})" if requirements.escalated_to else ""
            reasons.append(f"needs {missing} more from {g.group}{also}")
    if any(s.group is None for s in open_slots):
        needed = requirements.approvals_needed
        noun = "approval" if needed == 1 else "approvals"
        reasons.append(f"needs {needed} {noun} in total, has {approvals}")
    return reasons


def account(
    requirements: Requirements,
    votes: Iterable[Vote],
    *,
    submitter: str,
    agent_owner: str | None = None,
    groups: Mapping[str, Collection[str]],
    roles: Mapping[str, Collection[str]] | None = None,
) -> Accounting:
    """Account the recorded votes against the requirement set.

    The latest vote per (actor, delegator) counts. Votes that break separation of duties,
    come from agents or the system, or from someone eligible for no slot are ignored, with
    the reason. Any remaining reject is a veto. Delegated rejects are ignored: a delegation
    only says "if X approves, count it as mine".
    """
    roles = roles or {}
    ignored: list[IgnoredVote] = []
    approvals: list[Vote] = []
    rejections: list[Vote] = []
    for vote in _current(votes, ignored):
        reason = _ignore_reason(requirements, vote, (submitter, agent_owner), groups, roles)
        if reason is not None:
            ignored.append(IgnoredVote(vote, reason))
        elif vote.decision is Decision.APPROVE:
            approvals.append(vote)
        else:
            rejections.append(vote)
    slots = requirements.slots()
    fills = _assign(requirements, slots, approvals, groups)
    used = {f.vote for f in fills}
    ignored.extend(IgnoredVote(v, _unused_reason(v, fills)) for v in approvals if v not in used)
    filled = {f.slot for f in fills}
    open_slots = tuple(s for s in slots if s not in filled)
    return Accounting(
        requirements=requirements,
        fills=tuple(fills),
        open_slots=open_slots,
        approvals=len(fills),
        needed=requirements.approvals_needed,
        vetoed=bool(rejections),
        rejections=tuple(rejections),
        ignored=tuple(ignored),
        blocked_by=tuple(_blocked_by(requirements, open_slots, len(fills), rejections)),
    )


@dataclass(frozen=True)
class EligibleReviewers:
    """Who may fill the slots of a requirement set (part of the submit answer).

    ``shortfalls`` says what could not be met even if every eligible reviewer approved
    (a group with too few members besides the submitter): better said at submit than
    found out when the task expires.
    """

    by_group: tuple[tuple[str, tuple[str, ...]], ...]
    any_slot: tuple[str, ...]  # who may fill the general slots; empty when there are none
    shortfalls: tuple[str, ...]


def eligible_reviewers(
    requirements: Requirements,
    groups: Mapping[str, Collection[str]],
    roles: Mapping[str, Collection[str]] | None = None,
    *,
    submitter: str,
    agent_owner: str | None = None,
) -> EligibleReviewers:
    """The eligible humans among ``groups``/``roles`` (the directory), by slot kind.

    Delegation adds no one: a delegated vote still counts as an eligible delegator.
    """
    roles = roles or {}
    users = sorted(u for u in {*groups, *roles} if u not in {submitter, agent_owner})
    eligible = [u for u in users if is_eligible(requirements, groups.get(u, ()), roles.get(u, ()))]
    named = [g.group for g in requirements.groups]
    if requirements.escalated_to is not None and requirements.escalated_to not in named:
        named.append(requirements.escalated_to)
    by_group = tuple((g, tuple(u for u in eligible if g in groups.get(u, ()))) for g in named)
    any_slot = tuple(eligible) if requirements.general_slots else ()
    # Run the real assignment as if every eligible reviewer approved.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    everyone = [Vote(actor=u, decision=Decision.APPROVE, at=epoch) for u in eligible]
    slots = requirements.slots()
    filled = {f.slot for f in _assign(requirements, slots, everyone, groups)}
    missing = [s for s in slots if s not in filled]
    reasons = _blocked_by(requirements, missing, len(filled), ())
    return EligibleReviewers(
        by_group=by_group,
        any_slot=any_slot,
        shortfalls=tuple(f"cannot be met by the eligible reviewers: {r}" for r in reasons),
    )
