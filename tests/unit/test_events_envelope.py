"""The pure part of live events: envelopes, frames, query parsing, filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from community_ade.errors import InvalidInput
from community_ade.events.envelope import (
    TOPICS,
    Filter,
    event_frame,
    from_audit_row,
    from_lock_entry,
    from_stored_entry,
    parse_client_message,
    parse_since,
    parse_subject,
    parse_topics,
    topic_of,
)


def test_audit_row_envelope_and_frame_splice_the_seq() -> None:
    row = {
        "seq": 7,
        "ts": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "type": "approval:approved",
        "actor_kind": "human",
        "actor_id": "u1",
        "via_delegation": True,
        "subject": "task:abc",
        "data": {"ß": [1, 2.5, None]},
    }
    stored = from_audit_row(row)
    assert (stored.type, stored.subject) == ("approval:approved", "task:abc")
    frame = json.loads(event_frame(42, stored.envelope))
    assert frame == {
        "kind": "event",
        "event": {
            "seq": 42,
            "ts": "2026-01-02T03:04:05.000006Z",
            "type": "approval:approved",
            "actor": {"kind": "human", "id": "u1", "via_delegation": True},
            "subject": "task:abc",
            "data": {"ß": [1, 2.5, None]},
            "audit_seq": 7,
        },
    }


def test_lock_entry_envelope() -> None:
    fields = {
        "type": "lock:acquired",
        "req": "r1",
        "task": "t1",
        "agent": "a1",
        "data": '{"resources":[["repo","x"]],"fence":"9"}',
    }
    event = json.loads(from_lock_entry("dom", "1700000000123-4", fields).envelope)
    assert event["ts"] == "2023-11-14T22:13:20.123000Z"
    assert event["subject"] == "task:t1"
    assert event["actor"] == {"kind": "agent", "id": "a1", "via_delegation": False}
    assert event["data"] == {
        "resources": [["repo", "x"]],
        "fence": "9",
        "domain": "dom",
        "request": "r1",
        "agent": "a1",
    }
    assert event["audit_seq"] is None


def test_force_release_names_the_operator_and_odd_entries_do_not_raise() -> None:
    forced = {"type": "lock:force_released", "task": "t", "agent": "a", "data": '{"actor":"ops"}'}
    event = json.loads(from_lock_entry("d", "1-0", forced).envelope)
    assert event["actor"] == {"kind": "human", "id": "ops", "via_delegation": False}
    assert "actor" not in event["data"]
    odd = json.loads(from_lock_entry("d", "1-0", {"data": "[1"}).envelope)
    assert odd["type"] == "lock:unknown"
    assert odd["data"]["unparsed"] == "[1"
    listed = json.loads(from_lock_entry("d", "1-0", {"data": "[1]"}).envelope)
    assert listed["data"]["value"] == [1]


@pytest.mark.parametrize(
    ("raw", "topics"),
    [
        (None, set(TOPICS)),
        ("task", {"task"}),
        (" task , lock ,", {"task", "lock"}),
        (["policy", "agent"], {"policy", "agent"}),
    ],
)
def test_topics(raw: object, topics: set[str]) -> None:
    assert parse_topics(raw) == topics


@pytest.mark.parametrize("raw", ["", ",", "task,nope", ["task", 1], 5, ["TASK"]])
def test_bad_topics(raw: object) -> None:
    with pytest.raises(InvalidInput):
        parse_topics(raw)


@pytest.mark.parametrize(
    ("raw", "since"), [(None, None), ("0", 0), ("123", 123), ("9" * 18, int("9" * 18))]
)
def test_since(raw: str | None, since: int | None) -> None:
    assert parse_since(raw) == since


@pytest.mark.parametrize("raw", ["", "-1", "1.5", "x", "9" * 19, "١٢"])
def test_bad_since(raw: str) -> None:
    with pytest.raises(InvalidInput):
        parse_since(raw)


@pytest.mark.parametrize("raw", ["", "x" * 201, 3])
def test_bad_subject(raw: object) -> None:
    with pytest.raises(InvalidInput):
        parse_subject(raw)


def test_filter() -> None:
    anything = Filter(frozenset(TOPICS))
    assert anything.matches(topic_of("task:created"), "task:1")
    one = Filter(frozenset({"approval"}), "task:1")
    assert one.matches("approval", "task:1")
    assert not one.matches("approval", "task:2")
    assert not one.matches("task", "task:1")


@pytest.mark.parametrize("text", [None, "", "[]", '{"kind":"hello"}', "{", '"pong"'])
def test_bad_client_messages(text: str | None) -> None:
    with pytest.raises(InvalidInput):
        parse_client_message(text)


def test_client_messages() -> None:
    assert parse_client_message('{"kind":"pong"}') == {"kind": "pong"}
    message = parse_client_message('{"kind":"subscribe","topics":["task"]}')
    assert message["topics"] == ["task"]


def test_stored_entries_pass_through_and_bad_ones_are_wrapped() -> None:
    good = from_stored_entry("1-0", {"type": "agent:health", "subject": "agent:a", "e": ' {"x":1}'})
    assert (good.type, good.subject, good.envelope) == ("agent:health", "agent:a", '{"x":1}')
    for raw in ("", "[]", "{}", "{bad"):
        bad = from_stored_entry("1-0", {"e": raw})
        frame = json.loads(event_frame(5, bad.envelope))
        assert frame["event"]["seq"] == 5
        assert frame["event"]["data"] == {"unparsed": raw}
        assert bad.type == "unknown:event"
