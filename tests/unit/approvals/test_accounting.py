"""Requirement accounting (``community_ade.approvals.accounting``): which vote fills which
slot, vetoes, one act one slot, delegated votes, and optimality against brute force."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from community_ade.approvals.accounting import (
    Accounting,
    Decision,
    Vote,
    account,
    eligible_reviewers,
)
from community_ade.approvals.policy import (
    DEFAULT_TTL,
    REVIEWER_ROLES,
    ActorKind,
    GroupRequirement,
    Requirements,
    Slot,
)
from community_ade.errors import InvalidInput

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
A = Decision.APPROVE
X = Decision.REJECT


def needs(groups: dict[str, int] | None = None, min_total: int = 1) -> Requirements:
    return Requirements(
        policy_version=1,
        task_type="t",
        risk=0.0,
        matched_rules=(),
        groups=tuple(GroupRequirement(g, c) for g, c in sorted((groups or {}).items())),
        quorum=1,
        min_total=min_total,
        review_ttl=DEFAULT_TTL,
        approval_ttl=DEFAULT_TTL,
        auto_approve_threshold=None,
        auto_approve=False,
        auto_apply=False,
    )


def vote(
    actor: str,
    decision: Decision = A,
    minute: int = 0,
    via: str | None = None,
    kind: ActorKind = ActorKind.HUMAN,
) -> Vote:
    return Vote(
        actor=actor,
        decision=decision,
        via_delegation_for=via,
        at=T0 + timedelta(minutes=minute),
        kind=kind,
    )


def run(
    req: Requirements,
    votes: Sequence[Vote],
    groups: Mapping[str, Collection[str]],
    roles: Mapping[str, Collection[str]] | None = None,
    submitter: str = "sub",
    owner: str | None = "owner",
) -> Accounting:
    return account(req, votes, submitter=submitter, agent_owner=owner, groups=groups, roles=roles)


def where(acc: Accounting) -> dict[str, str]:
    """slot label → 'counted_as' (+ ' via actor')."""
    return {
        f.slot.label: f.counted_as + (f" via {f.vote.actor}" if f.via_delegation else "")
        for f in acc.fills
    }


def reasons(acc: Accounting) -> dict[tuple[str, str | None], str]:
    return {(i.vote.actor, i.vote.via_delegation_for): i.reason for i in acc.ignored}


# --- votes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"actor": ""}, "needs an actor"),
        ({"decision": "maybe"}, "unknown decision"),
        ({"kind": "robot"}, "unknown actor kind"),
        ({"via_delegation_for": "alice"}, "delegation to themselves"),
        ({"at": datetime(2025, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_votes_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"actor": "alice", "decision": "approve", "at": T0, **kwargs}
    with pytest.raises(InvalidInput, match=message):
        Vote(**args)  # type: ignore[arg-type]


def test_votes_accept_strings() -> None:
    v = Vote(actor="a", decision="reject", at=T0, kind="human")  # type: ignore[arg-type]
    assert v.decision is X
    assert v.kind is ActorKind.HUMAN
    assert v.counts_as == "a"


# --- filling slots ---------------------------------------------------------------------------


def test_a_member_fills_the_group_slot() -> None:
    acc = run(needs({"db-owners": 1}), [vote("alice")], {"alice": {"db-owners"}})
    assert acc.satisfied
    assert not acc.vetoed
    assert where(acc) == {"db-owners #1": "alice"}
    assert acc.open_slots == ()
    assert acc.blocked_by == ()
    assert (acc.approvals, acc.needed) == (1, 1)


def test_nothing_voted_yet() -> None:
    acc = run(needs({"db-owners": 1}, min_total=2), [], {})
    assert not acc.satisfied
    assert acc.open_slots == (Slot("db-owners", 1), Slot(None, 1))
    assert acc.blocked_by == ("needs 1 more from db-owners", "needs 2 approvals in total, has 0")


def test_a_vote_that_fits_two_groups_does_not_block_the_other() -> None:
    # Greedy in vote order would give alice the db slot and leave bob nothing.
    groups = {"alice": {"db", "sre"}, "bob": {"db"}}
    acc = run(needs({"db": 1, "sre": 1}), [vote("alice", minute=0), vote("bob", minute=1)], groups)
    assert acc.satisfied
    assert where(acc) == {"db #1": "bob", "sre #1": "alice"}


def test_one_act_fills_one_slot() -> None:
    acc = run(needs({"db": 1, "sre": 1}), [vote("alice")], {"alice": {"db", "sre"}})
    assert not acc.satisfied
    assert acc.approvals == 1
    assert acc.blocked_by == ("needs 1 more from sre",)


def test_group_slots_are_filled_before_general_ones() -> None:
    req = needs({"db": 1}, min_total=2)
    acc = run(req, [vote("alice")], {"alice": {"db"}})
    assert where(acc) == {"db #1": "alice"}
    assert acc.blocked_by == ("needs 2 approvals in total, has 1",)
    # A reviewer who came first cannot take the db slot; alice still gets it.
    acc = run(
        req,
        [vote("carol", minute=0), vote("alice", minute=1)],
        {"alice": {"db"}},
        {"carol": {"reviewer"}},
    )
    assert acc.satisfied
    assert where(acc) == {"db #1": "alice", "any reviewer #1": "carol"}


def test_group_approvals_count_toward_the_total() -> None:
    req = needs({"db": 1}, min_total=3)
    groups = {"alice": {"db"}, "bob": {"db"}}
    roles = {"carol": {"reviewer"}, "dave": {"admin"}}
    acc = run(req, [vote("alice")], groups, roles)
    assert acc.blocked_by == ("needs 3 approvals in total, has 1",)
    acc = run(req, [vote("alice"), vote("carol", minute=1)], groups, roles)
    assert acc.blocked_by == ("needs 3 approvals in total, has 2",)
    acc = run(req, [vote("alice"), vote("carol", minute=1), vote("bob", minute=2)], groups, roles)
    assert acc.satisfied
    assert acc.approvals == 3
    assert where(acc) == {"db #1": "alice", "any reviewer #1": "carol", "any reviewer #2": "bob"}


def test_singular_wording() -> None:
    acc = run(needs(), [], {})
    assert acc.blocked_by == ("needs 1 approval in total, has 0",)


def test_reviewers_do_not_fill_group_slots_and_surplus_is_explained() -> None:
    req = needs({"db": 2}, min_total=2)
    roles = {"carol": {"admin"}}
    acc = run(
        req, [vote("alice"), vote("carol"), vote("bob")], {"alice": {"db"}, "bob": {"db"}}, roles
    )
    assert acc.satisfied
    assert reasons(acc) == {("carol", None): "carol is not a member of db"}
    acc = run(
        needs({"db": 1}),
        [vote("alice"), vote("bob", minute=1)],
        {"alice": {"db"}, "bob": {"db"}},
    )
    assert where(acc) == {"db #1": "alice"}
    assert reasons(acc) == {("bob", None): "no open slot it can fill"}


# --- vetoes ----------------------------------------------------------------------------------


def test_an_eligible_reject_is_a_veto() -> None:
    req = needs({"db": 1})
    groups = {"alice": {"db"}, "bob": {"db"}}
    acc = run(req, [vote("alice"), vote("bob", X)], groups)
    assert acc.vetoed
    assert not acc.satisfied
    assert acc.approvals == 1
    assert acc.open_slots == ()
    assert acc.blocked_by == ("rejected by bob",)
    assert [v.actor for v in acc.rejections] == ["bob"]


def test_rejects_that_do_not_count() -> None:
    req = needs({"db": 1})
    groups = {"alice": {"db"}, "sub": {"db"}, "owner": {"db"}}
    votes = [
        vote("alice"),
        vote("carol", X),  # not eligible
        vote("sub", X),  # the submitter
        vote("owner", X),  # the agent's owner
        vote("bot", X, kind=ActorKind.AGENT),
        vote("bob", X, via="alice"),  # a delegation carries approvals only
    ]
    acc = run(req, votes, {**groups, "bot": {"db"}, "bob": {"db"}})
    assert acc.satisfied
    assert not acc.vetoed
    assert reasons(acc) == {
        ("carol", None): "carol is not a member of db",
        ("sub", None): "self review: sub submitted the task",
        ("owner", None): "self review: owner owns the submitting agent",
        ("bot", None): "agents never approve",
        ("bob", "alice"): "a delegation carries approvals only",
    }


def test_the_latest_vote_of_an_actor_counts() -> None:
    req = needs({"db": 1})
    groups = {"alice": {"db"}}
    late_reject = [vote("alice", X, minute=5), vote("alice", A, minute=1)]  # input order ≠ time
    acc = run(req, late_reject, groups)
    assert acc.vetoed
    assert acc.approvals == 0
    assert [(i.vote.decision, i.reason) for i in acc.ignored] == [(A, "superseded by a later vote")]
    changed_mind = [vote("alice", X, minute=1), vote("alice", A, minute=5)]
    acc = run(req, changed_mind, groups)
    assert acc.satisfied
    assert not acc.vetoed


def test_agent_and_system_approvals_never_count() -> None:
    groups = {"bot": {"db"}, "system": {"db"}}
    votes = [vote("bot", kind=ActorKind.AGENT), vote("system", kind=ActorKind.SYSTEM)]
    acc = run(needs({"db": 1}), votes, groups, {"bot": {"admin"}, "system": {"admin"}})
    assert acc.approvals == 0
    assert set(reasons(acc).values()) == {"agents never approve", "the system only auto-approves"}


# --- delegated votes -------------------------------------------------------------------------


def test_a_delegated_vote_fills_the_delegators_slot() -> None:
    # x is not in db; d is, and delegated to x.
    acc = run(needs({"db": 1}), [vote("x"), vote("x", via="d")], {"d": {"db"}})
    assert acc.satisfied
    assert where(acc) == {"db #1": "d via x"}
    fill = acc.fills[0]
    assert fill.via_delegation
    assert fill.counted_as == "d"
    assert fill.vote.actor == "x"
    assert reasons(acc) == {("x", None): "x is not a member of db"}


def test_own_and_delegated_vote_are_one_act() -> None:
    req = needs({"db": 1}, min_total=2)
    acc = run(req, [vote("x"), vote("x", via="d")], {"d": {"db"}}, {"x": {"reviewer"}})
    assert acc.approvals == 1
    assert where(acc) == {"db #1": "d via x"}
    assert reasons(acc) == {("x", None): "one act fills one slot: x's approval already fills db #1"}
    assert acc.blocked_by == ("needs 2 approvals in total, has 1",)


def test_a_delegator_is_counted_once() -> None:
    req = needs({"db": 1}, min_total=2)
    acc = run(req, [vote("d", minute=0), vote("x", via="d", minute=1)], {"d": {"db"}})
    assert acc.approvals == 1
    assert where(acc) == {"db #1": "d"}
    assert reasons(acc) == {("x", "d"): "d is already counted in db #1"}


def test_delegation_is_used_where_it_helps() -> None:
    # x could fill sre itself or db for d; y can only fill sre. Optimal: x for d, y for sre.
    groups = {"x": {"sre"}, "y": {"sre"}, "d": {"db"}}
    votes = [vote("x", minute=0), vote("x", via="d", minute=0), vote("y", minute=1)]
    acc = run(needs({"db": 1, "sre": 1}), votes, groups)
    assert acc.satisfied
    assert where(acc) == {"db #1": "d via x", "sre #1": "y"}


def test_no_vote_is_created_for_the_submitter_through_delegation() -> None:
    # d submitted the task and had delegated to x: x's approval counts as x's only.
    groups = {"d": {"db"}, "x": {"web"}, "owner": {"db"}}
    votes = [vote("x"), vote("x", via="d"), vote("x", via="owner")]
    acc = run(needs({"db": 1}), votes, groups, submitter="d", owner="owner")
    assert acc.approvals == 0
    assert reasons(acc)[("x", "d")] == "self review: d submitted the task"
    assert reasons(acc)[("x", "owner")] == "self review: owner owns the submitting agent"
    # The submitter acting as someone's delegate does not count either.
    acc = run(needs({"db": 1}), [vote("d", via="e")], {"e": {"db"}}, submitter="d")
    assert reasons(acc) == {("d", "e"): "self review: d submitted the task"}


def test_delegated_vote_for_an_ineligible_delegator_is_ignored() -> None:
    acc = run(needs({"db": 1}), [vote("x", via="d")], {"d": {"web"}})
    assert acc.approvals == 0
    assert reasons(acc) == {("x", "d"): "d is not a member of db"}


# --- eligible reviewers ----------------------------------------------------------------------


def test_eligible_reviewers_by_slot() -> None:
    req = needs({"db": 1, "sre": 1}, min_total=3)
    groups = {"alice": {"db"}, "bob": {"db"}, "carol": {"sre"}, "eve": {"web"}}
    roles = {"dave": {"reviewer"}, "eve": {"viewer"}, "owner": {"admin"}}
    found = eligible_reviewers(req, groups, roles, submitter="alice", agent_owner="owner")
    assert found.by_group == (("db", ("bob",)), ("sre", ("carol",)))
    assert found.any_slot == ("bob", "carol", "dave")
    assert found.shortfalls == ()


def test_eligible_reviewers_warns_when_a_requirement_cannot_be_met() -> None:
    # Only the submitter is in db; frank is in both groups but is one person.
    req = needs({"db": 1, "sre": 1})
    found = eligible_reviewers(req, {"alice": {"db"}, "frank": {"db", "sre"}}, submitter="alice")
    assert found.any_slot == ()
    assert found.shortfalls == ("cannot be met by the eligible reviewers: needs 1 more from sre",)
    found = eligible_reviewers(needs(min_total=2), {}, {"r": {"reviewer"}}, submitter="s")
    assert found.shortfalls == (
        "cannot be met by the eligible reviewers: needs 2 approvals in total, has 1",
    )


# --- optimality and invariants, by brute force -----------------------------------------------

USERS = ["u0", "u1", "u2", "u3", "sub"]
GROUPS = ["g0", "g1"]


def independent_eligible(
    req: Requirements,
    user: str,
    groups: Mapping[str, Collection[str]],
    roles: Mapping[str, Collection[str]],
) -> bool:
    required = {g.group for g in req.groups}
    if required & set(groups.get(user, ())):
        return True
    general = max(req.min_total, sum(g.count for g in req.groups)) > sum(
        g.count for g in req.groups
    )
    return general and bool(REVIEWER_ROLES & set(roles.get(user, ())))


def brute_force(
    req: Requirements,
    votes: Sequence[Vote],
    groups: Mapping[str, Collection[str]],
    roles: Mapping[str, Collection[str]],
) -> tuple[int, int, bool]:
    """(most slots fillable, most group slots fillable, vetoed), by exhaustive search."""
    slots: list[tuple[str | None, int]] = [(g.group, i) for g in req.groups for i in range(g.count)]
    slots += [(None, i) for i in range(max(req.min_total, len(slots)) - len(slots))]
    acts: dict[str, list[str]] = {}
    vetoed = False
    for v in votes:
        user = v.via_delegation_for or v.actor
        if "sub" in (v.actor, user) or not independent_eligible(req, user, groups, roles):
            continue
        if v.decision is X:
            vetoed |= v.via_delegation_for is None
        else:
            acts.setdefault(v.actor, []).append(user)
    actors = list(acts)
    best = [0, 0]

    def search(i: int, users: frozenset[str], taken: frozenset[int], total: int, grp: int) -> None:
        if i == len(actors):
            best[0], best[1] = max(best[0], total), max(best[1], grp)
            return
        search(i + 1, users, taken, total, grp)
        for user in acts[actors[i]]:
            if user in users:
                continue
            for k, (group, _) in enumerate(slots):
                if k not in taken and (group is None or group in groups.get(user, ())):
                    search(i + 1, users | {user}, taken | {k}, total + 1, grp + (group is not None))

    search(0, frozenset(), frozenset(), 0, 0)
    return best[0], best[1], vetoed


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[Requirements, list[Vote], dict[str, set[str]], dict[str, set[str]]]:
    counts = draw(st.dictionaries(st.sampled_from(GROUPS), st.integers(1, 2)))
    req = needs(counts, min_total=draw(st.integers(1, 4)))
    groups = {u: draw(st.sets(st.sampled_from(GROUPS))) for u in USERS}
    roles = {
        u: draw(st.sets(st.sampled_from(["reviewer", "admin", "viewer"]), max_size=1))
        for u in USERS
    }
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(USERS), st.one_of(st.none(), st.sampled_from(USERS))).filter(
                lambda p: p[0] != p[1]
            ),
            unique=True,
            max_size=7,
        )
    )
    decisions = draw(
        st.lists(st.sampled_from([A, A, A, X]), min_size=len(pairs), max_size=len(pairs))
    )
    votes = [
        vote(actor, decision, minute=draw(st.integers(0, 3)), via=via)
        for (actor, via), decision in zip(pairs, decisions, strict=True)
    ]
    return req, votes, groups, roles


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_slot_assignment_is_optimal(
    scenario: tuple[Requirements, list[Vote], dict[str, set[str]], dict[str, set[str]]],
) -> None:
    req, votes, groups, roles = scenario
    acc = run(req, votes, groups, roles, submitter="sub", owner=None)
    most, most_groups, vetoed = brute_force(req, votes, groups, roles)
    assert acc.approvals == len(acc.fills) == most
    assert sum(1 for f in acc.fills if f.slot.group is not None) == most_groups
    assert acc.vetoed is vetoed
    # Invariants: one act one slot, one person one slot, every fill eligible for its slot.
    assert len({f.vote.actor for f in acc.fills}) == len(acc.fills)
    assert len({f.counted_as for f in acc.fills}) == len(acc.fills)
    assert len({f.slot for f in acc.fills}) == len(acc.fills)
    for f in acc.fills:
        assert f.vote.decision is A
        assert "sub" not in (f.vote.actor, f.counted_as)
        assert f.slot.group is None or f.slot.group in groups[f.counted_as]
        assert f.via_delegation is (f.vote.via_delegation_for is not None)
    assert set(acc.open_slots) | {f.slot for f in acc.fills} == set(req.slots())
    assert acc.satisfied is (not vetoed and most == req.approvals_needed)
    assert (acc.blocked_by == ()) is acc.satisfied
    # Every vote is either used, a counted rejection or ignored with a reason.
    assert len(acc.fills) + len(acc.rejections) + len(acc.ignored) == len(votes)


@given(scenarios(), st.randoms(use_true_random=False))
def test_accounting_does_not_depend_on_input_order(
    scenario: tuple[Requirements, list[Vote], dict[str, set[str]], dict[str, set[str]]],
    rnd: random.Random,
) -> None:
    req, votes, groups, roles = scenario
    # Every vote at its own time: "latest" and the tie-breaks are then defined by time alone.
    timed = [dataclasses.replace(v, at=T0 + timedelta(seconds=i)) for i, v in enumerate(votes)]
    shuffled = list(timed)
    rnd.shuffle(shuffled)
    assert run(req, shuffled, groups, roles) == run(req, timed, groups, roles)
