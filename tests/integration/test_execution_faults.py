"""Fault tests with real worker processes (``python -m community_ade worker``) on a
``redis-server`` of each test's own (some kill it): a worker killed with SIGKILL
mid-apply is reclaimed and the task applied exactly once; a worker SIGSTOPped past its
lease cannot write after SIGCONT (the fence refuses it), and its shell command dies with
its lease; SIGTERM drains in-flight work and exits 0; workers take work again after
Redis restarts empty and outlive database connections killed under them; a rollback
refused by a newer fence is retried. The slow apply is a test-only executor installed as
a real entry point (``slow_write_plugin``)."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from execution_util import (
    auto_approving_runtime,
    events_of,
    make_user,
    reload,
    submit,
)
from lockutil import PrivateRedis, private_redis_server
from shellutil import site as shell_site
from slow_write_plugin import TASK_TYPE
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
from community_ade.events.keys import EventKeys, stream_entries
from community_ade.execution.worker import Worker
from community_ade.runtime import Runtime
from community_ade.storage import db
from community_ade.storage.models import AuditEvent

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis_server(tmp_path / "redis") as server:
        yield server


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
    with Workers(runtime, site, tmp_path) as pool:
        yield pool


@pytest.mark.parametrize("redis_restarts", [False, True], ids=["reclaimed", "redis-lost-it"])
async def test_a_worker_killed_mid_apply_is_reclaimed_and_applied_once(
    runtime: Runtime, workers: Workers, private_redis: PrivateRedis, redis_restarts: bool
) -> None:
    task_id = await slow_task(runtime, 3)
    first = workers.start()
    await wait_for_state(runtime, task_id, "APPLYING", 30)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    if redis_restarts:
        # Empty: no message left to reclaim; the reconciler queues the APPLYING task.
        private_redis.shutdown_nosave()
        private_redis.start()
    second = workers.start("--burst")
    assert second.wait(60) == 0, workers.output(1)
    done = await reload(runtime, task_id)
    assert done.state == TaskState.COMPLETED, done.last_error
    assert done.attempts == 2  # the interrupted attempt counts
    assert target(runtime).read_text() == "applied\n"  # exactly once
    events = await events_of(runtime, task_id)
    assert events.count("task:apply_reclaimed") == 1
    assert events[-1] == "task:completed"
    assert "adopting an interrupted apply" in workers.output(1)


async def test_a_worker_stopped_past_its_lease_cannot_write_after_it_resumes(
    runtime: Runtime, workers: Workers
) -> None:
    task_id = await slow_task(runtime, 4)
    stale = workers.start()
    await wait_for_state(runtime, task_id, "APPLYING", 30)
    fence_before = (await reload(runtime, task_id)).fence
    stale.send_signal(signal.SIGSTOP)
    try:
        fresh = workers.start("--burst")
        assert fresh.wait(90) == 0, workers.output(1)
    finally:
        stale.send_signal(signal.SIGCONT)
    done = await reload(runtime, task_id)
    assert done.state == TaskState.COMPLETED
    assert done.fence is not None
    assert fence_before is not None
    assert done.fence > fence_before
    # The stale worker's write, once it ran again, was refused by the fence.
    assert read_when_there(Path(f"{target(runtime)}.refused"), 20) == f"{fence_before}\n"
    assert target(runtime).read_text() == "applied\n"
    stale.send_signal(signal.SIGTERM)
    assert stale.wait(30) == 0, workers.output(0)
    after = await reload(runtime, task_id)
    assert after.state == TaskState.COMPLETED  # the stale worker recorded nothing
    assert after.fence == done.fence


async def test_sigterm_drains_the_task_in_flight_and_exits_zero(
    runtime: Runtime, workers: Workers
) -> None:
    task_id = await slow_task(runtime, 2)
    worker = workers.start()
    await wait_for_state(runtime, task_id, "APPLYING", 30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, workers.output(0)
    assert (await reload(runtime, task_id)).state == TaskState.COMPLETED
    assert target(runtime).read_text() == "applied\n"
    assert "draining 1 in-flight" in workers.output(0)


async def test_a_worker_alone_puts_its_events_on_the_live_stream(
    runtime: Runtime, workers: Workers
) -> None:
    """No `ade serve` runs: the worker's own relay makes its events live."""
    task_id = await slow_task(runtime, 0)
    worker = workers.start("--burst")
    assert worker.wait(60) == 0, workers.output(0)
    keys = EventKeys.for_namespace(runtime.settings.lock_domain)
    live = [
        fields["type"]
        for _, fields in stream_entries(await runtime.redis.xrange(keys.stream))
        if fields["subject"] == f"task:{task_id}"
    ]
    assert live[-2:] == ["task:applying", "task:completed"], live


async def run_burst(runtime: Runtime) -> Worker:
    worker = Worker(runtime, concurrency=2, burst=True)
    await asyncio.wait_for(worker.run(), 60)
    return worker


async def test_a_failing_apply_is_rolled_back_and_the_task_failed(runtime: Runtime) -> None:
    target(runtime).write_text("before\n")
    alice = await make_user(runtime)
    payload = {"path": str(target(runtime)), "line": "x", "seconds": 0, "fail": "permanent"}
    task = await submit(runtime, alice, TASK_TYPE, payload)
    await runtime.queue.drain_background()
    worker = await run_burst(runtime)
    failed = await reload(runtime, task.id)
    assert failed.state == TaskState.FAILED
    assert failed.rollback_outcome == "rolled_back"
    assert failed.last_error == "permanent failure"
    assert failed.result is not None
    assert failed.result["details"] == {"exit_code": 7}
    assert failed.attempts == 1
    assert target(runtime).read_text() == "before\n"  # restored exactly
    assert worker.stats.failed == 1
    assert (await events_of(runtime, task.id))[-2:] == ["task:applying", "task:failed"]


async def test_a_transient_failure_is_retried_with_backoff_until_it_succeeds(
    runtime: Runtime,
) -> None:
    alice = await make_user(runtime)
    payload = {
        "path": str(target(runtime)),
        "line": "x",
        "seconds": 0,
        "fail": "transient",
        "fail_times": 2,
    }
    task = await submit(runtime, alice, TASK_TYPE, payload)
    await runtime.queue.drain_background()
    worker = await run_burst(runtime)
    done = await reload(runtime, task.id)
    assert done.state == TaskState.COMPLETED
    assert done.attempts == 3
    assert worker.stats.retried == 2
    assert target(runtime).read_text() == "x\n"  # each failed attempt was rolled back
    events = await events_of(runtime, task.id)
    assert events.count("task:apply_retry") == 2
    assert events[-1] == "task:completed"


async def test_a_transient_snapshot_failure_is_retried_not_failed(runtime: Runtime) -> None:
    alice = await make_user(runtime)
    payload = {"path": str(target(runtime)), "line": "x", "seconds": 0, "snapshot_fail_times": 1}
    task = await submit(runtime, alice, TASK_TYPE, payload)
    await runtime.queue.drain_background()
    worker = await run_burst(runtime)
    done = await reload(runtime, task.id)
    assert done.state == TaskState.COMPLETED
    assert done.attempts == 2
    assert worker.stats.retried == 1
    assert target(runtime).read_text() == "x\n"
    assert (await events_of(runtime, task.id))[-2:] == ["task:applying", "task:completed"]


async def test_transient_failures_stop_after_the_last_attempt(runtime: Runtime) -> None:
    alice = await make_user(runtime)
    payload = {"path": str(target(runtime)), "line": "x", "seconds": 0, "fail": "transient"}
    task = await submit(runtime, alice, TASK_TYPE, payload)
    await runtime.queue.drain_background()
    await run_burst(runtime)
    failed = await reload(runtime, task.id)
    assert failed.state == TaskState.FAILED
    assert failed.attempts == runtime.settings.worker_max_attempts == 3
    assert failed.rollback_outcome == "rolled_back"
    assert not target(runtime).exists()
    assert (await runtime.queue.depth()).empty


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
    with Workers(runtime, site, tmp_path, FAST | {"ADE_WORKER_RECONCILE_SECONDS": "0.3"}) as pool:
        worker = pool.start()
        await wait_for_output(pool, 0, "started", 30)
        await kill_database_connections(database_url, times=10, every=0.3)
        assert worker.poll() is None, pool.output(0)
        task_id = await slow_task(runtime, 0)
        await wait_for_state(runtime, task_id, "COMPLETED", 30)
        assert worker.poll() is None, pool.output(0)
        # Whichever of the worker's loops (the reconciler and webhook deliveries on its
        # pool, the event relay on connections of its own) meets a killed connection
        # first logs it once and carries on.
        failing = (
            r"(reconciling approved tasks|webhook deliveries|event relay"
            r"|listening for audit-log commits) failing"
        )
        assert re.search(failing, pool.output(0))


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


@pytest.fixture
async def shell_runtime(
    database_url: str, private_redis: PrivateRedis, tmp_path: Path, domain: str
) -> AsyncIterator[Runtime]:
    """Free-form shell tasks allowed, and a workspace root outside the data directory (a
    shell working directory must not overlap it) that the shell user can reach."""
    with shell_site() as world:
        async with auto_approving_runtime(
            database_url,
            private_redis.url,
            tmp_path,
            domain,
            workspace_roots=[world.roots],
            shell_free_form=True,
        ) as rt:
            yield rt


@pytest.fixture
def shell_workers(shell_runtime: Runtime, site: Path, tmp_path: Path) -> Iterator[Workers]:
    with Workers(shell_runtime, site, tmp_path, FAST | {"ADE_SHELL_FREE_FORM": "true"}) as pool:
        yield pool


async def test_a_stopped_workers_command_dies_with_its_lease_before_the_next_attempt(
    shell_runtime: Runtime, shell_workers: Workers
) -> None:
    """SIGSTOP a worker 2 s into a 15 s shell apply: the watchdog kills its command once
    the lease runs out, before another worker is granted the task, so the side effects
    show one run (the next attempt's); no tick of the first run comes after the second
    one began."""
    runtime, workers = shell_runtime, shell_workers
    cwd = runtime.settings.allowed_workspace_roots[0] / "repo"
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
