"""The execution pipeline on real Redis and real SQLite/PostgreSQL: a submitted,
auto-approved task is queued after its commit, applied by a worker under its locks,
recorded COMPLETED; duplicates never apply twice; failures roll back; manual apply."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import Backend
from execution_util import (
    AUTO,
    auto_approving_runtime,
    events_of,
    make_user,
    reload,
    set_policy,
    submit,
    write_payload,
)
from lockutil import eventually, queue_of

from community_ade.approvals.states import TaskState
from community_ade.execution.queue import band_of
from community_ade.execution.service import ExecutionService
from community_ade.execution.worker import Worker
from community_ade.locks import keys
from community_ade.runtime import Runtime

# The whole pipeline on standalone Redis and on Cluster (queue and lock keys hash-tagged).
pytestmark = pytest.mark.parametrize(
    "backend", ["server", pytest.param("cluster", marks=pytest.mark.cluster)], indirect=True
)


@pytest.fixture
async def runtime(
    database_url: str, backend: Backend, tmp_path: Path, domain: str
) -> AsyncIterator[Runtime]:
    async with auto_approving_runtime(database_url, backend.url, tmp_path, domain) as rt:
        yield rt


def ws(runtime: Runtime) -> Path:
    return runtime.settings.allowed_workspace_roots[0] / "ws"


async def burst(runtime: Runtime, concurrency: int = 2) -> Worker:
    worker = Worker(runtime, concurrency=concurrency, burst=True)
    await asyncio.wait_for(worker.run(), 60)
    return worker


async def test_an_auto_approved_task_is_queued_after_commit_and_applied(
    runtime: Runtime,
) -> None:
    alice = await make_user(runtime)
    (ws(runtime) / "app.conf").write_text("debug = false\n")
    task = await submit(
        runtime, alice, "files.write", write_payload(ws(runtime), "app.conf", "debug = true\n")
    )
    assert task.state == TaskState.APPROVED
    await runtime.queue.drain_background()
    depth = await runtime.queue.depth()
    assert depth.ready[band_of(100)] == 1  # queued by the commit, not by the reconciler
    worker = await burst(runtime)
    done = await reload(runtime, task.id)
    assert done.state == TaskState.COMPLETED
    assert (ws(runtime) / "app.conf").read_text() == "debug = true\n"
    assert done.fence is not None
    assert done.fence > 0
    assert done.attempts == 1
    assert done.worker_id == worker.worker_id
    assert done.snapshot is not None
    assert done.result is not None
    assert done.result["fence"] == str(done.fence)
    assert done.duration_ms is not None
    assert done.duration_ms >= 0
    assert done.finished_at is not None
    assert worker.stats.completed == 1
    assert (await events_of(runtime, task.id))[-2:] == ["task:applying", "task:completed"]
    assert (await runtime.queue.depth()).empty


async def test_a_duplicated_message_does_not_apply_twice(runtime: Runtime) -> None:
    alice = await make_user(runtime)
    log = ws(runtime) / "log.txt"
    task = await submit(runtime, alice, "files.write", write_payload(ws(runtime), "log.txt", "1\n"))
    await runtime.queue.drain_background()
    # Three more deliveries of the same task: straight onto the stream, past the dedupe.
    for _ in range(3):
        await runtime.redis.xadd(runtime.queue.keys.stream(band_of(100)), {"task": str(task.id)})
    worker = await burst(runtime, concurrency=4)
    done = await reload(runtime, task.id)
    assert done.state == TaskState.COMPLETED
    assert done.attempts == 1
    assert worker.stats.completed == 1
    assert worker.stats.ignored == 3
    assert log.read_text() == "1\n"
    assert (await events_of(runtime, task.id)).count("task:applying") == 1


async def test_enqueue_refuses_a_task_already_queued(runtime: Runtime) -> None:
    task_id = str(uuid.uuid4())
    assert await runtime.queue.enqueue(task_id, 100)
    assert not await runtime.queue.enqueue(task_id, 100)
    assert not await runtime.queue.enqueue(task_id, 10)
    assert sum((await runtime.queue.depth()).ready) == 1


async def test_urgent_bands_are_claimed_first(runtime: Runtime) -> None:
    ids = {p: str(uuid.uuid4()) for p in (500, 100, 10)}
    for priority, task_id in ids.items():
        await runtime.queue.enqueue(task_id, priority)
    claimed = [m.task_id for m in await runtime.queue.claim("c1", 1) for _ in (0,)]
    claimed += [m.task_id for m in await runtime.queue.claim("c1", 1)]
    claimed += [m.task_id for m in await runtime.queue.claim("c1", 1)]
    assert claimed == [ids[10], ids[100], ids[500]]


async def test_a_message_for_a_missing_task_is_acknowledged(runtime: Runtime) -> None:
    await runtime.queue.enqueue(str(uuid.uuid4()), 100)
    await runtime.queue.enqueue("not-a-uuid", 100)
    worker = await burst(runtime)
    depth = await runtime.queue.depth()
    assert depth.empty
    assert depth.dead == 1
    assert worker.stats.ignored == 1


async def test_the_reconciler_queues_an_approved_task_that_never_was(runtime: Runtime) -> None:
    alice = await make_user(runtime)
    task = await submit(runtime, alice, "files.write", write_payload(ws(runtime), "x.txt", "x\n"))
    await runtime.queue.drain_background()
    # Lose the message, as if the process had died between commit and enqueue.
    for stream in runtime.queue.keys.streams:
        await runtime.redis.delete(stream)
    await runtime.redis.delete(runtime.queue.keys.index)
    await burst(runtime)
    assert (await reload(runtime, task.id)).state == TaskState.COMPLETED
    assert (ws(runtime) / "x.txt").read_text() == "x\n"


async def test_a_manual_apply_task_waits_for_its_request(runtime: Runtime) -> None:
    await set_policy(runtime, AUTO | {"apply": {"files.write": "manual"}})
    alice = await make_user(runtime)
    task = await submit(runtime, alice, "files.write", write_payload(ws(runtime), "m.txt", "m\n"))
    assert task.state == TaskState.APPROVED
    await runtime.queue.drain_background()
    assert (await runtime.queue.depth()).empty
    await burst(runtime)
    assert (await reload(runtime, task.id)).state == TaskState.APPROVED
    assert not (ws(runtime) / "m.txt").exists()


async def test_a_grant_older_than_the_tasks_fence_neither_starts_nor_adopts_it(
    runtime: Runtime,
) -> None:
    """A worker that stalled past its lease wakes up with its old grant: it must not adopt
    the apply a newer holder started meanwhile, nor start the task once that holder sent
    it back for a retry."""
    alice = await make_user(runtime)
    task = await submit(runtime, alice, "files.write", write_payload(ws(runtime), "f.txt", "1\n"))
    stale, fresh = (
        ExecutionService(runtime.sessions, worker_id=name, plan_context=runtime.plan_context())
        for name in ("stale", "fresh")
    )
    started = await fresh.start(task, 200, None)
    assert started is not None
    assert await stale.take_over(task.id, 100) is None
    assert await stale.take_over(task.id, 200) is None  # the same grant adopts nothing
    assert await fresh.retry(task.id, 200, "transient", "nothing_to_roll_back", 0.0)
    again = await reload(runtime, task.id)
    assert await stale.start(again, 100, None) is None
    assert (await reload(runtime, task.id)).state == TaskState.APPROVED
    adopted = await fresh.start(again, 300, None)
    assert adopted is not None
    assert (await fresh.take_over(task.id, 400)) is not None
    assert (await reload(runtime, task.id)).fence == 400


async def test_a_lock_request_that_ends_while_it_waits_is_queued_again(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's lock request is gone while it waits (Redis lost the lock domain): the
    task is queued again with a short backoff, not left pending as an unexpected error
    until its message is reclaimed."""
    caplog.set_level(logging.INFO, logger="community_ade")
    alice = await make_user(runtime)
    task = await submit(runtime, alice, "files.write", write_payload(ws(runtime), "g.txt", "1\n"))
    await runtime.queue.drain_background()
    blocker = await runtime.locks.acquire("blocker", "someone", {f"task:{task.id}": "exclusive"})
    worker = Worker(runtime, concurrency=1)
    running = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: queue_of(runtime.locks, f"task:{task.id}"), what="a waiter")
        prefix = keys.domain_prefix(runtime.settings.lock_domain)
        async for key in runtime.redis.scan_iter(match=prefix + "*", count=1000):
            await runtime.redis.delete(key)
        for _ in range(300):
            if (await reload(runtime, task.id)).state == TaskState.COMPLETED:
                break
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await runtime.locks.release(blocker)
    assert (await reload(runtime, task.id)).state == TaskState.COMPLETED
    assert "locks not granted" in caplog.text
    assert "unexpected error" not in caplog.text
