"""The pure parts of ``@governed``: how a call becomes the payload reviewers see, and
how a return value becomes the task's report."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from community_ade.api.schemas import TaskOut
from community_ade.client.governed import SUMMARY_CAP, bind, summarize


def deploy(service: str, *hosts: str, version: str = "latest", **labels: str) -> None:
    return None


SIGNATURE = inspect.signature(deploy)


def test_arguments_are_bound_to_the_signature_with_defaults() -> None:
    call = bind("ops.deploy", SIGNATURE, ("api", "h1", "h2"), {"team": "web"})
    assert call.payload == {
        "function": "ops.deploy",
        "arguments": {
            "service": "api",
            "hosts": ["h1", "h2"],
            "version": "latest",
            "labels": {"team": "web"},
        },
    }
    # What runs is what was bound.
    assert (call.args, call.kwargs) == (("api", "h1", "h2"), {"version": "latest", "team": "web"})
    # Positional or keyword: the same call, the same payload.
    assert bind("ops.deploy", SIGNATURE, (), {"service": "api"}).arguments == {
        "service": "api",
        "hosts": [],
        "version": "latest",
        "labels": {},
    }


@pytest.mark.parametrize(
    "value", [object(), (1, 2), {1: "a"}, float("inf"), [b"x"], {"a": {"b": {1, 2}}}]
)
def test_values_json_cannot_carry_exactly_are_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="argument 'service'"):
        bind("ops.deploy", SIGNATURE, (value,), {})


def test_a_call_is_matched_against_the_claimed_task_exactly() -> None:
    call = bind("ops.deploy", SIGNATURE, ("api",), {})

    def task(type_: str, payload: dict[str, Any]) -> TaskOut:
        return TaskOut.model_construct(type=type_, payload=payload)

    reordered = {"arguments": dict(reversed(call.arguments.items())), "function": "ops.deploy"}
    assert call.is_payload_of(task("agent.call", reordered))
    swapped = {**call.payload, "arguments": {**call.arguments, "service": "db"}}
    assert not call.is_payload_of(task("agent.call", swapped))
    assert not call.is_payload_of(task("shell", call.payload))


def test_the_report_of_a_return_value() -> None:
    assert summarize({"ok": True}) == ('returned {"ok":true}', {"returned": {"ok": True}})
    summary, details = summarize(object())
    assert summary.startswith("returned <object object at")
    assert details["returned_repr"].startswith("<object object")
    summary, details = summarize("x" * 20_000)
    assert len(summary) == SUMMARY_CAP
    assert summary.endswith("…")
    assert set(details) == {"returned_repr"}
