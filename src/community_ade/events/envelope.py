"""Live events, pure (no IO): the envelope of an audit row or a lock stream entry, the
WebSocket frames, and subscription filters.

An event is stored in the events stream without its ``seq``: the seq is the stream
entry's id, handed out by the relay (``lua/relay_append.lua``). A frame is built once
per event by splicing the seq into the stored JSON, so fan-out to a thousand clients
serialises nothing per client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from community_ade.audit.chain import iso_utc
from community_ade.errors import InvalidInput

TOPICS: tuple[str, ...] = (
    "task",
    "approval",
    "lock",
    "agent",
    "delegation",
    "policy",
    "audit",
)
"""Event domains a client may subscribe to: the part of an event type before ``:``."""

MAX_SUBJECT = 200  # audit_log.subject's width


@dataclass(frozen=True)
class StoredEvent:
    """One event as the relay appends it: its type and subject (stream fields a filter
    reads without parsing JSON) and the envelope JSON without ``seq``."""

    type: str
    subject: str
    envelope: str


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def from_audit_row(row: Mapping[str, Any]) -> StoredEvent:
    """The envelope of an ``audit_log`` row (architecture §7); ``audit_seq`` links the live
    event to its audit row."""
    envelope = {
        "ts": iso_utc(row["ts"]),
        "type": row["type"],
        "actor": {
            "kind": row["actor_kind"],
            "id": row["actor_id"],
            "via_delegation": bool(row["via_delegation"]),
        },
        "subject": row["subject"],
        "data": row["data"],
        "audit_seq": row["seq"],
    }
    return StoredEvent(row["type"], row["subject"], _dumps(envelope))


def from_lock_entry(domain: str, entry_id: str, fields: Mapping[str, str]) -> StoredEvent:
    """The envelope of a lock domain's stream entry (``locks/lua/_lib.lua`` ``emit``).

    The actor is the agent the request was for, except for a force release, whose
    entry names the operator who asked. The subject is ``task:<task>``, as in the
    audit log, so one subject filter follows a task through approval and apply.
    """
    try:
        data = json.loads(fields.get("data") or "{}")
    except ValueError:
        data = {"unparsed": fields.get("data")}
    if not isinstance(data, dict):
        data = {"value": data}
    operator = data.pop("actor", None)
    event_type = fields.get("type") or "lock:unknown"
    agent = fields.get("agent") or "unknown"
    actor = (
        {"kind": "human", "id": str(operator), "via_delegation": False}
        if operator
        else {"kind": "agent", "id": agent, "via_delegation": False}
    )
    subject = f"task:{fields.get('task') or 'unknown'}"[:MAX_SUBJECT]
    millis = int(entry_id.split("-", 1)[0])
    envelope = {
        "ts": iso_utc(datetime.fromtimestamp(millis / 1000, UTC)),
        "type": event_type,
        "actor": actor,
        "subject": subject,
        "data": {**data, "domain": domain, "request": fields.get("req"), "agent": agent},
        "audit_seq": None,
    }
    return StoredEvent(event_type, subject, _dumps(envelope))


def from_stored_entry(_entry_id: str, fields: Mapping[str, str]) -> StoredEvent:
    """An entry another module wrote already in the events stream's shape (``type``,
    ``subject``, ``e``: e.g. ``agent:health`` from ``agents.watch``). One that is not a
    JSON object is kept, wrapped, so it cannot break the frames it is spliced into."""
    event_type = fields.get("type") or "unknown:event"
    subject = (fields.get("subject") or "unknown")[:MAX_SUBJECT]
    envelope = fields.get("e") or ""
    try:
        parsed = json.loads(envelope)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not parsed:
        parsed = {"type": event_type, "subject": subject, "data": {"unparsed": envelope}}
    return StoredEvent(event_type, subject, _dumps(parsed))


def seq_of(entry_id: str) -> int:
    """The seq of an events stream entry id ``<seq>-0``."""
    return int(entry_id.split("-", 1)[0])


def event_frame(seq: int, envelope: str) -> str:
    """``{"kind":"event","event":{"seq":…, …envelope}}`` without re-serialising."""
    return f'{{"kind":"event","event":{{"seq":{seq},{envelope[1:]}}}'


def hello_frame(seq: int) -> str:
    return _dumps({"kind": "hello", "seq": seq})


def gap_frame(oldest: int) -> str:
    return _dumps({"kind": "gap", "oldest": oldest})


def ping_frame(now: datetime) -> str:
    return _dumps({"kind": "ping", "ts": iso_utc(now)})


def topic_of(event_type: str) -> str:
    return event_type.split(":", 1)[0]


def parse_topics(value: object) -> frozenset[str]:
    """Topics from ``topics=task,lock`` (or a subscribe message's list); none: all."""
    if value is None:
        return frozenset(TOPICS)
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise InvalidInput("topics must be a list of topic names")
    topics = {t.strip() for t in items if t.strip()}
    unknown = sorted(topics - set(TOPICS))
    if unknown:
        raise InvalidInput(
            f"unknown topic(s) {', '.join(unknown)}: choose from {', '.join(TOPICS)}"
        )
    if not topics:
        raise InvalidInput(f"topics is empty: choose from {', '.join(TOPICS)}")
    return frozenset(topics)


def parse_since(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise InvalidInput(f"since must be a non-negative integer seq, not {value[:40]!r}")
    return int(value)


def parse_subject(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SUBJECT:
        raise InvalidInput(f"subject must be 1 to {MAX_SUBJECT} characters")
    return value


@dataclass(frozen=True)
class Filter:
    """Which events a client wants: topics, and optionally one subject."""

    topics: frozenset[str]
    subject: str | None = None

    def matches(self, topic: str, subject: str) -> bool:
        return topic in self.topics and (self.subject is None or self.subject == subject)


def parse_client_message(text: str | None) -> dict[str, Any]:
    """A client frame: ``{"kind":"pong"}`` or ``{"kind":"subscribe","topics":[…]}``
    (text; None stands for a binary frame)."""
    if text is None:
        raise InvalidInput("client messages are JSON text frames, not binary")
    try:
        message = json.loads(text)
    except ValueError:
        raise InvalidInput("a client message must be a JSON object") from None
    if not isinstance(message, dict) or message.get("kind") not in ("pong", "subscribe"):
        raise InvalidInput('a client message is {"kind":"pong"} or {"kind":"subscribe",…}')
    return message
