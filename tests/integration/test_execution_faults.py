"""Fault tests with real worker processes (``python -m community_ade worker``): a worker
killed with SIGKILL mid-apply is reclaimed and the task applied exactly once; a worker
SIGSTOPped past its lease cannot write after SIGCONT (the fence refuses it); SIGTERM
drains in-flight work and exits 0. The slow apply is a test-only executor installed as a
real entry point (``slow_write_plugin``)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import Backend
from execution_util import (
    auto_approving_runtime,
    events_of,
    make_user,
    reload,
    submit,
)
from slow_write_plugin import TASK_TYPE
from workerutil import (
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

pytestmark = [
    pytest.mark.parametrize("backend", ["server"], indirect=True),
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    with slow_plugin_site(tmp_path) as site:
        yield site


@pytest.fixture
async def runtime(
    database_url: str, backend: Backend, tmp_path: Path, domain: str, site: Path
) -> AsyncIterator[Runtime]:
    async with auto_approving_runtime(database_url, backend.url, tmp_path, domain) as rt:
        yield rt


@pytest.fixture
def workers(runtime: Runtime, site: Path, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(runtime, site, tmp_path)
    yield pool
    pool.close()


async def test_a_worker_killed_mid_apply_is_reclaimed_and_applied_once(
    runtime: Runtime, workers: Workers
) -> None:
    task_id = await slow_task(runtime, 3)
    first = workers.start()
    await wait_for_state(runtime, task_id, "APPLYING", 30)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
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
