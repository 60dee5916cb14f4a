"""Policy rules, requirement sets, eligibility and separation of duties
(``community_ade.approvals.policy``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.approvals.policy import (
    DEFAULT_TTL,
    Action,
    ActorKind,
    GroupRequirement,
    Policy,
    PolicyRule,
    Requirements,
    ResourceRef,
    ResourceType,
    RiskInputs,
    RiskScore,
    Slot,
    apply_mode,
    check_can_vote,
    check_eligible,
    compute_requirements,
    is_eligible,
    quorum_for_risk,
)
from community_ade.errors import InvalidInput, NotEligible, SelfReview

R = ResourceType
H = timedelta(hours=1)
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def res(type_: ResourceType = R.SERVICE, id_: str = "r1") -> ResourceRef:
    return ResourceRef(type=type_, id=id_, actions=(Action.WRITE,))


def rule(name: str = "r", task_types: tuple[str, ...] = ("*",), **kwargs: object) -> PolicyRule:
    return PolicyRule(name, task_types, **kwargs)  # type: ignore[arg-type]


def needs(
    groups: dict[str, int] | None = None, min_total: int = 1, quorum: int = 1
) -> Requirements:
    return Requirements(
        policy_version=1,
        task_type="t",
        risk=0.0,
        matched_rules=(),
        groups=tuple(GroupRequirement(g, c) for g, c in sorted((groups or {}).items())),
        quorum=quorum,
        min_total=min_total,
        review_ttl=DEFAULT_TTL,
        approval_ttl=DEFAULT_TTL,
        auto_approve_threshold=None,
        auto_approve=False,
        auto_apply=False,
    )


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "count", "message"),
    [
        ("", 1, "non-empty name"),
        ("  ", 1, "non-empty name"),
        ("db-owners", 0, "integer ≥ 1"),
        ("db-owners", -1, "integer ≥ 1"),
        ("db-owners", True, "integer ≥ 1"),
        ("db-owners", 1.0, "integer ≥ 1"),
    ],
)
def test_bad_group_requirements(group: str, count: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        GroupRequirement(group, count)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "needs a non-empty name"),
        ({"task_types": ()}, "at least one task type glob"),
        ({"task_types": ("db.*", "")}, "glob must be a non-empty string"),
        ({"resource_types": frozenset({"queue"})}, "unknown resource type"),
        ({"risk_min": -1}, "risk_min must be between 0 and 100"),
        ({"risk_max": 101}, "risk_max must be between 0 and 100"),
        ({"risk_max": float("nan")}, "risk_max"),
        ({"risk_min": 60, "risk_max": 50}, "risk_min \\(60.0\\) is above risk_max"),
        ({"groups": (GroupRequirement("a"), GroupRequirement("a", 2))}, "names group 'a' twice"),
        ({"groups": (("a", 1),)}, "GroupRequirement"),
        ({"min_total": -1}, "min_total must be an integer ≥ 0"),
        ({"review_ttl": timedelta(0)}, "review_ttl must be a positive duration"),
        ({"approval_ttl": -H}, "approval_ttl must be a positive duration"),
        ({"review_ttl": 3600}, "review_ttl must be a positive duration"),
        ({"auto_approve_below": 100.5}, "auto_approve_below"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"name": "r", "task_types": ("*",), **kwargs}
    with pytest.raises(InvalidInput, match=message):
        PolicyRule(**args)  # type: ignore[arg-type]


def test_rules_coerce_what_json_gives() -> None:
    r = PolicyRule("r", "db.*", resource_types={"database", "secret"})  # type: ignore[arg-type]
    assert r.task_types == ("db.*",)
    assert r.resource_types == frozenset({R.DATABASE, R.SECRET})
    assert PolicyRule("r", ["a", "b"]).task_types == ("a", "b")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": -1}, "policy version"),
        ({"version": "3"}, "policy version"),
        ({"rules": (rule("a"), rule("b"), rule("a"))}, "two rules are named 'a'"),
        ({"rules": (rule("DB"), rule(" db "))}, "two rules are named"),
        ({"rules": ("a",)}, "PolicyRule"),
        ({"default_review_ttl": timedelta(0)}, "default review_ttl"),
        ({"default_approval_ttl": -H}, "default approval_ttl"),
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"version": 1, **kwargs}
    with pytest.raises(InvalidInput, match=message):
        Policy(**args)  # type: ignore[arg-type]


def test_policy_takes_a_list_of_rules() -> None:
    policy = Policy(1, [rule("a")])  # type: ignore[arg-type]
    assert policy.rules == (rule("a"),)


# --- matching --------------------------------------------------------------------------------


def test_task_type_globs_are_case_sensitive_fnmatch() -> None:
    r = rule(task_types=("db.*", "git.patc?"))
    assert r.matches("db.migrate", set(), 0)
    assert r.matches("git.patch", set(), 0)
    assert not r.matches("DB.migrate", set(), 0)
    assert not r.matches("git.patches", set(), 0)
    assert not r.matches("files.write", set(), 0)
    assert rule(task_types=("*",)).matches("anything.at.all", set(), 0)


def test_resource_types_match_any_touched_type() -> None:
    r = rule(resource_types=frozenset({R.DATABASE, R.SECRET}))
    assert r.matches("t", {R.SERVICE, R.DATABASE}, 0)
    assert not r.matches("t", {R.SERVICE}, 0)
    assert not r.matches("t", set(), 0)
    assert rule().matches("t", set(), 0)  # no resource types listed: any task


@pytest.mark.parametrize(
    ("risk", "matches"), [(39.9, False), (40, True), (55, True), (60, True), (60.1, False)]
)
def test_risk_range_includes_both_ends(risk: float, matches: bool) -> None:
    assert rule(risk_min=40, risk_max=60).matches("t", set(), risk) is matches


task_types = st.sampled_from(["db.migrate", "db.seed", "git.patch", "files.write", "shell"])
globs = st.sampled_from(["*", "db.*", "git.*", "*.write", "shell", "db.migrat?", "nothing"])
type_sets = st.frozensets(st.sampled_from(list(ResourceType)), max_size=3)
risks = st.floats(min_value=0, max_value=100, allow_nan=False)


@st.composite
def rules_st(draw: st.DrawFn, name: str) -> PolicyRule:
    low = draw(risks)
    high = draw(st.floats(min_value=low, max_value=100, allow_nan=False))
    groups = draw(st.dictionaries(st.sampled_from(["db", "sre", "sec"]), st.integers(1, 3)))
    auto = draw(st.one_of(st.none(), risks))
    ttl = draw(st.one_of(st.none(), st.integers(1, 72).map(lambda h: h * H)))
    return PolicyRule(
        name,
        tuple(draw(st.lists(globs, min_size=1, max_size=2))),
        resource_types=draw(type_sets),
        risk_min=low,
        risk_max=high,
        groups=tuple(GroupRequirement(g, c) for g, c in groups.items()),
        min_total=draw(st.integers(0, 4)),
        review_ttl=ttl,
        approval_ttl=draw(st.one_of(st.none(), st.integers(1, 72).map(lambda h: h * H))),
        auto_approve_below=auto,
    )


@st.composite
def policies_st(draw: st.DrawFn) -> Policy:
    n = draw(st.integers(0, 4))
    return Policy(draw(st.integers(0, 9)), tuple(draw(rules_st(f"rule-{i}")) for i in range(n)))


resources_st = st.lists(
    st.builds(res, st.sampled_from(list(ResourceType)), st.sampled_from(["a", "b", "c"])),
    max_size=4,
)


@given(rules_st("r"), task_types, type_sets, risks)
def test_matching_is_glob_and_types_and_range(
    r: PolicyRule, task_type: str, touched: frozenset[ResourceType], risk: float
) -> None:
    expected = (
        any(fnmatchcase(task_type, g) for g in r.task_types)
        and (not r.resource_types or bool(r.resource_types & touched))
        and r.risk_min <= risk <= r.risk_max
    )
    assert r.matches(task_type, touched, risk) is expected


# --- requirement sets ------------------------------------------------------------------------


def test_no_rule_means_the_risk_quorum_from_any_reviewer() -> None:
    req = compute_requirements(Policy(0), "files.write", [res()], 55)
    assert req.matched_rules == ()
    assert req.groups == ()
    assert req.quorum == 2
    assert req.min_total == 2
    assert req.approvals_needed == 2
    assert req.general_slots == 2
    assert req.slots() == (Slot(None, 1), Slot(None, 2))
    assert (req.review_ttl, req.approval_ttl) == (timedelta(hours=24), timedelta(hours=24))
    assert not req.auto_approve
    assert req.auto_approve_threshold is None
    assert req.auto_apply  # no apply mode set: automatic
    assert req.policy_version == 0
    assert req.task_type == "files.write"
    assert req.risk == 55


def test_requirements_are_the_union_of_matching_rules_and_quorum() -> None:
    policy = Policy(
        7,
        (
            rule("db", ("db.*",), groups=(GroupRequirement("db-owners", 1),), min_total=1),
            rule(
                "big",
                resource_types=frozenset({R.DATABASE}),
                risk_min=50,
                groups=(GroupRequirement("db-owners", 2), GroupRequirement("sre", 1)),
                review_ttl=4 * H,
            ),
            rule("never", ("git.*",), groups=(GroupRequirement("git", 5),)),
            rule("strict", min_total=4, approval_ttl=2 * H),
        ),
        default_review_ttl=48 * H,
    )
    req = compute_requirements(policy, "db.migrate", [res(R.DATABASE)], 80)
    assert req.policy_version == 7
    assert req.matched_rules == ("db", "big", "strict")
    assert req.groups == (GroupRequirement("db-owners", 2), GroupRequirement("sre", 1))
    assert req.quorum == 3
    assert req.min_total == 4  # max(quorum 3, rules 1, 0, 4)
    assert req.group_slots == 3
    assert req.approvals_needed == 4
    assert req.general_slots == 1
    assert req.slots() == (
        Slot("db-owners", 1),
        Slot("db-owners", 2),
        Slot("sre", 1),
        Slot(None, 1),
    )
    assert req.review_ttl == 4 * H  # shortest set by a matched rule
    assert req.approval_ttl == 2 * H
    # Group slots count toward the total: 3 group slots, quorum 2 → no general slot.
    low = compute_requirements(policy.__class__(1, policy.rules[:2]), "db.x", [res(R.DATABASE)], 60)
    assert low.quorum == 2
    assert low.min_total == 2
    assert low.approvals_needed == 3
    assert low.general_slots == 0


def test_ttls_fall_back_to_the_policy_defaults() -> None:
    policy = Policy(1, (rule("a"),), default_review_ttl=3 * H, default_approval_ttl=5 * H)
    req = compute_requirements(policy, "t", [], 0)
    assert (req.review_ttl, req.approval_ttl) == (3 * H, 5 * H)
    # A rule's TTL wins even when longer than the default: it was set on purpose.
    longer = Policy(1, (rule("a", review_ttl=72 * H),), default_review_ttl=3 * H)
    assert compute_requirements(longer, "t", [], 0).review_ttl == 72 * H


def test_deadlines() -> None:
    req = compute_requirements(Policy(1, (rule("a", review_ttl=2 * H),)), "t", [], 0)
    assert req.review_deadline(T0) == T0 + 2 * H
    assert req.approval_deadline(T0) == T0 + DEFAULT_TTL
    with pytest.raises(InvalidInput, match="timezone-aware"):
        req.review_deadline(datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("thresholds", "risk", "auto"),
    [
        ((30,), 29.9, True),
        ((30,), 30, False),  # strictly below
        ((30, 20), 25, False),  # the lowest threshold governs
        ((30, 20), 19.9, True),
        ((30, None), 5, False),  # a matched rule without a threshold forbids it
        ((), 0, False),  # no matched rule: never
    ],
)
def test_auto_approve_needs_every_matched_rule(
    thresholds: tuple[float | None, ...], risk: float, auto: bool
) -> None:
    rules = tuple(rule(f"r{i}", auto_approve_below=t) for i, t in enumerate(thresholds))
    req = compute_requirements(Policy(1, rules), "t", [], risk)
    assert req.auto_approve is auto
    if thresholds and None not in thresholds:
        assert req.auto_approve_threshold == min(t for t in thresholds if t is not None)
    else:
        assert req.auto_approve_threshold is None


@pytest.mark.parametrize(
    ("modes", "task_type", "mode"),
    [
        ({}, "shell", "auto"),
        ({"shell": "manual"}, "shell", "manual"),
        ({"shell": "manual"}, "files.write", "auto"),
        ({"*": "manual"}, "files.write", "manual"),
        ({"*": "manual", "files.write": "auto"}, "files.write", "auto"),
        ({"files.*": "auto", "*.write": "manual"}, "files.write", "manual"),
        ({"files.*": "auto"}, "files.write", "auto"),
        ({"Shell": "manual"}, "shell", "auto"),
    ],
)
def test_apply_mode_exact_name_wins_then_any_manual_glob(
    modes: dict[str, str], task_type: str, mode: str
) -> None:
    policy = Policy(1, apply_modes=modes)  # type: ignore[arg-type]
    assert apply_mode(policy.apply_modes, task_type) == mode
    req = compute_requirements(policy, task_type, [], 0)
    assert req.auto_apply is (mode == "auto")


@pytest.mark.parametrize(
    ("modes", "message"),
    [({"shell": "later"}, "apply mode"), ({"": "manual"}, "glob")],
)
def test_bad_apply_modes_are_refused(modes: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Policy(1, apply_modes=modes)  # type: ignore[arg-type]


def test_non_matching_rules_do_not_count() -> None:
    policy = Policy(
        1,
        (
            rule("auto", ("files.*",), auto_approve_below=50),
            rule("db", resource_types=frozenset({R.DATABASE}), groups=(GroupRequirement("db"),)),
        ),
    )
    req = compute_requirements(policy, "files.write", [res(R.STORAGE)], 10)
    assert req.matched_rules == ("auto",)
    assert req.auto_approve
    assert req.groups == ()
    touching_db = compute_requirements(policy, "files.write", [res(R.DATABASE)], 10)
    assert touching_db.matched_rules == ("auto", "db")
    assert not touching_db.auto_approve


def test_risk_score_objects_are_accepted() -> None:
    score = RiskScore(RiskInputs(100, 100, 24.8, 0))  # 75.0
    req = compute_requirements(Policy(1), "t", [], score)
    assert req.risk == 75.0
    assert req.quorum == 3


@pytest.mark.parametrize(
    ("task_type", "risk", "message"),
    [("", 10, "task type"), (" ", 10, "task type"), ("t", 101, "risk"), ("t", -1, "risk")],
)
def test_compute_requirements_refuses_bad_input(task_type: str, risk: float, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        compute_requirements(Policy(1), task_type, [], risk)


@given(policies_st(), task_types, resources_st, risks)
def test_requirements_union_semantics(
    policy: Policy, task_type: str, resources: list[ResourceRef], risk: float
) -> None:
    req = compute_requirements(policy, task_type, resources, risk)
    touched = {r.type for r in resources}
    matched = [r for r in policy.rules if r.matches(task_type, touched, risk)]
    assert req.matched_rules == tuple(r.name for r in matched)
    wanted: dict[str, int] = {}
    for r in matched:
        for g in r.groups:
            wanted[g.group] = max(wanted.get(g.group, 0), g.count)
    assert dict((g.group, g.count) for g in req.groups) == wanted
    assert [g.group for g in req.groups] == sorted(wanted)
    assert req.quorum == quorum_for_risk(risk)
    assert req.min_total == max([req.quorum] + [r.min_total for r in matched])
    # Every matched rule and the quorum are satisfied by the slots.
    assert req.approvals_needed >= req.quorum
    assert all(req.approvals_needed >= r.min_total for r in matched)
    assert req.approvals_needed == max(req.min_total, sum(wanted.values()))
    assert len(req.slots()) == req.approvals_needed
    for r in matched:
        if r.review_ttl is not None:
            assert req.review_ttl <= r.review_ttl
        if r.approval_ttl is not None:
            assert req.approval_ttl <= r.approval_ttl
    if req.auto_approve:
        assert matched
        assert all(
            r.auto_approve_below is not None and risk < r.auto_approve_below for r in matched
        )
    assert req.auto_apply  # the generated policies set no apply modes


# --- eligibility -----------------------------------------------------------------------------


def test_group_members_are_eligible() -> None:
    req = needs({"db": 1})
    assert is_eligible(req, {"db"})
    assert is_eligible(req, {"db", "other"}, {"viewer"})
    assert not is_eligible(req, {"other"})


def test_reviewers_and_admins_are_eligible_only_for_general_slots() -> None:
    only_groups = needs({"db": 2}, min_total=2)
    assert only_groups.general_slots == 0
    assert not is_eligible(only_groups, set(), {"admin"})
    assert not is_eligible(only_groups, set(), {"reviewer"})
    with_general = needs({"db": 1}, min_total=3)
    assert is_eligible(with_general, set(), {"reviewer"})
    assert is_eligible(with_general, set(), {"admin"})
    assert not is_eligible(with_general, set(), {"submitter", "viewer"})
    assert is_eligible(needs(), set(), {"reviewer"})  # quorum only: any reviewer


def test_check_eligible_names_what_is_missing() -> None:
    req = needs({"db-owners": 1, "sre": 1}, min_total=2)
    with pytest.raises(NotEligible, match="carol is not a member of db-owners, sre") as info:
        check_eligible(req, "carol", {"carol": {"web"}}, {"carol": {"reviewer"}})
    assert info.value.code == "not_eligible"
    general = needs({"db-owners": 1}, min_total=2)
    with pytest.raises(NotEligible, match="neither a member of db-owners nor a reviewer or admin"):
        check_eligible(general, "carol", {}, {})
    with pytest.raises(NotEligible, match="carol is neither a reviewer or admin"):
        check_eligible(needs(), "carol", {}, {"carol": {"viewer"}})
    check_eligible(general, "carol", {}, {"carol": {"reviewer"}})


def test_check_eligible_through_a_delegator() -> None:
    req = needs({"db": 1})
    check_eligible(req, "x", {"d": {"db"}}, delegators=["d"])
    with pytest.raises(NotEligible):
        check_eligible(req, "x", {"d": {"web"}}, delegators=["d"])


# --- separation of duties --------------------------------------------------------------------


def test_humans_who_are_not_parties_may_vote() -> None:
    check_can_vote("carol", "alice", "bob", "human")
    check_can_vote("carol", "alice", None, ActorKind.HUMAN)


def test_the_submitter_never_votes() -> None:
    with pytest.raises(SelfReview, match="alice submitted this task") as info:
        check_can_vote("alice", "alice", None, ActorKind.HUMAN)
    assert info.value.code == "self_review"
    assert isinstance(info.value, NotEligible)


def test_the_owner_of_the_submitting_agent_never_votes() -> None:
    with pytest.raises(SelfReview, match="bob owns the agent"):
        check_can_vote("bob", "agent-7", "bob", ActorKind.HUMAN)


def test_agents_never_vote() -> None:
    with pytest.raises(NotEligible, match="agents never approve") as info:
        check_can_vote("agent-9", "alice", None, ActorKind.AGENT)
    assert not isinstance(info.value, SelfReview)
    with pytest.raises(NotEligible, match="agents never approve"):
        check_can_vote("agent-7", "agent-7", "bob", "agent")


def test_only_the_system_auto_approves() -> None:
    check_can_vote("system", "alice", "bob", ActorKind.SYSTEM, auto_approval=True)
    with pytest.raises(NotEligible, match="only decides by auto-approval"):
        check_can_vote("system", "alice", None, ActorKind.SYSTEM)
    with pytest.raises(NotEligible, match="only the system auto-approves"):
        check_can_vote("carol", "alice", None, ActorKind.HUMAN, auto_approval=True)
    with pytest.raises(NotEligible, match="only the system auto-approves"):
        check_can_vote("agent-1", "alice", None, ActorKind.AGENT, auto_approval=True)


def test_unknown_actor_kind() -> None:
    with pytest.raises(InvalidInput, match="unknown actor kind 'robot'"):
        check_can_vote("x", "alice", None, "robot")


@given(
    st.sampled_from(["alice", "bob", "carol", "agent-1"]),
    st.sampled_from(["alice", "agent-1"]),
    st.sampled_from(["bob", None]),
    st.sampled_from(list(ActorKind)),
    st.booleans(),
)
def test_separation_of_duties_matrix(
    actor: str, submitter: str, owner: str | None, kind: ActorKind, auto: bool
) -> None:
    allowed = (kind is ActorKind.SYSTEM and auto) or (
        kind is ActorKind.HUMAN and not auto and actor not in {submitter, owner}
    )
    try:
        check_can_vote(actor, submitter, owner, kind, auto_approval=auto)
    except SelfReview:
        assert kind is ActorKind.HUMAN
        assert not auto
        assert actor in {submitter, owner}
    except NotEligible:
        assert not allowed
    else:
        assert allowed


# -- calls: rules on the function an agent.call calls (the coding-agent hooks) --------


def _call_rule(*calls: str) -> PolicyRule:
    return PolicyRule(name="reads", task_types=("agent.call",), calls=calls, auto_approve_below=100)


@pytest.mark.parametrize(
    ("calls", "call", "matches"),
    [
        (("Read", "Grep"), "Read", True),
        (("Read", "Grep"), "Bash", False),
        (("Read",), "read", False),  # case-sensitive, like task types
        (("mcp__*",), "mcp__github__create_issue", True),
        (("mcp__github__*",), "mcp__slack__post", False),
        (("Read",), None, False),  # a rule on calls never matches a task that is no call
        ((), None, True),  # no calls listed: any task
        ((), "Bash", True),
    ],
)
def test_a_rule_matches_the_called_function_by_glob(
    calls: tuple[str, ...], call: str | None, matches: bool
) -> None:
    rule = PolicyRule(name="r", task_types=("agent.call",), calls=calls)
    assert rule.matches("agent.call", set(), 10.0, call) is matches


def test_an_empty_call_glob_is_refused() -> None:
    with pytest.raises(InvalidInput, match="calls"):
        _call_rule("Read", " ")


def test_requirements_auto_approve_only_the_calls_a_rule_names() -> None:
    policy = Policy(version=1, rules=(_call_rule("Read", "Grep"),))
    read = compute_requirements(policy, "agent.call", [], 5.0, "Read")
    bash = compute_requirements(policy, "agent.call", [], 5.0, "Bash")
    assert read.auto_approve
    assert read.matched_rules == ("reads",)
    assert not bash.auto_approve
    assert bash.matched_rules == ()
    assert bash.approvals_needed == 1  # the risk quorum: one reviewer


def test_the_builtin_policy_lets_read_only_agent_tools_through() -> None:
    from community_ade.approvals.policy_document import builtin_policy_document

    policy = builtin_policy_document().to_policy(0)
    for tool in ("Read", "Grep", "Glob", "LS", "ReadFile"):
        assert compute_requirements(policy, "agent.call", [], 0.0, tool).auto_approve
    for tool in ("Bash", "Write", "Edit", "MultiEdit", "NotebookEdit", "Shell", "mcp__x__y"):
        assert not compute_requirements(policy, "agent.call", [], 0.0, tool).auto_approve
    # Only agent.call: another task type is never auto-approved by it.
    assert not compute_requirements(policy, "files.write", [], 0.0, "Read").auto_approve
