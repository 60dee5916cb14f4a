"""Fan-out: one blocking XREAD loop per process feeds every WebSocket client of it.

Each subscriber has a bounded queue. The hub never waits for a client: an event that
does not fit in a subscriber's queue cuts that subscriber off (``cut_off`` is set, it
leaves the hub), so a slow client costs at most its queue, and the others go on.

Resume without gap or duplicate (read after subscribe): a client first subscribes (its
queue starts collecting live events), then reads the stream past its ``since`` with
XRANGE, then drains the queue, skipping what the read already gave it. An event the
read missed was appended after the subscription, so the hub delivers it to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from community_ade.events.access import watch_access
from community_ade.events.envelope import Filter, event_frame, seq_of, topic_of
from community_ade.events.keys import EventKeys, stream_entries
from community_ade.events.relay import run_relay
from community_ade.infra.aio import Incident, cancel_and_wait, stop_if_cancelled
from community_ade.infra.redis_client import AnyRedis
from community_ade.runtime import Runtime

log = logging.getLogger(__name__)

PAGE = 500
BLOCK_MS = 1000  # also how soon a lost stream is noticed when no event comes
RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Entry:
    """An events stream entry, as a reader needs it."""

    seq: int
    topic: str
    subject: str
    envelope: str

    def frame(self) -> str:
        return event_frame(self.seq, self.envelope)


def _entry(entry_id: str, fields: dict[str, str]) -> Entry:
    return Entry(seq_of(entry_id), topic_of(fields["type"]), fields["subject"], fields["e"])


# WebSocket close codes of a subscriber the hub ends.
CLOSE_SLOW_CONSUMER = (4408, "slow consumer: fell too far behind")
CLOSE_STREAM_RESET = (1012, "the events stream was reset: reload, then reconnect without since")
CLOSE_ACCESS_ENDED = (
    4401,
    "access ended: the token was revoked or expired, its owner disabled, or the session logged out",
)


@dataclass(eq=False)
class Subscriber:
    """One client's place in the hub: what it wants, and its bounded queue of
    ``(seq, frame)`` (seq None: a frame that is not an event, e.g. a ping). When the hub
    ends it, ``cut_off`` is set and ``ended`` says how to close."""

    filter: Filter
    queue: asyncio.Queue[tuple[int | None, str]]
    # Who it is for, and the hash of the token it was opened with: the hub ends it when
    # that token stops authenticating (events.access).
    principal_id: uuid.UUID
    token_hash: str
    cut_off: asyncio.Event = field(default_factory=asyncio.Event)
    ended: tuple[int, str] = CLOSE_SLOW_CONSUMER


class Hub:
    def __init__(self, redis_client: AnyRedis, keys: EventKeys, *, buffer: int) -> None:
        self.redis = redis_client
        self.keys = keys
        # Read no more at once than a client may queue, and let the clients' senders run
        # between reads: a burst must not cut off a client that keeps up.
        self.read_count = min(PAGE, buffer)
        self.subscribers: set[Subscriber] = set()
        self.slow_disconnects = 0
        self.delivered = 0

    def subscribe(
        self, event_filter: Filter, buffer: int, *, principal_id: uuid.UUID, token_hash: str
    ) -> Subscriber:
        subscriber = Subscriber(
            event_filter, asyncio.Queue(maxsize=buffer), principal_id, token_hash
        )
        self.subscribers.add(subscriber)
        return subscriber

    def count_of(self, principal_id: uuid.UUID) -> int:
        """Open subscriptions of one principal in this process."""
        return sum(1 for s in self.subscribers if s.principal_id == principal_id)

    def token_hashes(self) -> set[str]:
        return {s.token_hash for s in self.subscribers}

    def end_access(self, live_hashes: set[str], checked: set[str]) -> int:
        """End every subscriber whose token was ``checked`` and is not among
        ``live_hashes``; how many were ended."""
        ended = [
            s
            for s in tuple(self.subscribers)
            if s.token_hash in checked and s.token_hash not in live_hashes
        ]
        for subscriber in ended:
            self._end(subscriber, CLOSE_ACCESS_ENDED)
        return len(ended)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def newest_seq(self) -> int:
        return int(await self.redis.get(self.keys.sequence) or 0)

    async def oldest_seq(self) -> int | None:
        """The oldest seq the stream still holds (None: empty)."""
        first = stream_entries(await self.redis.xrange(self.keys.stream, count=1))
        return seq_of(first[0][0]) if first else None

    async def read_after(self, seq: int, count: int = PAGE) -> list[Entry]:
        """Up to ``count`` retained events with a seq above ``seq``, oldest first."""
        entries = stream_entries(
            await self.redis.xrange(self.keys.stream, min=f"({seq}-0", count=count)
        )
        return [_entry(entry_id, fields) for entry_id, fields in entries]

    def dispatch(self, entry: Entry) -> None:
        """Queue one event for every subscriber it matches, cutting off any that is full."""
        frame: str | None = None
        for subscriber in tuple(self.subscribers):
            if not subscriber.filter.matches(entry.topic, entry.subject):
                continue
            frame = frame or entry.frame()
            try:
                subscriber.queue.put_nowait((entry.seq, frame))
            except asyncio.QueueFull:
                self._end(subscriber, CLOSE_SLOW_CONSUMER)
                self.slow_disconnects += 1
            else:
                self.delivered += 1

    def _end(self, subscriber: Subscriber, close: tuple[int, str]) -> None:
        self.unsubscribe(subscriber)
        subscriber.ended = close
        subscriber.cut_off.set()

    async def run(self) -> None:
        """Tail the stream until cancelled, from its newest entry when started."""
        last_id: str | None = None
        epoch: str | None = None
        incident = Incident("events fan-out reading the stream", log, cap=RETRY_SECONDS * 5)
        while True:
            stop_if_cancelled()
            try:
                if last_id is None:
                    epoch = await self._epoch()
                    newest = stream_entries(await self.redis.xrevrange(self.keys.stream, count=1))
                    last_id = newest[0][0] if newest else "0-0"
                reply: list[tuple[str, Any]] = await self.redis.xread(  # type: ignore[assignment]
                    {self.keys.stream: last_id}, count=self.read_count, block=BLOCK_MS
                )
                current = await self._epoch()
            except Exception as exc:
                await asyncio.sleep(incident.failed(exc))
                continue
            incident.cleared()
            if current != epoch and epoch is not None:
                self._reset()
                last_id = None
                continue
            epoch = current
            for _stream, entries in reply or ():
                for entry_id, fields in stream_entries(entries):
                    self.dispatch(_entry(entry_id, fields))
                    last_id = entry_id
            await asyncio.sleep(0)

    async def _epoch(self) -> str | None:
        epoch = await self.redis.get(self.keys.epoch)
        return None if epoch is None else str(epoch)

    def _reset(self) -> None:
        """The stream was lost and its seqs start over: what clients saw no longer
        lines up with it, so every one is closed and must reload."""
        log.warning("the events stream was reset; closing every WebSocket client")
        for subscriber in tuple(self.subscribers):
            self._end(subscriber, CLOSE_STREAM_RESET)


@contextlib.asynccontextmanager
async def live_events(runtime: Runtime) -> AsyncIterator[Hub]:
    """Run this process's relay and fan-out hub while the block lasts (``ade serve``)."""
    settings = runtime.settings
    hub = Hub(
        runtime.redis,
        EventKeys.for_namespace(settings.lock_domain),
        buffer=settings.ws_client_buffer,
    )
    tasks = [
        asyncio.create_task(run_relay(runtime), name="ade-events-relay"),
        asyncio.create_task(hub.run(), name="ade-events-fanout"),
        asyncio.create_task(watch_access(hub, runtime), name="ade-events-access"),
    ]
    try:
        yield hub
    finally:
        await cancel_and_wait(tasks)
