"""Recovery of the pipeline from failures of what it depends on, with real worker
processes: a Redis restarted empty (the consumer group, scripts, delayed set and index all
gone), a lease lost during apply, a paused worker whose command must not outlive its
lease. Each test runs its own ``redis-server`` where it kills one (never the shared one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import unavailable
from execution_util import auto_approving_runtime, reload
from lockutil import PrivateRedis
from sqlalchemy import text
from workerutil import FAST, Workers, slow_plugin_site, slow_task, target, wait_for_state

from community_ade.approvals.states import TaskState
from community_ade.runtime import Runtime
from community_ade.storage import db

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
