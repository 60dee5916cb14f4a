"""The event relay on real Redis and SQL: every audit event once and in order, with
concurrent writers and two relays racing; lock events once; where a new relay starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from conftest import Backend

from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM
from community_ade.errors import Conflict, ServiceUnavailable
from community_ade.events.keys import EventKeys, stream_entries
from community_ade.events.relay import AUDIT_SOURCE, Relay
from community_ade.events.system import system_stream as agent_events_stream
from community_ade.infra.redis_client import AnyRedis, open_redis

pytestmark = pytest.mark.parametrize(
    "backend", ["server", pytest.param("cluster", marks=pytest.mark.cluster)], indirect=True
)


@pytest.fixture
async def second_client(backend: Backend) -> AsyncIterator[AnyRedis]:
    """Another connection, as another process's relay would have."""
    client = await open_redis(backend.url)
    try:
        yield client
    finally:
        await client.aclose()


async def append_event(sessions: Any, subject: str, n: int) -> None:
    """One unit of work with ``n`` audit events, retried when it loses a race."""
    for _ in range(50):
        try:
            async with sessions.begin() as session:
                for i in range(n):
                    await audit.append(
                        session, type="task:created", actor=SYSTEM, subject=subject, data={"i": i}
                    )
            return
        except (Conflict, ServiceUnavailable):
            await asyncio.sleep(0.01)
    raise AssertionError("could not append after 50 tries")


async def stream(client: AnyRedis, keys: EventKeys) -> list[tuple[int, dict[str, Any]]]:
    entries = stream_entries(await client.xrange(keys.stream))
    return [(int(eid.split("-")[0]), json.loads(fields["e"])) for eid, fields in entries]


async def wait_for(condition: Callable[[], Any], seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_every_audit_event_once_in_order_with_writers_and_two_relays(
    sessions: Any, redis_client: AnyRedis, second_client: AnyRedis, domain: str
) -> None:
    keys = EventKeys.for_namespace(domain)
    relays = [
        Relay(client, sessions, domain, maxlen=10_000) for client in (redis_client, second_client)
    ]
    runners = [asyncio.create_task(relay.run(0.01)) for relay in relays]
    try:
        writers = [
            append_event(sessions, f"task:w{w}", 1 + (i % 3)) for w in range(4) for i in range(15)
        ]
        await asyncio.gather(*writers)
        async with sessions() as session:
            head = max(e.seq for e in await audit.list_events(session, limit=1))

        async def relayed() -> bool:
            return int(await redis_client.hget(keys.cursors, AUDIT_SOURCE) or 0) == head

        await wait_for(relayed)
    finally:
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
    events = [(seq, e) for seq, e in await stream(redis_client, keys) if e["audit_seq"]]
    assert [e["audit_seq"] for _, e in events] == list(range(1, head + 1))
    seqs = [seq for seq, _ in events]
    assert seqs == sorted(set(seqs))
    assert head == sum(1 + (i % 3) for _ in range(4) for i in range(15))


async def test_lock_events_are_relayed_once(
    sessions: Any,
    redis_client: AnyRedis,
    second_client: AnyRedis,
    domain: str,
    make_manager: Any,
) -> None:
    keys = EventKeys.for_namespace(domain)
    relays = [
        Relay(client, sessions, domain, maxlen=10_000) for client in (redis_client, second_client)
    ]
    manager = await make_manager()
    for i in range(5):
        async with manager.hold(f"task-{i}", "agent-a", {"repo:x": "exclusive"}):
            await asyncio.gather(*(relay.relay_streams() for relay in relays))
    await asyncio.gather(*(relay.relay_streams() for relay in relays))
    await asyncio.gather(*(relay.relay_streams() for relay in relays))
    ours = [e for _, e in await stream(redis_client, keys) if e["data"].get("domain") == domain]
    source = stream_entries(await redis_client.xrange(f"ade:lock:{{{domain}}}:events"))
    assert [e["data"]["request"] for e in ours] == [fields["req"] for _, fields in source]
    assert [e["type"] for e in ours] == ["lock:acquired", "lock:released"] * 5
    first = ours[0]
    assert first["subject"] == "task:task-0"
    assert first["actor"] == {"kind": "agent", "id": "agent-a", "via_delegation": False}
    assert first["audit_seq"] is None


async def test_a_new_relay_starts_with_what_the_stream_can_hold(
    sessions: Any, redis_client: AnyRedis, domain: str
) -> None:
    await append_event(sessions, "task:old", 150)
    keys = EventKeys.for_namespace(domain)
    relay = Relay(redis_client, sessions, domain, maxlen=100, batch=40)
    assert await relay.relay_audit() == 100
    assert await relay.relay_audit() == 0
    audit_seqs = [e["audit_seq"] for _, e in await stream(redis_client, keys)]
    assert audit_seqs == list(range(51, 151))


async def test_a_relay_whose_cursor_is_past_the_log_starts_over(
    sessions: Any, redis_client: AnyRedis, domain: str
) -> None:
    """A new database behind an old Redis: the cursor names rows that do not exist."""
    keys = EventKeys.for_namespace(domain)
    await redis_client.hset(keys.cursors, AUDIT_SOURCE, "1000")
    await append_event(sessions, "task:new", 3)
    relay = Relay(redis_client, sessions, domain, maxlen=100)
    assert await relay.relay_audit() == 3
    assert [e["audit_seq"] for _, e in await stream(redis_client, keys)] == [1, 2, 3]
    assert await redis_client.hget(keys.cursors, AUDIT_SOURCE) == "3"


async def test_agent_health_changes_are_relayed_once(
    sessions: Any, redis_client: AnyRedis, second_client: AnyRedis, domain: str
) -> None:
    """``agents.watch`` writes health changes in the events stream's own entry shape."""
    source = agent_events_stream(domain)
    envelope = {"ts": "2026-01-01T00:00:00.000000Z", "type": "agent:health", "data": {"n": 0}}
    for n in range(3):
        fields = {"type": "agent:health", "subject": f"agent:a{n}", "e": json.dumps(envelope)}
        await redis_client.xadd(source, fields)  # type: ignore[arg-type]
    relays = [Relay(c, sessions, domain, maxlen=100) for c in (redis_client, second_client)]
    await asyncio.gather(*(relay.relay_streams() for relay in relays))
    # Only the health events: the relay also carries the lock events of every lock domain
    # on this Redis, which other tests running meanwhile produce.
    got = [
        e
        for _, e in await stream(redis_client, EventKeys.for_namespace(domain))
        if e["type"] == "agent:health"
    ]
    assert len(got) == 3
    assert got[0]["data"] == {"n": 0}
    entries = stream_entries(await redis_client.xrange(EventKeys.for_namespace(domain).stream))
    assert [f["subject"] for _, f in entries if f["type"] == "agent:health"] == [
        "agent:a0",
        "agent:a1",
        "agent:a2",
    ]
