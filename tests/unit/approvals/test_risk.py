"""The risk model (``community_ade.approvals.risk``) against docs/policies.md §2, by hand
and by property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.approvals.risk import (
    DEFAULT_TABLE,
    Action,
    ResourceRef,
    ResourceType,
    RiskInputs,
    RiskLevel,
    RiskScore,
    RiskTable,
    Scope,
    blast_radius,
    criticality,
    failure_rate,
    magnitude,
    quorum_for_risk,
    round1,
    score_task,
)
from community_ade.errors import InvalidInput

R = ResourceType


def res(
    type_: ResourceType | str = R.SERVICE,
    id_: str = "r1",
    scope: Scope | str = Scope.NAMESPACE,
    actions: tuple[Action | str, ...] = (Action.WRITE,),
) -> ResourceRef:
    return ResourceRef(type=type_, id=id_, scope=scope, actions=actions)  # type: ignore[arg-type]


percent = st.floats(min_value=0, max_value=100, allow_nan=False)
resource_st = st.builds(
    ResourceRef,
    type=st.sampled_from(list(ResourceType)),
    id=st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]),
    scope=st.sampled_from(list(Scope)),
    actions=st.lists(st.sampled_from(list(Action)), min_size=1, max_size=4).map(tuple),
)


# --- enumerations and resource references -------------------------------------------------


def test_enumerations_are_the_briefs() -> None:
    assert {t.value for t in ResourceType} == {
        "database",
        "service",
        "infrastructure",
        "configuration",
        "secret",
        "network",
        "storage",
    }
    assert {s.value for s in Scope} == {"global", "cluster", "namespace", "instance"}
    assert {a.value for a in Action} == {"read", "write", "delete", "execute"}


def test_resource_defaults_are_namespace_and_read() -> None:
    ref = ResourceRef(type=R.DATABASE, id="orders")
    assert ref.scope is Scope.NAMESPACE
    assert ref.actions == (Action.READ,)
    assert ref.name is None
    assert ref.namespace is None
    assert ref.read_only
    assert ref.key == (R.DATABASE, "orders")


def test_resource_accepts_strings_and_canonicalises_actions() -> None:
    ref = res("secret", "k", "global", ("write", "read", "write"))
    assert ref.type is R.SECRET
    assert ref.scope is Scope.GLOBAL
    assert ref.actions == (Action.READ, Action.WRITE)
    assert ref == res(R.SECRET, "k", Scope.GLOBAL, (Action.READ, Action.WRITE))
    assert not ref.read_only
    assert ResourceRef(type=R.SERVICE, id="x", actions="write").actions == (Action.WRITE,)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "queue", "id": "x"}, "unknown resource type 'queue'"),
        ({"type": "service", "id": ""}, "non-empty id"),
        ({"type": "service", "id": "  "}, "non-empty id"),
        ({"type": "service", "id": 3}, "non-empty id"),
        ({"type": "service", "id": "x", "scope": "region"}, "unknown scope"),
        ({"type": "service", "id": "x", "actions": ("read", "drop")}, "unknown action 'drop'"),
        ({"type": "service", "id": "x", "actions": ()}, "at least one action"),
    ],
)
def test_bad_resource_references_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        ResourceRef(**kwargs)  # type: ignore[arg-type]


def test_unknown_enum_message_lists_the_allowed_values() -> None:
    with pytest.raises(InvalidInput, match="use one of global, cluster, namespace, instance"):
        res(scope="region")


# --- criticality -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "expected"),
    [
        (R.SECRET, 100),
        (R.DATABASE, 90),
        (R.INFRASTRUCTURE, 80),
        (R.NETWORK, 70),
        (R.SERVICE, 60),
        (R.CONFIGURATION, 50),
        (R.STORAGE, 40),
    ],
)
def test_criticality_table(type_: ResourceType, expected: float) -> None:
    assert criticality([res(type_)]) == expected
    assert criticality([res(type_, actions=(Action.READ,))]) == round1(expected * 0.3)


def test_read_only_secret_is_30() -> None:
    assert criticality([res(R.SECRET, actions=(Action.READ,))]) == 30.0


def test_criticality_is_the_highest_resource() -> None:
    assert criticality([res(R.STORAGE, "a"), res(R.DATABASE, "b"), res(R.SERVICE, "c")]) == 90


def test_read_only_discount_needs_every_action_of_every_resource_to_be_read() -> None:
    # Reading a secret while writing storage: the secret counts fully (docs/policies.md §2).
    mixed = [res(R.SECRET, "s", actions=(Action.READ,)), res(R.STORAGE, "b")]
    assert criticality(mixed) == 100
    assert criticality([res(R.DATABASE, actions=(Action.READ, Action.EXECUTE))]) == 90
    both_read = [res(R.SECRET, "s", actions=("read",)), res(R.DATABASE, "d", actions=("read",))]
    assert criticality(both_read) == 30


def test_criticality_of_nothing_is_zero() -> None:
    assert criticality([]) == 0


def test_criticality_table_is_configurable() -> None:
    table = RiskTable(criticality={"storage": 95}, read_only_factor=0.5)  # type: ignore[dict-item]
    assert criticality([res(R.STORAGE)], table) == 95
    assert criticality([res(R.STORAGE, actions=("read",))], table) == 47.5
    assert criticality([res(R.SECRET)], table) == 100  # the rest keep their defaults


# --- magnitude -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [(0, 0.0), (1, 10.0), (9, 33.3), (99, 66.7), (999, 100.0), (1000, 100.0), (10**12, 100.0)],
)
def test_magnitude(lines: int, expected: float) -> None:
    assert magnitude(lines) == expected


def test_magnitude_of_1000_lines_is_100() -> None:
    assert magnitude(1000) == 100.0


@pytest.mark.parametrize("bad", [-1, 1.5, "10", None, True])
def test_magnitude_refuses_non_counts(bad: object) -> None:
    with pytest.raises(InvalidInput, match="lines changed"):
        magnitude(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**7))
def test_magnitude_is_bounded_and_monotone(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert 0 <= magnitude(low) <= magnitude(high) <= 100
    exact = min(100.0, 100 * math.log10(1 + a) / 3)
    assert abs(magnitude(a) - exact) <= 0.05 + 1e-9


def test_magnitude_decades_are_configurable() -> None:
    assert magnitude(99, RiskTable(magnitude_decades=2)) == 100.0


# --- blast radius ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        ([Scope.GLOBAL], 100),
        ([Scope.CLUSTER], 75),
        ([Scope.NAMESPACE], 50),
        ([Scope.INSTANCE], 25),
        ([Scope.INSTANCE] * 4, 55),
        ([Scope.CLUSTER, Scope.INSTANCE], 85),
        ([Scope.NAMESPACE, Scope.CLUSTER, Scope.INSTANCE], 95),
        ([Scope.CLUSTER] * 4, 100),  # 75 + 30, capped
        ([Scope.GLOBAL] * 3, 100),
        ([Scope.INSTANCE] * 9, 100),  # 25 + 80, capped
        ([Scope.INSTANCE] * 8, 95),
    ],
)
def test_blast_radius(scopes: list[Scope], expected: float) -> None:
    resources = [res(id_=f"r{i}", scope=s) for i, s in enumerate(scopes)]
    assert blast_radius(resources) == expected


def test_blast_radius_counts_a_resource_once() -> None:
    same = [res(R.DATABASE, "orders", actions=("read",)), res(R.DATABASE, "orders")]
    assert blast_radius(same) == 50
    # Same id, other type: another resource.
    assert blast_radius([res(R.DATABASE, "x"), res(R.SERVICE, "x")]) == 60


def test_blast_radius_of_nothing_is_zero() -> None:
    assert blast_radius([]) == 0


def test_blast_radius_table_is_configurable() -> None:
    table = RiskTable(scope_weights={Scope.NAMESPACE: 30}, per_extra_resource=5)
    assert blast_radius([res(id_="a"), res(id_="b")], table) == 35


# --- failure rate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], 0.0),
        ([False], 0.0),
        ([True], 100.0),
        ([True, False, False, False], 25.0),
        ([True, False, False], 33.3),
        ([True, True, False], 66.7),
        ([True] * 10 + [False] * 50, 0.0),  # the 10 failures are older than the last 50
        ([False] * 10 + [True] * 5 + [False] * 45, 10.0),
        ([True] * 50 + [False], 98.0),
    ],
)
def test_failure_rate(outcomes: list[bool], expected: float) -> None:
    assert failure_rate(outcomes) == expected


def test_failure_window_is_configurable() -> None:
    assert failure_rate([True, True, False, False], RiskTable(failure_window=2)) == 0.0


@given(st.lists(st.booleans(), max_size=120))
def test_failure_rate_is_a_percentage_of_the_last_50(outcomes: list[bool]) -> None:
    rate = failure_rate(outcomes)
    assert 0 <= rate <= 100
    window = outcomes[-50:]
    if window:
        assert abs(rate - 100 * sum(window) / len(window)) <= 0.05 + 1e-9


# --- the risk table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"criticality": {"secret": 101}}, "between 0 and 100"),
        ({"criticality": {"queue": 10}}, "unknown ResourceType"),
        ({"scope_weights": {"namespace": -1}}, "between 0 and 100"),
        ({"scope_weights": {"region": 1}}, "unknown Scope"),
        ({"read_only_factor": 1.5}, "read-only factor"),
        ({"read_only_factor": float("nan")}, "read-only factor"),
        ({"per_extra_resource": -1}, "per extra resource"),
        ({"magnitude_decades": 0}, "magnitude_decades"),
        ({"magnitude_decades": float("inf")}, "magnitude_decades"),
        ({"failure_window": 0}, "window"),
        ({"failure_window": 2.5}, "window"),
    ],
)
def test_bad_risk_tables_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        RiskTable(**kwargs)  # type: ignore[arg-type]


def test_risk_table_is_frozen_and_comparable() -> None:
    assert RiskTable() == DEFAULT_TABLE
    assert RiskTable(criticality={R.SECRET: 100}) == DEFAULT_TABLE
    with pytest.raises(TypeError):
        DEFAULT_TABLE.criticality[R.SECRET] = 1  # type: ignore[index]


# --- inputs, score, quorum -------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 100.1, float("nan"), float("inf"), True, "50", None])
def test_inputs_are_0_to_100(bad: object) -> None:
    with pytest.raises(InvalidInput, match="magnitude"):
        RiskInputs(criticality=0, magnitude=bad, blast_radius=0, failure_rate=0)  # type: ignore[arg-type]


def test_inputs_are_rounded_half_up_to_one_decimal() -> None:
    inputs = RiskInputs(criticality=33.35, magnitude=0.05, blast_radius=12.34, failure_rate=100)
    assert inputs == RiskInputs(33.4, 0.1, 12.3, 100)


@pytest.mark.parametrize(
    ("inputs", "total"),
    [
        ((0, 0, 0, 0), 0.0),
        ((100, 100, 100, 100), 100.0),
        ((100, 0, 0, 0), 40.0),
        ((0, 100, 0, 0), 30.0),
        ((0, 0, 100, 0), 20.0),
        ((0, 0, 0, 100), 10.0),
        ((90, 33.3, 50, 0), 56.0),  # 36 + 9.99 + 10 = 55.99
        ((30, 0, 50, 0), 22.0),  # a read-only secret, nothing changed
        ((0, 0, 0, 2.5), 0.3),  # 0.25: half up, not half even
        ((100, 100, 24.8, 0), 75.0),  # 74.96 shows as 75.0
    ],
)
def test_score_by_hand(inputs: tuple[float, float, float, float], total: float) -> None:
    score = RiskScore(RiskInputs(*inputs))
    assert score.total == total


@given(percent, percent, percent, percent)
def test_score_is_the_weighted_sum(c: float, m: float, b: float, f: float) -> None:
    score = RiskScore(RiskInputs(c, m, b, f))
    i = score.inputs
    exact = i.criticality * 0.4 + i.magnitude * 0.3 + i.blast_radius * 0.2 + i.failure_rate * 0.1
    assert 0 <= score.total <= 100
    assert abs(score.total - exact) <= 0.05 + 1e-9
    assert score.total == round1(score.total)


@given(percent, percent, percent, percent, st.integers(0, 3), percent)
def test_score_is_monotone_in_every_input(
    c: float, m: float, b: float, f: float, which: int, more: float
) -> None:
    values = [c, m, b, f]
    raised = list(values)
    raised[which] = max(values[which], more)
    assert RiskScore(RiskInputs(*values)).total <= RiskScore(RiskInputs(*raised)).total


@pytest.mark.parametrize(
    ("risk", "quorum"),
    [(0, 1), (49.9, 1), (50, 2), (50.0, 2), (74.9, 2), (75, 3), (100, 3)],
)
def test_quorum_boundaries(risk: float, quorum: int) -> None:
    assert quorum_for_risk(risk) == quorum


def test_quorum_and_level_of_a_score_use_the_total_as_shown() -> None:
    high = RiskScore(RiskInputs(100, 100, 24.8, 0))  # 74.96 → 75.0
    assert high.quorum == 3
    assert high.level is RiskLevel.HIGH
    assert quorum_for_risk(high) == 3
    medium = RiskScore(RiskInputs(100, 33.4, 0, 0))  # 40 + 10.02 = 50.02 → 50.0
    assert medium.total == 50.0
    assert medium.quorum == 2
    assert medium.level is RiskLevel.MEDIUM
    low = RiskScore(RiskInputs(100, 33.0, 0, 0))  # 49.9
    assert low.total == 49.9
    assert low.quorum == 1
    assert low.level is RiskLevel.LOW


@pytest.mark.parametrize("bad", [-1, 100.5, float("nan"), "75"])
def test_quorum_refuses_out_of_range_risk(bad: object) -> None:
    with pytest.raises(InvalidInput, match="risk"):
        quorum_for_risk(bad)  # type: ignore[arg-type]


def test_score_task_end_to_end() -> None:
    # A 1 000-line migration of one database in its namespace, no failures recently:
    # 90×0.4 + 100×0.3 + 50×0.2 + 0 = 76 → 3 approvals.
    score = score_task([res(R.DATABASE, "orders")], lines_changed=1000, recent_failures=[])
    assert score.inputs == RiskInputs(90, 100, 50, 0)
    assert score.total == 76.0
    assert score.quorum == 3
    # Reading one secret, nothing changed: 30×0.4 + 0 + 50×0.2 + 0 = 22.
    read = score_task([res(R.SECRET, actions=("read",))], 0, [False, False])
    assert read.total == 22.0
    assert read.quorum == 1


@given(
    st.lists(resource_st, max_size=8),
    st.integers(min_value=0, max_value=10**6),
    st.lists(st.booleans(), max_size=80),
)
def test_every_default_input_and_the_total_stay_within_0_100(
    resources: list[ResourceRef], lines: int, outcomes: list[bool]
) -> None:
    score = score_task(resources, lines, outcomes)
    i = score.inputs
    for value in (i.criticality, i.magnitude, i.blast_radius, i.failure_rate, score.total):
        assert 0 <= value <= 100
    assert 1 <= score.quorum <= 3
