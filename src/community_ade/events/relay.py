"""The relay: audit rows (the SQL outbox), lock events and agent health changes into one
Redis events stream.

Several relays may run at once (each ``ade serve``, each worker); every event is still
appended once, because ``lua/relay_append.lua`` compares each event's source position
with the source's cursor and moves the cursor in the same call.

Why tailing ``audit_log`` by ``seq`` misses nothing: ``audit.log.append`` holds the
log's append lock (PostgreSQL advisory lock, SQLite's single writer) from reading the
head until its transaction ends, and numbers the new row head + 1. So rows commit in
seq order with no holes (a rolled-back append frees its number for the next one), and
once row n is visible every row before it is too. A relay that reads ``seq > cursor``
can never see row n + 1 without row n. (Were rows ever deleted, the relay would step
over the hole: it relays what exists past its cursor.)

Latency: a commit that appended audit rows wakes the relay at once, in every process:
this process's commits by a SQLAlchemy ``after_commit`` hook, every process's by
PostgreSQL ``NOTIFY`` (``events.commits``). Lock events and agent health changes, and
commits a lost listening connection missed, are picked up by polling every
``ADE_EVENTS_POLL_SECONDS``. A wake-up reads only the audit log: the Redis sources (four
calls or more) cannot have changed because of a commit, and a worker commits twice per
task. Woken passes start at least ``MIN_GAP_SECONDS`` apart, so that under load one pass
relays several commits. ``run_relay`` reads on connections of its own (two: one listens),
so that a burst of requests holding the shared pool cannot hold events back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from redis.commands.core import AsyncScript
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from community_ade.audit import log as audit
from community_ade.events.commits import hear_commits
from community_ade.events.envelope import (
    StoredEvent,
    from_audit_row,
    from_lock_entry,
    from_stored_entry,
)
from community_ade.events.keys import EventKeys, stream_entries
from community_ade.events.system import system_stream
from community_ade.infra.aio import Incident, cancel_and_wait, wait_event
from community_ade.infra.lua import register_lua
from community_ade.infra.redis_client import AnyRedis
from community_ade.locks import keys as lock_keys
from community_ade.runtime import Runtime
from community_ade.storage import db
from community_ade.storage.models import AuditEvent

log = logging.getLogger(__name__)

AUDIT_SOURCE = "audit"
# The source name predates audit checkpoints in that stream; kept so cursors carry over.
SYSTEM_SOURCE = "agent-health"
# A Redis source's entry (id, fields) as the events stream stores it.
Convert = Callable[[str, dict[str, str]], StoredEvent]
BATCH = 500
# Passes woken by commits start at most this often: under load (a worker commits twice
# per task) one read then relays the rows of several commits, for at most this much
# more latency; a commit after a quiet spell (periodic polls aside) is relayed at once.
# 10 ms, not more: under a burst of decisions the gap was most of what an agent waited
# once the decision had committed (bench/agents.py: 50 ms → 10 ms took the p50 at 100
# agents from 44 to 33 ms); a pass is one indexed read and one script call.
MIN_GAP_SECONDS = 0.01
_AUDIT_COLUMNS = tuple(
    getattr(AuditEvent, name)
    for name in ("seq", "ts", "type", "actor_kind", "actor_id", "via_delegation", "subject", "data")
)
_FROM = (
    select(*_AUDIT_COLUMNS)
    .where(AuditEvent.seq >= bindparam("first"))
    .order_by(AuditEvent.seq)
    .limit(bindparam("count"))
)


async def _head(session: AsyncSession) -> int:
    return await session.scalar(select(func.max(AuditEvent.seq))) or 0


class Relay:
    """Copies new audit rows, lock events and agent health changes into the events
    stream (see module doc)."""

    def __init__(
        self,
        redis_client: AnyRedis,
        sessions: async_sessionmaker[AsyncSession],
        namespace: str,
        *,
        maxlen: int,
        batch: int = BATCH,
    ) -> None:
        self.redis = redis_client
        self.sessions = db.read_sessions(sessions)
        self.keys = EventKeys.for_namespace(namespace)
        self.system_events = system_stream(namespace)
        self.maxlen = maxlen
        self.batch = batch
        self._append: AsyncScript = register_lua(
            redis_client, "community_ade.events", "relay_append"
        )

    async def relay_audit(self) -> int:
        """Append every audit row past the cursor; returns how many this call appended."""
        total = 0
        while True:
            cursor = await self.redis.hget(self.keys.cursors, AUDIT_SOURCE)
            async with self.sessions() as session:
                after = int(cursor) if cursor is not None else await self._start(session)
                # From the row at the cursor on: whether the log still reaches the cursor
                # comes with the new rows, not from a second query.
                params = {"first": after, "count": self.batch + 1}
                rows = [dict(row._mapping) for row in await session.execute(_FROM, params)]
            if cursor is not None and not rows:
                # The cursor was read before this read, so the log can only end before it
                # if the log was replaced (a new database on an old Redis): start over as
                # a new relay would, or nothing would ever be relayed.
                log.warning("the audit log ends before the relay's cursor %s: restarting", after)
                await self.redis.hdel(self.keys.cursors, AUDIT_SOURCE)
                continue
            if rows and rows[0]["seq"] == after:
                del rows[0]  # relayed already
            events = [(str(row["seq"]), from_audit_row(row)) for row in rows]
            total += await self._offer(AUDIT_SOURCE, events)
            if len(rows) < self.batch:
                return total

    async def _start(self, session: AsyncSession) -> int:
        """Where a relay with no cursor begins: the newest rows the stream can hold, not
        the whole history of a long-lived log."""
        return max(0, await _head(session) - self.maxlen)

    async def relay_streams(self) -> int:
        """Append what the Redis sources hold past each one's cursor: the lock events of
        every lock domain, and the system events (agents' health, audit checkpoints)."""
        domains = sorted(str(d) for d in await self.redis.smembers(lock_keys.DOMAINS))
        sources: list[tuple[str, str, Convert]] = [
            (f"lock:{domain}", lock_keys.events(domain), functools.partial(from_lock_entry, domain))
            for domain in domains
        ]
        sources.append((SYSTEM_SOURCE, self.system_events, from_stored_entry))
        names = [name for name, _, _ in sources]
        cursors: list[str | None] = await self.redis.hmget(self.keys.cursors, names)  # type: ignore[assignment]
        total = 0
        for (source, key, convert), cursor in zip(sources, cursors, strict=True):
            while True:
                entries = stream_entries(
                    await self.redis.xrange(
                        key, min=f"({cursor}" if cursor else "-", count=self.batch
                    )
                )
                events = [(eid, convert(eid, fields)) for eid, fields in entries]
                total += await self._offer(source, events)
                if len(entries) < self.batch:
                    break
                cursor = entries[-1][0]
        return total

    async def _offer(self, source: str, events: list[tuple[str, StoredEvent]]) -> int:
        if not events:
            return 0
        args: list[str] = [str(self.maxlen), source]
        for position, stored in events:
            args += [position, stored.type, stored.subject, stored.envelope]
        keys = [self.keys.stream, self.keys.sequence, self.keys.cursors, self.keys.epoch]
        appended, _last_seq = await self._append(keys=keys, args=args)
        return int(appended)

    async def run(self, poll_seconds: float, *, listen: AsyncEngine | None = None) -> None:
        """Relay until cancelled: the audit log at once after a commit (this process's;
        any process's with a ``listen`` engine on PostgreSQL), every source every poll."""
        nudge = asyncio.Event()
        hearing = [asyncio.create_task(hear_commits(listen, nudge))] if listen else []
        try:
            with audit.APPENDED.waking(nudge):
                await self._relay_until_cancelled(nudge, poll_seconds)
        finally:
            await cancel_and_wait(hearing)

    async def _relay_until_cancelled(self, nudge: asyncio.Event, poll_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        gap = min(MIN_GAP_SECONDS, poll_seconds)
        # When the last pass woken by a commit started: the gap is kept between those
        # only, so a commit right after a periodic poll is not held back.
        last_woken = -gap
        incident = Incident("event relay", log, cap=poll_seconds * 4)
        while True:
            nudge.clear()
            started = loop.time()
            polling = started >= next_poll
            if polling:
                next_poll = started + poll_seconds
            try:
                await self.relay_audit()
                if polling:
                    await self.relay_streams()
            except Exception as exc:
                # Redis or the database is away (the cursors keep our place), or a bug in
                # one pass: live events must not stop for good.
                await asyncio.sleep(incident.failed(exc))
                next_poll = loop.time()
                continue
            incident.cleared()
            if await wait_event(nudge, max(0.0, next_poll - loop.time())):
                await asyncio.sleep(max(0.0, last_woken + gap - loop.time()))
                last_woken = loop.time()


def relay_for(runtime: Runtime, sessions: async_sessionmaker[AsyncSession] | None = None) -> Relay:
    settings = runtime.settings
    return Relay(
        runtime.redis,
        sessions or runtime.sessions,
        settings.lock_domain,
        maxlen=settings.events_maxlen,
    )


async def run_relay(runtime: Runtime) -> None:
    """Relay this runtime's audit log and lock events until cancelled, on connections of
    its own (``ade serve`` runs one in its lifespan, ``ade worker`` one too)."""
    async with db.own_engine(runtime.engine, connections=2) as engine:
        relay = relay_for(runtime, db.sessionmaker(engine))
        await relay.run(runtime.settings.events_poll_seconds, listen=engine)
