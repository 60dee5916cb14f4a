"""The task queue on every Redis backend (standalone, embedded, Cluster): dedupe, bands,
delayed retries, reclaim of idle messages, touching live ones, dead letters."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from community_ade.execution.queue import TaskQueue, band_of
from community_ade.infra.redis_client import AnyRedis


@pytest.fixture
def queue(redis_client: AnyRedis, domain: str) -> TaskQueue:
    return TaskQueue(redis_client, name=domain)  # its keys go with the test's domain


def new_id() -> str:
    return str(uuid.uuid4())


async def test_enqueue_dedupes_and_claim_takes_the_urgent_band_first(queue: TaskQueue) -> None:
    low, normal, urgent = new_id(), new_id(), new_id()
    assert await queue.enqueue(low, 900)
    assert await queue.enqueue(normal, 100)
    assert not await queue.enqueue(normal, 100)
    assert await queue.enqueue(urgent, 1)
    order = []
    for _ in range(3):
        (message,) = await queue.claim("c1", 1)
        order.append(message.task_id)
    assert order == [urgent, normal, low]
    assert await queue.claim("c1", 5) == []
    depth = await queue.depth()
    assert depth.pending == 3
    assert not depth.empty


async def test_a_claim_after_the_streams_were_deleted_recreates_them(
    queue: TaskQueue, redis_client: AnyRedis
) -> None:
    await queue.ensure_groups()
    for stream in queue.keys.streams:
        await redis_client.delete(stream)
    assert await queue.claim("c1", 1) == []  # NOGROUP: the groups are created again
    task = new_id()
    await queue.enqueue(task, 100)
    assert [m.task_id for m in await queue.claim("c1", 1)] == [task]


async def test_a_blocking_claim_wakes_for_any_band(queue: TaskQueue) -> None:
    task = new_id()

    async def later() -> None:
        await asyncio.sleep(0.2)
        await queue.enqueue(task, 500)

    producer = asyncio.create_task(later())
    messages = await queue.claim("c1", 1, block_ms=5000)
    await producer
    assert [m.task_id for m in messages] == [task]
    assert messages[0].band == band_of(500)


async def test_ack_settles_once_and_frees_the_task_for_a_new_enqueue(queue: TaskQueue) -> None:
    task = new_id()
    await queue.enqueue(task, 100)
    (message,) = await queue.claim("c1", 1)
    assert not await queue.enqueue(task, 100)  # still pending: already queued
    await queue.ack(message)
    await queue.ack(message)  # a second settle is harmless
    assert (await queue.depth()).empty
    assert await queue.enqueue(task, 100)


async def test_a_retry_waits_in_the_delayed_set_then_returns_to_its_band(
    queue: TaskQueue,
) -> None:
    task = new_id()
    await queue.enqueue(task, 10)
    (message,) = await queue.claim("c1", 1)
    await queue.retry(message, 0.3)
    depth = await queue.depth()
    assert (depth.delayed, depth.pending, sum(depth.ready)) == (1, 0, 0)
    assert not await queue.enqueue(task, 10)  # waiting to retry counts as queued
    wait = await queue.promote_due()
    assert wait is not None
    assert 0 < wait <= 0.3
    assert await queue.claim("c1", 1) == []
    await asyncio.sleep(wait + 0.05)
    assert await queue.promote_due() is None
    (again,) = await queue.claim("c1", 1)
    assert again.task_id == task
    assert again.band == band_of(10)


async def test_idle_messages_are_reclaimed_and_touched_ones_are_not(queue: TaskQueue) -> None:
    dead_workers, live_workers = new_id(), new_id()
    await queue.enqueue(dead_workers, 100)
    await queue.enqueue(live_workers, 100)
    messages = {m.task_id: m for m in await queue.claim("c1", 2)}
    await asyncio.sleep(0.3)
    await queue.touch("c1", [messages[live_workers]])
    reclaimed = await queue.reclaim("c2", 200)
    assert [(m.task_id, m.deliveries) for m in reclaimed] == [(dead_workers, 2)]
    assert await queue.reclaim("c2", 200) == []  # now c2's, and not idle


async def test_dead_letters_keep_the_reason(queue: TaskQueue) -> None:
    task = new_id()
    await queue.enqueue(task, 100)
    (message,) = await queue.claim("c1", 1)
    await queue.dead(message, "delivered 21 times")
    depth = await queue.depth()
    assert depth.empty
    assert depth.dead == 1
    (letter,) = await queue.dead_letters()
    assert letter["task"] == task
    assert letter["reason"] == "delivered 21 times"
