"""Real worker processes (``python -m community_ade worker``) for the fault tests, with
the test-only slow executor plugin (``slow_write_plugin``) on their path."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from execution_util import make_user, reload, submit
from slow_write_plugin import TASK_TYPE, install_slow_plugin

from community_ade.approvals.states import TaskState
from community_ade.execution.executors import load_executors
from community_ade.runtime import Runtime

HERE = Path(__file__).parent
FAST = {
    "ADE_LOCK_LEASE_SECONDS": "2",
    "ADE_LOCK_DELAY_SECONDS": "0.2",
    "ADE_WORKER_RECLAIM_IDLE_SECONDS": "1.5",
    "ADE_WORKER_RECONCILE_SECONDS": "1",
    "ADE_WORKER_BACKOFF_BASE_SECONDS": "0.05",
}


@contextmanager
def slow_plugin_site(tmp_path: Path) -> Iterator[Path]:
    """The plugin's dist-info, on this process's path too (submit plans with it)."""
    site = tmp_path / "site"
    install_slow_plugin(site)
    sys.path.insert(0, str(site))
    load_executors.cache_clear()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        load_executors.cache_clear()


class Workers:
    """Worker processes on the runtime's database, Redis, queue and lock domain; each
    one's output goes to ``worker-<n>.log`` in ``logs``."""

    def __init__(
        self, runtime: Runtime, site: Path, logs: Path, env: Mapping[str, str] = FAST
    ) -> None:
        settings = runtime.settings
        self.env = (
            os.environ
            | dict(env)
            | {
                "ADE_DATA_DIR": str(logs),
                "ADE_DATABASE_URL": str(settings.database_url),
                "ADE_REDIS_URL": str(settings.redis_url),
                "ADE_QUEUE_NAME": settings.queue_name,
                "ADE_LOCK_DOMAIN": settings.lock_domain,
                "ADE_WORKSPACE_ROOTS": json.dumps([str(r) for r in settings.workspace_roots]),
                "PYTHONPATH": os.pathsep.join([str(site), str(HERE)]),
                "ADE_LOG_LEVEL": "INFO",
            }
        )
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "community_ade", "worker", "--concurrency", "2", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def output(self, index: int) -> str:
        return (self.logs / f"worker-{index}.log").read_text(errors="replace")

    def outputs(self) -> str:
        return "\n".join(self.output(i) for i in range(len(self.procs)))

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)


async def wait_for_state(runtime: Runtime, task_id: uuid.UUID, state: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if (await reload(runtime, task_id)).state == state:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not reach {state} in {limit}s")


def read_when_there(path: Path, limit: float) -> str:
    deadline = time.monotonic() + limit
    # Until it exists and has content: the writer creates the file before writing it.
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()):
            return text
        time.sleep(0.1)
    return path.read_text() if path.exists() else ""


def target(runtime: Runtime, name: str = "applied.txt") -> Path:
    return runtime.settings.allowed_workspace_roots[0] / "ws" / name


async def slow_task(runtime: Runtime, seconds: float, name: str = "applied.txt") -> uuid.UUID:
    """An approved ``test.slow_append`` task: sleeps ``seconds`` in apply, then appends
    "applied" to ``target(runtime, name)``."""
    alice = await make_user(runtime)
    payload = {"path": str(target(runtime, name)), "line": "applied", "seconds": seconds}
    task = await submit(runtime, alice, TASK_TYPE, payload)
    assert task.state == TaskState.APPROVED
    await runtime.queue.drain_background()
    return task.id
