"""Recovery of the pipeline from failures of what it depends on, with real worker
processes: a Redis restarted empty (the consumer group, scripts, delayed set and index all
gone), a lease lost during apply, a paused worker whose command must not outlive its
lease. Each test runs its own ``redis-server`` where it kills one (never the shared one)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import unavailable
from execution_util import auto_approving_runtime, make_user, reload, submit
from lockutil import PrivateRedis
from sqlalchemy import select, text
from workerutil import (
    FAST,
    Workers,
    read_when_there,
    slow_plugin_site,
    slow_task,
    target,
    wait_for_state,
)

from community_ade.approvals.states import TaskState
from community_ade.execution.worker import Worker
from community_ade.runtime import Runtime
from community_ade.storage import db
from community_ade.storage.models import AuditEvent

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if PrivateRedis.binary() is None:
        unavailable("no redis-server binary to run a private server")
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    with slow_plugin_site(tmp_path) as site:
        yield site


@pytest.fixture
async def runtime(
    database_url: str, private_redis: PrivateRedis, tmp_path: Path, domain: str, site: Path
) -> AsyncIterator[Runtime]:
    async with auto_approving_runtime(database_url, private_redis.url, tmp_path, domain) as rt:
        yield rt


@pytest.fixture
def workers(runtime: Runtime, site: Path, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(runtime, site, tmp_path)
    yield pool
    pool.close()


@pytest.mark.slow
async def test_workers_take_work_again_after_redis_restarts_empty(
    runtime: Runtime, workers: Workers, private_redis: PrivateRedis
) -> None:
    first = await slow_task(runtime, 0, "before.txt")
    for _ in range(2):
        workers.start()
    await wait_for_state(runtime, first, "COMPLETED", 60)

    private_redis.shutdown_nosave()
    await asyncio.sleep(3)  # down long enough for the workers' retries to give up
    private_redis.start()  # same port, empty: groups, scripts, delayed set, index gone
    await asyncio.sleep(2)  # the workers have found it back before the next task comes

    # Its enqueue lands on a stream with no group: the workers' claim or their
    # reconciler (every second here) must still get it done.
    task_id = await slow_task(runtime, 0, "after.txt")
    await wait_for_state(runtime, task_id, "COMPLETED", 20)
    assert target(runtime, "after.txt").read_text() == "applied\n"
    assert all(proc.poll() is None for proc in workers.procs), workers.outputs()
    done = await reload(runtime, task_id)
    assert done.state == TaskState.COMPLETED


async def kill_database_connections(database_url: str, times: int, every: float) -> None:
    """Terminate every other connection to the test's database, ``times`` times."""
    killer = db.create_engine(database_url)
    try:
        for _ in range(times):
            async with killer.connect() as connection:
                await connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            await asyncio.sleep(every)
    finally:
        await killer.dispose()


async def test_a_worker_outlives_database_connections_killed_under_it(
    runtime: Runtime, site: Path, tmp_path: Path, database_url: str
) -> None:
    # Reconciling every 0.3 s, its pooled connection is never idle long enough to be
    # pinged first: the reconciler meets the killed connections.
    pool = Workers(runtime, site, tmp_path, FAST | {"ADE_WORKER_RECONCILE_SECONDS": "0.3"})
    try:
        worker = pool.start()
        await wait_for_output(pool, 0, "started", 30)
        await kill_database_connections(database_url, times=10, every=0.3)
        assert worker.poll() is None, pool.output(0)
        task_id = await slow_task(runtime, 0)
        await wait_for_state(runtime, task_id, "COMPLETED", 30)
        assert worker.poll() is None, pool.output(0)
        assert "reconciling approved tasks failing" in pool.output(0)
    finally:
        pool.close()


async def wait_for_output(pool: Workers, index: int, text: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while text not in pool.output(index):
        assert time.monotonic() < deadline, pool.output(index)
        await asyncio.sleep(0.1)


async def test_a_rollback_refused_by_a_newer_fence_is_retried_not_failed(
    runtime: Runtime,
) -> None:
    """A worker loses its lease while applying and a newer grant writes the target before
    its rollback: the rollback is refused by the fence, which means this attempt left
    nothing there. The task is retried (and completes), not FAILED ``rollback_failed``."""
    path = target(runtime)
    task_id = await slow_task(runtime, 2)
    worker = Worker(runtime, concurrency=1)
    running = asyncio.create_task(worker.run())
    try:
        await wait_for_state(runtime, task_id, "APPLYING", 30)
        applying = (await reload(runtime, task_id)).fence
        assert applying is not None
        # A newer holder (any later grant of the domain) writes the target ...
        async with runtime.locks.hold("newer", "someone", {"elsewhere": "exclusive"}) as newer:
            await asyncio.to_thread(Path(f"{path}.fence").write_text, str(newer.fence))
        # ... after the applying worker's lease ended.
        await runtime.locks.force_release(f"task:{task_id}", "test: the lease ran out")
        await wait_for_state(runtime, task_id, "COMPLETED", 30)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    done = await reload(runtime, task_id)
    assert done.attempts == 2
    assert done.fence is not None
    assert done.fence > applying
    assert path.read_text() == "applied\n"  # the retry's line only
    retried = await audit_data(runtime, task_id, "task:apply_retry")
    assert [r["rollback_outcome"] for r in retried] == ["nothing_to_roll_back"]
    assert read_when_there(Path(f"{path}.refused"), 10).startswith(f"{applying}\n")


async def audit_data(runtime: Runtime, task_id: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.data)
            .where(AuditEvent.subject == f"task:{task_id}", AuditEvent.type == kind)
            .order_by(AuditEvent.seq)
        )
        return [dict(r) for r in rows]


TICKS = 15


async def test_a_stopped_workers_command_dies_with_its_lease_before_the_next_attempt(
    runtime: Runtime, workers: Workers
) -> None:
    """SIGSTOP a worker 2 s into a 15 s shell apply: the watchdog kills its command once
    the lease runs out, before another worker is granted the task, so the side effects
    show one run (the next attempt's); no tick of the first run comes after the second
    one began."""
    cwd = target(runtime).parent
    ticks = cwd / "ticks"
    script = f'for i in $(seq {TICKS}); do echo "$ADE_FENCE $$ $i" >> ticks; sleep 1; done'
    payload = {"command": ["/bin/sh", "-c", script], "cwd": str(cwd), "timeout_seconds": 60}
    task = await submit(runtime, await make_user(runtime), "shell", payload)
    assert task.state == TaskState.APPROVED
    await runtime.queue.drain_background()

    stopped = workers.start()
    await wait_for_lines(ticks, 2, 60)  # 2 s into the apply
    stopped.send_signal(signal.SIGSTOP)
    try:
        workers.start()
        await wait_for_state(runtime, task.id, "COMPLETED", 90)
    finally:
        stopped.send_signal(signal.SIGCONT)
    done = await reload(runtime, task.id)
    assert done.attempts == 2

    runs: dict[str, list[int]] = {}
    order = []
    for line in lines_of(ticks):
        fence, _pid, tick = line.split()
        runs.setdefault(fence, []).append(int(tick))
        order.append(fence)
    first, second = list(runs)
    assert str(done.fence) == second
    assert runs[second] == list(range(1, TICKS + 1))  # the one complete run
    assert len(runs[first]) < TICKS  # cut short ...
    assert first not in order[order.index(second) :], order  # ... before the second began
    assert "killed command group" in workers.output(0)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def wait_for_lines(path: Path, count: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while len(await asyncio.to_thread(lines_of, path)) < count:
        assert time.monotonic() < deadline, f"{path} has fewer than {count} lines"
        await asyncio.sleep(0.05)
