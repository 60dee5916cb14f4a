"""Redis keys of the events stream. All three share one hash tag, so the relay's script
touches one Cluster slot; the tag is the deployment's default lock domain, so two
deployments sharing a Redis keep separate streams (as they keep separate locks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

StreamEntries = list[tuple[str, dict[str, str]]]


@dataclass(frozen=True)
class EventKeys:
    stream: str  # STREAM: entries "<seq>-0" with fields type, subject, e
    sequence: str  # STRING: the last seq handed out
    cursors: str  # HASH: source ("audit", "lock:<domain>") -> last position relayed
    epoch: str  # STRING: when the sequence last started at 1

    @classmethod
    def for_namespace(cls, namespace: str) -> EventKeys:
        prefix = f"ade:events:{{{namespace}}}:"
        return cls(prefix + "stream", prefix + "seq", prefix + "cursors", prefix + "epoch")


def stream_entries(reply: Any) -> StreamEntries:
    """XRANGE's reply as our clients decode it (``decode_responses=True``)."""
    return cast(StreamEntries, reply or [])
