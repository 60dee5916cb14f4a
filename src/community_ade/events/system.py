"""Events that come from no audit row: the server's own observations (an agent's health
changed, a checkpoint of the audit log was signed), written in the events stream's shape
to one Redis stream per deployment that every relay tails (``events.relay``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from community_ade.agents.leases import redis_call
from community_ade.audit.chain import SYSTEM, iso_utc
from community_ade.infra.redis_client import AnyRedis
from community_ade.storage.models import utcnow

MAXLEN = 10_000


def system_stream(namespace: str) -> str:
    """The deployment's stream (``ADE_LOCK_DOMAIN`` names it, as it does the events
    stream), so deployments sharing a Redis do not see each other's. The key keeps the
    name it had when agent health was its only writer, so a relay's cursor carries over."""
    return f"ade:agent:events:{{{namespace}}}"


async def publish(
    client: AnyRedis, namespace: str, event_type: str, subject: str, data: Mapping[str, Any]
) -> None:
    """Append one system event (actor ``system``, no audit seq)."""
    envelope = {
        "ts": iso_utc(utcnow()),
        "type": event_type,
        "actor": {"kind": SYSTEM.kind, "id": SYSTEM.id, "via_delegation": False},
        "subject": subject,
        "data": dict(data),
        "audit_seq": None,
    }
    entry: dict[Any, Any] = {"type": event_type, "subject": subject, "e": json.dumps(envelope)}
    await redis_call(client.xadd(system_stream(namespace), entry, maxlen=MAXLEN, approximate=True))
