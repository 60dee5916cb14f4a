"""Pure approval policy: rules, the requirement set, eligibility, separation of duties.

architecture §4. A task's requirement set is the union of the policy rules that match it and the
risk quorum. Decisions taken where architecture §4 is silent are stated where they are made (the
docstrings below) and collected in ``docs/policies.md``. The risk model lives in
``risk.py`` (re-exported here), vote accounting in ``accounting.py``, delegation in
``delegation.py``.

No IO: callers pass the policy, the memberships and the times.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from types import MappingProxyType

from community_ade.approvals.risk import (
    Action,
    ResourceRef,
    ResourceType,
    RiskInputs,
    RiskScore,
    RiskTable,
    Scope,
    check_percent,
    parse_enum,
    parse_resource_types,
    quorum_for_risk,
    risk_value,
    score_task,
)
from community_ade.approvals.timeouts import (
    ApprovalTimeout,
    Clocks,
    ReviewTimeoutRule,
    check_reminders,
    combine_clocks,
)
from community_ade.errors import FreshAuthRequired, InvalidInput, NotEligible, SelfReview

__all__ = [
    "DEFAULT_TTL",
    "REVIEWER_ROLES",
    "Action",
    "ActorKind",
    "ApplyMode",
    "GroupRequirement",
    "Policy",
    "PolicyRule",
    "Requirements",
    "ResourceRef",
    "ResourceType",
    "RiskInputs",
    "RiskScore",
    "RiskTable",
    "Scope",
    "Slot",
    "apply_mode",
    "check_can_vote",
    "check_eligible",
    "check_fresh_auth",
    "compute_requirements",
    "is_eligible",
    "quorum_for_risk",
    "score_task",
]

DEFAULT_TTL = timedelta(hours=24)
REVIEWER_ROLES = frozenset({"reviewer", "admin"})
"""Roles whose holders may fill the slots that are not tied to a group."""


class ApplyMode(StrEnum):
    """Whether an approved task applies on its own (``auto``) or waits for someone to ask
    (``manual``: ``POST /tasks/{id}/apply``)."""

    AUTO = "auto"
    MANUAL = "manual"


def apply_mode(modes: Mapping[str, ApplyMode], task_type: str) -> ApplyMode:
    """The apply mode of a task type: the entry naming it exactly; else ``manual`` if any
    matching glob says so (the cautious choice when globs disagree); else ``auto``."""
    exact = modes.get(task_type)
    if exact is not None:
        return ApplyMode(exact)
    manual = any(
        ApplyMode(mode) is ApplyMode.MANUAL and task_type_matches((glob,), task_type)
        for glob, mode in modes.items()
    )
    return ApplyMode.MANUAL if manual else ApplyMode.AUTO


class ActorKind(StrEnum):
    HUMAN = "human"
    AGENT = "agent"
    SYSTEM = "system"


def normalize_globs(values: Iterable[str] | str, where: str) -> tuple[str, ...]:
    """Task-type globs: at least one, none empty (``*`` means every type)."""
    items = (values,) if isinstance(values, str) else tuple(values)
    if not items:
        raise InvalidInput(f"{where} needs at least one task type glob (use '*' for every type)")
    for glob in items:
        if not isinstance(glob, str) or not glob.strip():
            raise InvalidInput(f"{where}: a task type glob must be a non-empty string")
    return items


def task_type_matches(globs: Iterable[str], task_type: str) -> bool:
    """Case-sensitive ``fnmatch`` (``fnmatchcase``: the same answer on every platform)."""
    return any(fnmatchcase(task_type, glob) for glob in globs)


def _check_count(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{what} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _check_ttl(value: object, what: str) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidInput(f"{what} must be a positive duration, got {value!r}")


def check_aware(value: object, what: str) -> datetime:
    """Times are compared across processes and databases: naive datetimes are refused."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInput(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value


@dataclass(frozen=True)
class GroupRequirement:
    """``count`` approvals from members of ``group`` ("1 from db-owners")."""

    group: str
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.group, str) or not self.group.strip():
            raise InvalidInput("a reviewer group needs a non-empty name")
        _check_count(self.count, f"the count of group {self.group!r}", 1)


@dataclass(frozen=True)
class PolicyRule:
    """One stored rule. It matches a task when the task type matches one of its globs, the
    task touches one of its resource types (none listed: any), the risk lies in
    ``[risk_min, risk_max]`` (both ends included), and, when ``calls`` are listed, the task
    is a call (``agent.call``: a coding agent's tool call) whose function name matches one
    of them. A TTL left ``None`` defers to the policy default; ``auto_approve_below``
    ``None`` forbids auto-approval. The clock fields (``reminders``, ``on_review_timeout``,
    ``on_approval_timeout``; see ``timeouts.py``) left empty defer to the next matched
    rule, then to "no reminders, expire"."""

    name: str
    task_types: tuple[str, ...]
    resource_types: frozenset[ResourceType] = frozenset()
    risk_min: float = 0.0
    risk_max: float = 100.0
    groups: tuple[GroupRequirement, ...] = ()
    min_total: int = 0
    review_ttl: timedelta | None = None
    approval_ttl: timedelta | None = None
    auto_approve_below: float | None = None
    # Step-up: deciding needs a login at most this old (docs/auth.md).
    fresh_auth: timedelta | None = None
    reminders: tuple[float, ...] = ()
    on_review_timeout: ReviewTimeoutRule | None = None
    on_approval_timeout: ApprovalTimeout | None = None
    # Globs on the called function's name (an ``agent.call`` task's ``function``, e.g. a
    # coding agent's tool: ``Read``, ``Bash``, ``mcp__*``); empty: any task, call or not.
    calls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInput("a policy rule needs a non-empty name")
        where = f"rule {self.name!r}"
        object.__setattr__(self, "task_types", normalize_globs(self.task_types, where))
        if self.calls:
            object.__setattr__(self, "calls", normalize_globs(self.calls, f"{where}: calls"))
        object.__setattr__(self, "resource_types", parse_resource_types(self.resource_types))
        low = check_percent(self.risk_min, f"{where}: risk_min")
        high = check_percent(self.risk_max, f"{where}: risk_max")
        if low > high:
            raise InvalidInput(f"{where}: risk_min ({low}) is above risk_max ({high})")
        object.__setattr__(self, "groups", self._checked_groups(where))
        _check_count(self.min_total, f"{where}: min_total", 0)
        for attr in ("review_ttl", "approval_ttl", "fresh_auth"):
            if getattr(self, attr) is not None:
                _check_ttl(getattr(self, attr), f"{where}: {attr}")
        if self.auto_approve_below is not None:
            check_percent(self.auto_approve_below, f"{where}: auto_approve_below")
        object.__setattr__(self, "reminders", check_reminders(self.reminders, where))
        if self.on_review_timeout is not None and not isinstance(
            self.on_review_timeout, ReviewTimeoutRule
        ):
            raise InvalidInput(f"{where}: on_review_timeout must be a ReviewTimeoutRule")
        if self.on_approval_timeout is not None:
            object.__setattr__(
                self,
                "on_approval_timeout",
                parse_enum(
                    ApprovalTimeout, self.on_approval_timeout, f"{where}: on_approval_timeout"
                ),
            )

    def _checked_groups(self, where: str) -> tuple[GroupRequirement, ...]:
        groups = tuple(self.groups)
        seen: set[str] = set()
        for g in groups:
            if not isinstance(g, GroupRequirement):
                raise InvalidInput(f"{where}: groups must be GroupRequirement, got {g!r}")
            if g.group in seen:  # sum or max? ambiguous, so refused
                raise InvalidInput(f"{where} names group {g.group!r} twice")
            seen.add(g.group)
        return groups

    def matches(
        self,
        task_type: str,
        touched: Collection[ResourceType],
        risk: float,
        call: str | None = None,
    ) -> bool:
        return (
            task_type_matches(self.task_types, task_type)
            and (not self.resource_types or not self.resource_types.isdisjoint(touched))
            and self.risk_min <= risk <= self.risk_max
            and (not self.calls or (call is not None and task_type_matches(self.calls, call)))
        )


@dataclass(frozen=True)
class Policy:
    """One version of the stored policy. Version 0 is the built-in policy with no rules
    (the risk quorum alone, any reviewer). Rule names are unique regardless of case."""

    version: int
    rules: tuple[PolicyRule, ...] = ()
    default_review_ttl: timedelta = DEFAULT_TTL
    default_approval_ttl: timedelta = DEFAULT_TTL
    # Task type (or glob) -> apply mode; types not named apply automatically.
    apply_modes: Mapping[str, ApplyMode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_count(self.version, "the policy version", 0)
        modes = dict(self.apply_modes)
        for glob, mode in modes.items():
            normalize_globs((glob,), "apply")
            modes[glob] = parse_enum(ApplyMode, mode, f"the apply mode of {glob!r}")
        object.__setattr__(self, "apply_modes", MappingProxyType(modes))
        rules = tuple(self.rules)
        seen: set[str] = set()
        for rule in rules:
            if not isinstance(rule, PolicyRule):
                raise InvalidInput(f"a policy holds PolicyRule objects, got {rule!r}")
            key = rule.name.strip().casefold()
            if key in seen:
                raise InvalidInput(f"two rules are named {rule.name!r}: rule names are unique")
            seen.add(key)
        object.__setattr__(self, "rules", rules)
        _check_ttl(self.default_review_ttl, "the default review_ttl")
        _check_ttl(self.default_approval_ttl, "the default approval_ttl")

    def matching(
        self,
        task_type: str,
        resources: Sequence[ResourceRef],
        risk: RiskScore | float,
        call: str | None = None,
    ) -> tuple[PolicyRule, ...]:
        """The rules that match, in policy order (``call``: the function an ``agent.call``
        task calls)."""
        touched = {r.type for r in resources}
        value = risk_value(risk)
        return tuple(rule for rule in self.rules if rule.matches(task_type, touched, value, call))


@dataclass(frozen=True)
class Slot:
    """One approval a task still needs or has: from ``group``, or (``group`` None) from any
    eligible reviewer. ``index`` counts from 1 within its group."""

    group: str | None
    index: int

    @property
    def label(self) -> str:
        return f"{self.group} #{self.index}" if self.group else f"any reviewer #{self.index}"


@dataclass(frozen=True)
class Requirements:
    """What a task needs (architecture §4: the union of the matching rules and the risk quorum).

    ``min_total`` is the largest of the risk quorum and the matched rules' ``min_total``;
    approvals from the group slots count toward it. So the task needs
    ``approvals_needed = max(min_total, sum of group counts)`` approvals: every group slot,
    plus ``general_slots`` more from any eligible reviewer when ``min_total`` is larger.
    """

    policy_version: int
    task_type: str
    risk: float
    matched_rules: tuple[str, ...]
    groups: tuple[GroupRequirement, ...]
    quorum: int
    min_total: int
    review_ttl: timedelta
    approval_ttl: timedelta
    auto_approve_threshold: float | None
    auto_approve: bool
    auto_apply: bool
    fresh_auth: timedelta | None = None  # the shortest a matched rule asks; None: any login
    clocks: Clocks = field(default_factory=Clocks)
    # Set when the review timed out and escalated: this group's members may fill any slot.
    escalated_to: str | None = None

    @property
    def group_slots(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def approvals_needed(self) -> int:
        return max(self.min_total, self.group_slots)

    @property
    def general_slots(self) -> int:
        return self.approvals_needed - self.group_slots

    def may_fill(self, slot: Slot, user_groups: Collection[str]) -> bool:
        """Whether a member of ``user_groups`` (already eligible) may fill ``slot``: any
        general slot; a group slot as a member of its group or of the escalation group."""
        return (
            slot.group is None
            or slot.group in user_groups
            or (self.escalated_to is not None and self.escalated_to in user_groups)
        )

    def slots(self) -> tuple[Slot, ...]:
        """Group slots (groups in name order), then the general ones."""
        by_group = [Slot(g.group, i) for g in self.groups for i in range(1, g.count + 1)]
        return (*by_group, *(Slot(None, i) for i in range(1, self.general_slots + 1)))

    def review_deadline(self, submitted_at: datetime) -> datetime:
        return check_aware(submitted_at, "submitted_at") + self.review_ttl

    def approval_deadline(self, approved_at: datetime) -> datetime:
        return check_aware(approved_at, "approved_at") + self.approval_ttl


def compute_requirements(
    policy: Policy,
    task_type: str,
    resources: Sequence[ResourceRef],
    risk: RiskScore | float,
    call: str | None = None,
) -> Requirements:
    """The requirement set of a task (``call``: the function of an ``agent.call`` task).

    - groups: every group of every matched rule, with the largest count any rule asks;
    - TTLs: the shortest a matched rule sets, else the policy default;
    - auto-approve: only when at least one rule matched, every matched rule sets a
      threshold, and the risk is strictly below the lowest of them;
    - auto-apply: unless the policy's apply modes say ``manual`` for the task type;
    - fresh authentication: the shortest ``fresh_auth`` a matched rule asks.
    """
    if not isinstance(task_type, str) or not task_type.strip():
        raise InvalidInput("a task type must be a non-empty string")
    value = risk_value(risk)
    matched = policy.matching(task_type, resources, value, call)
    counts: dict[str, int] = {}
    for rule in matched:
        for g in rule.groups:
            counts[g.group] = max(counts.get(g.group, 0), g.count)
    quorum = quorum_for_risk(value)
    thresholds = [r.auto_approve_below for r in matched if r.auto_approve_below is not None]
    threshold = min(thresholds) if matched and len(thresholds) == len(matched) else None
    return Requirements(
        policy_version=policy.version,
        task_type=task_type,
        risk=value,
        matched_rules=tuple(r.name for r in matched),
        groups=tuple(GroupRequirement(g, counts[g]) for g in sorted(counts)),
        quorum=quorum,
        min_total=max([quorum, *(r.min_total for r in matched)]),
        review_ttl=min(
            (r.review_ttl for r in matched if r.review_ttl is not None),
            default=policy.default_review_ttl,
        ),
        approval_ttl=min(
            (r.approval_ttl for r in matched if r.approval_ttl is not None),
            default=policy.default_approval_ttl,
        ),
        auto_approve_threshold=threshold,
        auto_approve=threshold is not None and value < threshold,
        auto_apply=apply_mode(policy.apply_modes, task_type) is ApplyMode.AUTO,
        fresh_auth=min((r.fresh_auth for r in matched if r.fresh_auth is not None), default=None),
        clocks=combine_clocks(matched),
    )


def check_fresh_auth(requirements: Requirements, auth_time: datetime | None, now: datetime) -> None:
    """Step-up: ``FreshAuthRequired`` when the task's rules ask for a login at most
    ``fresh_auth`` old and the decider's is older or unknown (an API token)."""
    max_age = requirements.fresh_auth
    if max_age is None:
        return
    if auth_time is not None and now - check_aware(auth_time, "auth_time") <= max_age:
        return
    seconds = int(max_age.total_seconds())
    when = "an API token carries no login" if auth_time is None else "your login is older"
    raise FreshAuthRequired(
        f"deciding on this task needs a login at most {seconds} s old and {when}: "
        "sign in again (the dashboard sends you through your identity provider)",
        max_age=seconds,
        auth_time=auth_time.isoformat() if auth_time is not None else None,
    )


# --- eligibility and separation of duties -------------------------------------------------


def is_eligible(
    requirements: Requirements, user_groups: Collection[str], user_roles: Collection[str] = ()
) -> bool:
    """A human may review when a member of a required group, or, only when the set has
    general slots (``min_total`` beyond the group slots), when a reviewer or admin.
    Being an admin does not fill a group slot. After an escalation, the escalation group's
    members are eligible too."""
    if any(g.group in user_groups for g in requirements.groups):
        return True
    if requirements.escalated_to is not None and requirements.escalated_to in user_groups:
        return True
    return requirements.general_slots > 0 and not REVIEWER_ROLES.isdisjoint(user_roles)


def why_not_eligible(requirements: Requirements, user: str) -> str:
    names = ", ".join(
        [g.group for g in requirements.groups]
        + ([requirements.escalated_to] if requirements.escalated_to else [])
    )
    if requirements.general_slots > 0:
        member = f"a member of {names} nor " if names else ""
        return f"{user} is neither {member}a reviewer or admin"
    return f"{user} is not a member of {names}"


def check_eligible(
    requirements: Requirements,
    actor: str,
    groups: Mapping[str, Collection[str]],
    roles: Mapping[str, Collection[str]] | None = None,
    delegators: Sequence[str] = (),
) -> None:
    """Raise ``NotEligible`` unless the actor, or one of the delegators their vote also
    counts for (see ``delegation.delegations_for_vote``), may fill a slot."""
    roles = roles or {}
    for user in (actor, *delegators):
        if is_eligible(requirements, groups.get(user, ()), roles.get(user, ())):
            return
    raise NotEligible(why_not_eligible(requirements, actor), actor=actor)


def check_can_vote(
    actor: str,
    task_submitter: str,
    agent_owner: str | None,
    actor_kind: ActorKind | str,
    *,
    auto_approval: bool = False,
) -> None:
    """Separation of duties (architecture §4), for every vote, approve or reject.

    Agents never vote; the system only auto-approves (``auto_approval=True``), and only it
    does; the submitter and the owner of the submitting agent never vote on the task.
    """
    kind = parse_enum(ActorKind, actor_kind, "actor kind")
    if kind is ActorKind.SYSTEM:
        if auto_approval:
            return
        raise NotEligible("the system only decides by auto-approval", actor=actor)
    if auto_approval:
        raise NotEligible(f"only the system auto-approves, not {kind} {actor}", actor=actor)
    if kind is ActorKind.AGENT:
        raise NotEligible(f"agent {actor} may not review: agents never approve", actor=actor)
    if actor == task_submitter:
        raise SelfReview(f"{actor} submitted this task and may not review it", actor=actor)
    if agent_owner is not None and actor == agent_owner:
        raise SelfReview(
            f"{actor} owns the agent that submitted this task and may not review it", actor=actor
        )
