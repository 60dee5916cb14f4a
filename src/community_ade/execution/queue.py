"""The task queue on Redis Streams (architecture §6).

One stream per priority band, read by one consumer group: a worker always takes from
the most urgent band that has work. A retry waits in a delayed sorted set until its
backoff has passed. A message whose worker died stays pending in the group and is taken
over with ``XAUTOCLAIM`` once it has been idle longer than the reclaim time (live workers
touch their messages, so only a dead or paused one's go idle). A message delivered too
often without being settled goes to the dead-letter stream.

Every key shares the hash tag ``{tasks}`` (one Cluster slot), and every multi-key step
is one Lua script in ``lua/`` whose header names each KEY and ARGV. Delivery is at least
once; the worker makes the *effect* exactly once (a compare-and-set on the task's state,
and the fence).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import redis

from community_ade.errors import ServiceUnavailable
from community_ade.infra.lua import register_lua
from community_ade.infra.redis_client import AnyRedis

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Upper priority bounds of the bands but the last: priority ≤ 50 is band 0 (urgent),
#: ≤ 100 (the default priority) band 1, anything larger band 2.
BAND_LIMITS = (50, 100)
BANDS = len(BAND_LIMITS) + 1
GROUP = "workers"
DEAD_MAXLEN = 10_000
_PACKAGE = "community_ade.execution"


def band_of(priority: int) -> int:
    """The band of a priority (lower runs first)."""
    for band, limit in enumerate(BAND_LIMITS):
        if priority <= limit:
            return band
    return len(BAND_LIMITS)


@dataclass(frozen=True)
class QueueKeys:
    """The queue's key names; all share one hash tag."""

    prefix: str

    @classmethod
    def named(cls, name: str = "tasks") -> QueueKeys:
        return cls(f"ade:queue:{{{name}}}:")

    @property
    def index(self) -> str:
        return self.prefix + "index"

    @property
    def delayed(self) -> str:
        return self.prefix + "delayed"

    @property
    def dead(self) -> str:
        return self.prefix + "dead"

    def stream(self, band: int) -> str:
        return f"{self.prefix}band:{band}"

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.stream(b) for b in range(BANDS))

    @property
    def script_keys(self) -> list[str]:
        """The keys every queue script takes, in its header's order."""
        return [self.index, self.delayed, self.dead, *self.streams]


@dataclass(frozen=True)
class Message:
    """One delivery of a task: settle it exactly once with ack, retry or dead."""

    band: int
    entry_id: str
    task_id: str
    deliveries: int = 1


@dataclass(frozen=True)
class QueueDepth:
    ready: tuple[int, ...]  # messages per band not yet delivered or not yet acknowledged
    pending: int  # delivered, not acknowledged
    delayed: int
    dead: int

    @property
    def empty(self) -> bool:
        return not any(self.ready) and not self.pending and not self.delayed


class TaskQueue:
    """Enqueue, claim, settle, delay and reclaim tasks (one per Runtime)."""

    def __init__(self, redis: AnyRedis, *, name: str = "tasks") -> None:
        self.redis = redis
        self.keys = QueueKeys.named(name)
        self._enqueue = register_lua(redis, _PACKAGE, "enqueue")
        self._promote = register_lua(redis, _PACKAGE, "promote")
        self._settle = register_lua(redis, _PACKAGE, "settle")
        self._claim = register_lua(redis, _PACKAGE, "claim")
        self._groups_ready = False
        self._background: set[asyncio.Task[Any]] = set()

    # -- producing ------------------------------------------------------------------

    async def enqueue(self, task_id: str, priority: int) -> bool:
        """Queue a task now; False if it was already queued (or waiting to retry)."""
        entry = await self._script(self._enqueue, task_id, band_of(priority))
        return bool(entry)

    async def enqueue_many(self, tasks: Iterable[tuple[str, int]]) -> int:
        """Queue several tasks; the number newly queued."""
        added = 0
        for task_id, priority in tasks:
            added += await self.enqueue(task_id, priority)
        return added

    def enqueue_soon(self, tasks: Sequence[tuple[str, int]]) -> None:
        """Queue in the background (after a commit, from synchronous code). A failure is
        only logged: the worker's reconciler queues every approved task it finds."""

        async def run() -> None:
            try:
                await self.enqueue_many(tasks)
            except (ServiceUnavailable, redis.RedisError) as exc:
                log.warning("could not queue %d approved task(s): %s", len(tasks), exc)

        job = asyncio.get_running_loop().create_task(run(), name="ade-enqueue")
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    async def drain_background(self) -> None:
        """Wait for background enqueues (before closing the client)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- consuming ------------------------------------------------------------------

    async def ensure_groups(self) -> None:
        """Create the band streams and their consumer group where missing. From id 0: a
        stream that outlived its group (or got entries before the group was created
        again) has every entry delivered."""
        if self._groups_ready:
            return
        for stream in self.keys.streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                raise ServiceUnavailable(f"Redis unreachable: {exc}") from exc
        self._groups_ready = True

    async def claim(self, consumer: str, count: int, *, block_ms: int = 0) -> list[Message]:
        """Up to ``count`` new messages, most urgent band first; with ``block_ms``, wait
        that long for one when every band is empty."""
        await self.ensure_groups()
        reply = await self._script(self._claim, GROUP, consumer, count)
        if reply:
            band, entries = reply
            return self._messages(self.keys.stream(int(band)), _entries(entries))
        if block_ms <= 0:
            return []
        streams = dict.fromkeys(self.keys.streams, ">")
        read = await self._call(
            partial(self.redis.xreadgroup, GROUP, consumer, streams, count=count, block=block_ms)  # type: ignore[arg-type]
        )
        return [
            m for stream, entries in _stream_items(read) for m in self._messages(stream, entries)
        ]

    def _messages(self, stream: str, entries: Any, deliveries: int = 1) -> list[Message]:
        band = self.keys.streams.index(stream)
        out = []
        for entry_id, fields in entries or ():
            if fields is None:  # deleted meanwhile (settled by another delivery)
                continue
            out.append(Message(band, entry_id, str(fields.get("task", "")), deliveries))
        return out

    async def ack(self, message: Message) -> None:
        await self._settle_as(message, "ack", "")

    async def retry(self, message: Message, delay_s: float) -> None:
        """Acknowledge and queue the task again once ``delay_s`` has passed."""
        await self._settle_as(message, "retry", str(max(0, round(delay_s * 1000))))

    async def dead(self, message: Message, reason: str) -> None:
        """Acknowledge and record the message in the dead-letter stream."""
        log.error("task %s dead-lettered: %s", message.task_id, reason)
        await self._settle_as(message, "dead", reason)

    async def _settle_as(self, message: Message, mode: str, arg: str) -> None:
        await self._script(
            self._settle,
            GROUP,
            message.band,
            message.entry_id,
            message.task_id,
            mode,
            arg,
            DEAD_MAXLEN,
        )

    async def promote_due(self, limit: int = 100) -> float | None:
        """Move due retries onto their streams; seconds until the next one (None: none)."""
        _moved, wait_ms = await self._script(self._promote, limit)
        return None if int(wait_ms) < 0 else int(wait_ms) / 1000

    async def touch(self, consumer: str, messages: Iterable[Message]) -> None:
        """Reset the idle time of messages still being worked on, so that no other
        worker reclaims them while this one is alive."""
        by_band: dict[int, list[Any]] = {}
        for m in messages:
            by_band.setdefault(m.band, []).append(m.entry_id)
        for band, ids in by_band.items():
            stream = self.keys.stream(band)
            await self._call(
                partial(self.redis.xclaim, stream, GROUP, consumer, 0, ids, justid=True)
            )

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int = 20) -> list[Message]:
        """Take over messages idle longer than ``min_idle_ms`` (their worker died or
        stalled), with how often each has now been delivered."""
        await self.ensure_groups()
        out: list[Message] = []
        for stream in self.keys.streams:
            reply: Any = await self._call(
                partial(
                    self.redis.xautoclaim, stream, GROUP, consumer, min_idle_ms, "0-0", count=count
                )
            )
            entries = reply[1] if reply else []
            for m in self._messages(stream, entries):
                info: Any = await self._call(
                    partial(self.redis.xpending_range, stream, GROUP, m.entry_id, m.entry_id, 1)
                )
                times = int(info[0]["times_delivered"]) if info else 1
                out.append(Message(m.band, m.entry_id, m.task_id, times))
        return out

    async def depth(self) -> QueueDepth:
        ready = []
        pending = 0
        for stream in self.keys.streams:
            ready.append(int(await self.redis.xlen(stream)))
            try:
                summary: Any = await self.redis.xpending(stream, GROUP)
                pending += int(summary["pending"])
            except redis.ResponseError:  # no group yet
                pass
        delayed = int(await self.redis.zcard(self.keys.delayed))
        dead = int(await self.redis.xlen(self.keys.dead))
        # A stream's length counts its pending messages too (deleted only when settled).
        return QueueDepth(tuple(ready), pending, delayed, dead)

    async def dead_letters(self, count: int = 50) -> list[dict[str, str]]:
        entries: Any = await self.redis.xrevrange(self.keys.dead, count=count)
        return [{"id": entry_id, **fields} for entry_id, fields in entries]

    async def _script(self, script: Any, *args: Any) -> Any:
        # A script lost with a restart or failover (NOSCRIPT) is loaded again by redis-py.
        argv = [str(a) for a in args]
        return await self._call(partial(script, keys=self.keys.script_keys, args=argv))

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        """``await command()``, once more after creating the streams and their group if
        Redis lost them (NOGROUP: restarted empty, failed over to a replica that had not
        got them, flushed). An unreachable Redis is ``ServiceUnavailable``.

        What else a restart loses heals by itself: the scripts (above); a retry waiting
        in the delayed set, and the index, because the task is still APPROVED in the
        database and the worker's reconciler queues every such task again.
        """
        try:
            try:
                return await command()
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("the task queue's consumer group is gone; creating it again")
            self._groups_ready = False
            await self.ensure_groups()
            return await command()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise ServiceUnavailable(f"Redis unreachable: {exc}") from exc


def _entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """A script's stream entries, {id, {field, value, ...}} each, as XREADGROUP gives them."""
    return [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True))) for entry_id, flat in raw]


def _stream_items(reply: Any) -> list[tuple[str, Any]]:
    """XREADGROUP's (RESP2) reply as (stream, entries) pairs."""
    return [(stream, entries) for stream, entries in reply or ()]
