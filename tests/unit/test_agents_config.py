"""The agent configuration's validation and version diff (pure)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.agents.config import (
    AgentConfig,
    Catalogue,
    NameTaken,
    Parameters,
    diff,
    refuse,
    validate,
)
from community_ade.errors import InvalidInput

CATALOGUE = Catalogue(
    context_windows={"big": 200_000, "small": 1_000}, tools=frozenset({"files.read", "shell"})
)


def config(**overrides: Any) -> AgentConfig:
    values: dict[str, Any] = {"name": "helper", "model": "big", "tools": ("files.read",)}
    values.update(overrides)
    return AgentConfig(**values)


def errors_of(cfg: AgentConfig, *, name_taken: NameTaken | None = None) -> dict[str, str]:
    return {e.path: e.message for e in validate(cfg, CATALOGUE, name_taken=name_taken).errors}


def test_a_sound_configuration_passes() -> None:
    assert errors_of(config()) == {}
    assert errors_of(config(parameters=Parameters(0, 0, 1, 1))) == {}
    assert errors_of(config(parameters=Parameters(2, 1, 200_000, 200_000))) == {}


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        ({"name": "ab"}, "name", "must be 3 to 100 characters, got 2"),
        ({"name": "x" * 101}, "name", "must be 3 to 100 characters, got 101"),
        ({"name": " abc"}, "name", "printable characters, no leading or trailing space"),
        ({"model": "huge"}, "model", "unknown model 'huge'; the catalogue has: big, small"),
        ({"tools": ("files.read", "rm")}, "tools", "not in the catalogue: rm"),
        ({"tools": ("shell", "shell")}, "tools", "duplicates: shell"),
        ({"capacity": 0}, "capacity", "must be between 1 and 100, got 0"),
        ({"capacity": 101}, "capacity", "must be between 1 and 100, got 101"),
        ({"tags": ("",)}, "tags[0]", "must be 1 to 40 characters"),
        ({"tags": tuple(f"t{i}" for i in range(21))}, "tags", "at most 20 entries, got 21"),
        ({"description": "d" * 2001}, "description", "at most 2000 characters"),
        (
            {"parameters": Parameters(temperature=3)},
            "parameters.temperature",
            "must be between 0 and 2, got 3",
        ),
        (
            {"parameters": Parameters(temperature=-0.1)},
            "parameters.temperature",
            "must be between 0 and 2, got -0.1",
        ),
        (
            {"parameters": Parameters(top_p=1.01)},
            "parameters.top_p",
            "must be between 0 and 1, got 1.01",
        ),
        (
            {"model": "small", "parameters": Parameters(max_tokens=1001)},
            "parameters.max_tokens",
            "must be between 1 and 1000, got 1001",
        ),
        (
            {"parameters": Parameters(max_tokens=0)},
            "parameters.max_tokens",
            "must be between 1 and 200000, got 0",
        ),
        (
            {"model": "small", "parameters": Parameters(max_tokens=10, context_window=2000)},
            "parameters.context_window",
            "must be between 1 and 1000, got 2000",
        ),
        (
            {"parameters": Parameters(max_tokens=600, context_window=500)},
            "parameters.max_tokens",
            "must be between 1 and 500, got 600",
        ),
    ],
)
def test_each_problem_names_its_field_and_range(
    overrides: dict[str, Any], path: str, message: str
) -> None:
    assert errors_of(config(**overrides)) == {path: message}


def test_a_taken_name_is_refused() -> None:
    assert errors_of(config(), name_taken=NameTaken.LIVE) == {
        "name": "an agent named 'helper' already exists"
    }


def test_a_deleted_agents_name_is_refused_saying_why() -> None:
    assert errors_of(config(), name_taken=NameTaken.DELETED) == {
        "name": "an agent named 'helper' was deleted, and names are not reused "
        "(its history keeps it): choose another"
    }


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    errors = errors_of(config(parameters=Parameters(temperature=value, top_p=value)))
    assert set(errors) == {"parameters.temperature", "parameters.top_p"}


def test_every_problem_is_reported_at_once() -> None:
    bad = config(
        name="ab",
        model="huge",
        tools=("rm",),
        capacity=0,
        parameters=Parameters(temperature=3, top_p=2),
    )
    report = validate(bad, CATALOGUE, name_taken=None)
    assert [e.path for e in report.errors] == [
        "name",
        "model",
        "tools",
        "parameters.temperature",
        "parameters.top_p",
        "capacity",
    ]
    error = refuse(report)
    assert isinstance(error, InvalidInput)
    assert len(error.details["errors"]) == 6
    assert error.message.startswith("invalid agent configuration: name: must be 3")


def test_unknown_model_leaves_token_limits_to_the_parameters_alone() -> None:
    errors = errors_of(config(model="huge", parameters=Parameters(max_tokens=10**9)))
    assert set(errors) == {"model"}


def test_documents_round_trip() -> None:
    original = config(tags=("a", "b"), parameters=Parameters(0.1, 0.2, 30, 40), capacity=9)
    assert AgentConfig.from_document(original.document()) == original


# -- diff ------------------------------------------------------------------------------


def test_diff_names_changed_fields_with_dotted_paths() -> None:
    before = config().document()
    after = config(tools=("files.read", "shell"), parameters=Parameters(temperature=1.5)).document()
    assert [c.document() for c in diff(before, after)] == [
        {"field": "parameters.temperature", "from": 0.7, "to": 1.5},
        {
            "field": "tools",
            "from": ["files.read"],
            "to": ["files.read", "shell"],
            "added": ["shell"],
            "removed": [],
        },
    ]


def test_a_field_missing_on_one_side_counts_as_none() -> None:
    (change,) = diff({"a": 1}, {})
    assert (change.field, change.before, change.after) == ("a", 1, None)


documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text("abc", min_size=1, max_size=2), inner, max_size=3)
    ),
    max_leaves=10,
)
objects = st.dictionaries(st.text("xyz", min_size=1, max_size=2), documents, max_size=5)


@given(objects)
def test_nothing_differs_from_itself(doc: dict[str, Any]) -> None:
    assert diff(doc, doc) == []


@given(objects, objects)
def test_the_diff_is_exactly_the_fields_that_differ(a: dict[str, Any], b: dict[str, Any]) -> None:
    changes = diff(a, b)
    fields = [c.field for c in changes]
    assert fields == sorted(set(fields))
    reverse = diff(b, a)
    assert [(c.field, c.after, c.before) for c in reverse] == [
        (c.field, c.before, c.after) for c in changes
    ]
    for change in changes:
        assert change.before != change.after


def test_null_parameters_take_their_defaults() -> None:
    nulls = {"temperature": None, "top_p": None, "max_tokens": None, "context_window": None}
    assert Parameters.from_document(nulls) == Parameters()
