"""Delegation (``community_ade.approvals.delegation``): validation, scope, time,
revocation, depth 1 and separation of duties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.approvals.accounting import Decision, Vote, account
from community_ade.approvals.delegation import (
    Delegation,
    applicable_delegations,
    delegations_for_vote,
)
from community_ade.approvals.policy import (
    Action,
    GroupRequirement,
    Policy,
    PolicyRule,
    ResourceRef,
    ResourceType,
    compute_requirements,
    is_eligible,
)
from community_ade.errors import InvalidInput

R = ResourceType
H = timedelta(hours=1)
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
DB = [ResourceRef(type=R.DATABASE, id="orders", actions=(Action.WRITE,))]


def grant(
    delegator: str = "d",
    delegate: str = "x",
    id_: str = "1",
    **kwargs: object,
) -> Delegation:
    args: dict[str, object] = {
        "id": id_,
        "delegator": delegator,
        "delegate": delegate,
        "valid_from": T0,
        "valid_until": T0 + 24 * H,
        **kwargs,
    }
    return Delegation(**args)  # type: ignore[arg-type]


def for_vote(
    delegations: list[Delegation],
    voter: str = "x",
    task_type: str = "db.migrate",
    resources: list[ResourceRef] | None = None,
    risk: float = 40,
    at: datetime = T0 + H,
    submitter: str = "sub",
    owner: str | None = "owner",
) -> list[str]:
    return delegations_for_vote(
        delegations,
        voter,
        task_type,
        DB if resources is None else resources,
        risk,
        at,
        submitter,
        owner,
    )


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delegate": "d"}, "cannot delegate to themselves"),
        ({"id": ""}, "non-empty id"),
        ({"delegator": " "}, "non-empty delegator"),
        ({"delegate": ""}, "non-empty delegate"),
        ({"valid_until": T0}, "valid_until must be after valid_from"),
        ({"valid_until": T0 - H}, "valid_until must be after valid_from"),
        ({"max_risk": 101}, "max_risk must be between 0 and 100"),
        ({"max_risk": -5}, "max_risk must be between 0 and 100"),
        ({"max_risk": float("nan")}, "max_risk"),
        ({"task_types": ()}, "at least one task type glob"),
        ({"resource_types": frozenset({"queue"})}, "unknown resource type"),
        ({"valid_from": datetime(2025, 1, 6)}, "timezone-aware"),
        ({"valid_until": datetime(2025, 1, 7)}, "timezone-aware"),
        ({"revoked_at": datetime(2025, 1, 7)}, "timezone-aware"),
    ],
)
def test_bad_delegations_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        grant(**kwargs)  # type: ignore[arg-type]


def test_defaults_cover_everything_for_the_window() -> None:
    d = grant()
    assert d.task_types == ("*",)
    assert d.resource_types == frozenset()
    assert d.max_risk == 100
    assert d.revoked_at is None
    assert grant(task_types="db.*", resource_types=["database"]).task_types == ("db.*",)


# --- time and revocation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "active"),
    [(T0 - timedelta(seconds=1), False), (T0, True), (T0 + 23 * H, True), (T0 + 24 * H, False)],
)
def test_active_on_a_half_open_window(at: datetime, active: bool) -> None:
    assert grant().active_at(at) is active


def test_revocation() -> None:
    d = grant().revoke(T0 + 2 * H)
    assert d.revoked_at == T0 + 2 * H
    assert d.active_at(T0 + H)
    assert not d.active_at(T0 + 2 * H)
    assert not d.active_at(T0 + 3 * H)
    assert d.revoke(T0 + 5 * H).revoked_at == T0 + 2 * H  # the first revocation stands
    # Revoked before it began: never active.
    assert not grant(revoked_at=T0 - H).active_at(T0 + H)


def test_time_of_the_vote_must_be_aware() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        grant().active_at(datetime(2025, 1, 6, 10))
    with pytest.raises(InvalidInput, match="timezone-aware"):
        grant().revoke(datetime(2025, 1, 6, 10))


# --- scope -----------------------------------------------------------------------------------


def test_scope_by_task_type_glob() -> None:
    d = grant(task_types=("db.*", "git.patch"))
    assert d.covers("db.migrate", DB, 0)
    assert d.covers("git.patch", DB, 0)
    assert not d.covers("git.patches", DB, 0)
    assert not d.covers("DB.migrate", DB, 0)


def test_scope_by_resource_types_needs_every_touched_type() -> None:
    d = grant(resource_types=frozenset({R.DATABASE, R.STORAGE}))
    secret = ResourceRef(type=R.SECRET, id="k")
    storage = ResourceRef(type=R.STORAGE, id="b")
    assert d.covers("t", DB, 0)
    assert d.covers("t", [*DB, storage], 0)
    assert not d.covers("t", [*DB, secret], 0)
    assert d.covers("t", [], 0)  # touches nothing outside the scope
    assert grant().covers("t", [secret], 0)


@pytest.mark.parametrize(("risk", "covered"), [(0, True), (50, True), (50.1, False), (100, False)])
def test_scope_by_max_risk_inclusive(risk: float, covered: bool) -> None:
    assert grant(max_risk=50).covers("t", DB, risk) is covered


# --- which delegators a vote also counts for -------------------------------------------------


def test_an_approval_counts_for_the_delegator() -> None:
    assert for_vote([grant()]) == ["d"]


def test_only_delegations_to_the_voter() -> None:
    assert for_vote([grant(delegate="y")]) == []
    assert for_vote([grant(delegator="x", delegate="y")]) == []


def test_out_of_scope_or_time_or_revoked_delegations_do_not_apply() -> None:
    assert for_vote([grant(task_types=("git.*",))]) == []
    assert for_vote([grant(resource_types=frozenset({R.SERVICE}))]) == []
    assert for_vote([grant(max_risk=30)], risk=40) == []
    assert for_vote([grant()], at=T0 - H) == []
    assert for_vote([grant()], at=T0 + 24 * H) == []
    assert for_vote([grant(revoked_at=T0 + H)], at=T0 + H) == []
    assert for_vote([grant(revoked_at=T0 + 2 * H)], at=T0 + H) == ["d"]


def test_depth_one_no_chains() -> None:
    # e delegated to d, d delegated to x: x's approval counts for d, never for e.
    chain = [grant("d", "x", "1"), grant("e", "d", "2")]
    assert for_vote(chain, voter="x") == ["d"]
    assert for_vote(chain, voter="d") == ["e"]


def test_never_for_the_submitter_or_the_agent_owner() -> None:
    # The delegate voting on the delegator's own task creates no vote for the submitter.
    assert for_vote([grant("sub", "x")]) == []
    assert for_vote([grant("owner", "x", "2")]) == []
    assert for_vote([grant("sub", "x"), grant("d", "x", "2")]) == ["d"]


def test_never_through_the_submitter_or_the_agent_owner() -> None:
    assert for_vote([grant("d", "sub")], voter="sub") == []
    assert for_vote([grant("d", "owner")], voter="owner") == []
    # Without an agent, only the submitter is excluded.
    assert for_vote([grant("owner", "x")], owner=None) == ["owner"]


def test_several_delegators_sorted_and_counted_once() -> None:
    found = for_vote([grant("m", "x", "3"), grant("d", "x", "2"), grant("d", "x", "1")])
    assert found == ["d", "m"]
    chosen = applicable_delegations(
        [grant("m", "x", "3"), grant("d", "x", "2"), grant("d", "x", "1")],
        "x",
        "t",
        DB,
        40,
        T0 + H,
        "sub",
        None,
    )
    assert [(d.delegator, d.id) for d in chosen] == [("d", "1"), ("m", "3")]


def test_a_scoped_out_delegation_does_not_hide_another_of_the_same_delegator() -> None:
    found = for_vote([grant("d", "x", "1", max_risk=10), grant("d", "x", "2")], risk=40)
    assert found == ["d"]


def test_eligibility_filter() -> None:
    policy = Policy(1, (PolicyRule("db", ("db.*",), groups=(GroupRequirement("db-owners"),)),))
    req = compute_requirements(policy, "db.migrate", DB, 40)
    groups = {"d": {"db-owners"}, "m": {"web"}}
    delegations = [grant("d", "x", "1"), grant("m", "x", "2")]
    found = delegations_for_vote(
        delegations,
        "x",
        "db.migrate",
        DB,
        40,
        T0 + H,
        "sub",
        None,
        eligible=lambda user: is_eligible(req, groups.get(user, ())),
    )
    assert found == ["d"]


def test_end_to_end_a_delegate_fills_the_delegators_slot() -> None:
    policy = Policy(1, (PolicyRule("db", ("db.*",), groups=(GroupRequirement("db-owners"),)),))
    req = compute_requirements(policy, "db.migrate", DB, 40)
    groups = {"d": {"db-owners"}}
    at = T0 + H
    delegators = for_vote([grant()], at=at)
    votes = [Vote(actor="x", decision=Decision.APPROVE, at=at)] + [
        Vote(actor="x", decision=Decision.APPROVE, via_delegation_for=d, at=at) for d in delegators
    ]
    acc = account(req, votes, submitter="sub", agent_owner=None, groups=groups)
    assert acc.satisfied
    assert acc.fills[0].via_delegation
    # The same delegation on d's own task: no vote for d, x alone is not eligible.
    delegators = for_vote([grant()], at=at, submitter="d")
    assert delegators == []
    acc = account(req, votes[:1], submitter="d", agent_owner=None, groups=groups)
    assert not acc.satisfied


USERS = ["a", "b", "c", "sub", "owner"]
users = st.sampled_from(USERS)


@st.composite
def delegation_sets(draw: st.DrawFn) -> list[Delegation]:
    out = []
    for i in range(draw(st.integers(0, 6))):
        delegator = draw(users)
        delegate = draw(st.sampled_from([u for u in USERS if u != delegator]))
        start = T0 + draw(st.integers(-3, 3)) * H
        out.append(
            grant(
                delegator,
                delegate,
                str(i),
                valid_from=start,
                valid_until=start + draw(st.integers(1, 6)) * H,
                max_risk=draw(st.sampled_from([10, 50, 100])),
                revoked_at=draw(st.one_of(st.none(), st.just(T0))),
            )
        )
    return out


@given(delegation_sets(), users, st.integers(-4, 8), st.sampled_from([0, 40, 90]))
def test_delegations_for_vote_properties(
    delegations: list[Delegation], voter: str, hour: int, risk: float
) -> None:
    at = T0 + hour * H
    found = for_vote(delegations, voter=voter, at=at, risk=risk)
    assert found == sorted(set(found))
    assert not {"sub", "owner", voter} & set(found)
    if voter in {"sub", "owner"}:
        assert found == []
    for delegator in found:
        assert any(
            d.delegator == delegator
            and d.delegate == voter
            and d.valid_from <= at < d.valid_until
            and (d.revoked_at is None or at < d.revoked_at)
            and risk <= d.max_risk
            for d in delegations
        )
    # Complete: every active, in-scope delegation to a non-party voter is found.
    if voter not in {"sub", "owner"}:
        for d in delegations:
            if (
                d.delegate == voter
                and d.delegator not in {"sub", "owner"}
                and d.active_at(at)
                and (risk <= d.max_risk)
            ):
                assert d.delegator in found
