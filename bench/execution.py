"""Benchmark of the execution pipeline on PostgreSQL, beside arq as the queue's floor.

Issue 4. In one run:

* a fresh database ``ade_bench_<random>`` on the PostgreSQL server of ``--database-url``
  (an admin DSN; default postgresql://postgres@127.0.0.1:5432/postgres), migrated, with an
  auto-approving policy and 8 submitters (so the per-agent lock capacity is not the limit);
  dropped at the end. Redis is ``--redis-url`` (default redis://127.0.0.1:6379/15); the
  queue and lock domain get a random name whose keys are deleted at the end;
* **pipeline**: ``--workers`` runs (default 1 and 4) of N ``ade worker`` processes
  (``python -m community_ade worker``, concurrency 4 each) started first; then this
  process creates and submits ``--tasks`` ``files.write`` tasks (8 at a time, through
  ``TaskService``: validate, preview, risk, routing, auto-approval, queued after commit),
  each writing its own file; the figure is tasks per second from the first create to the
  last COMPLETED (polled in SQL every 50 ms);
* **arq floor**: in a separate virtualenv (``bench/.peers/arq-venv``, created once; arq
  pins redis<6, so it must not enter ours), ``--arq-jobs`` no-op jobs are enqueued and
  run by one arq worker (burst, max_jobs 10) on the same Redis: jobs per second;
* **cost per task**: for each run, the CPU time of the producer (``time.process_time``),
  of the worker processes and of the PostgreSQL backends serving the bench database
  (``/proc/<pid>/stat``; workers from the moment their start-up CPU settles), and the
  SQL statements each side sent (a SQLAlchemy ``before_cursor_execute`` hook; the
  workers run under a small wrapper that installs it and writes its count at exit),
  divided by the number of tasks. Wall-clock tasks/s on a
  shared 2-core machine moves with the other load; these do not;
* **profile**: one more 1-worker run under cProfile; the top functions by own time are
  grouped into SQL (asyncpg/SQLAlchemy), Redis, executor (files.write, diff), locks and
  the rest, to say where the time goes.

The last line is one JSON object: ``pipeline_tps_1``, ``pipeline_tps_4``,
``arq_noop_tps``, the target ratio and whether it is met. ``--quick`` ends in about a
minute and a half on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url

from community_ade.approvals.service import TaskDraft, TaskService
from community_ade.auth.principal import Principal
from community_ade.execution.executors import load_executors
from community_ade.execution.executors.base import PlanContext
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage import db
from community_ade.storage.models import PolicyVersion, Task, User

HERE = Path(__file__).parent
PEERS = HERE / ".peers"
ARQ_VENV = PEERS / "arq-venv"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
AUTO = {"rules": [{"name": "auto", "task_types": ["*"], "auto_approve_below": 100}]}
TARGET_RATIO = 0.2
PRODUCERS = 8
SUBMITTERS = 8

ARQ_SCRIPT = """
import asyncio, json, sys, time, uuid
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

async def noop(ctx):
    return None

async def main(url, jobs):
    queue = f"ade-bench-arq-{uuid.uuid4().hex[:8]}"
    settings = RedisSettings.from_dsn(url)
    pool = await create_pool(settings, default_queue_name=queue)
    start = time.perf_counter()
    for _ in range(jobs):
        await pool.enqueue_job("noop", _queue_name=queue)
    worker = Worker(functions=[noop], redis_settings=settings, queue_name=queue, burst=True,
                    max_jobs=10, keep_result=0, handle_signals=False, poll_delay=0.01)
    await worker.main()
    elapsed = time.perf_counter() - start
    await worker.close()
    done = worker.jobs_complete
    await pool.delete(queue)
    await pool.aclose()
    print(json.dumps({"jobs": done, "seconds": elapsed, "tps": done / elapsed}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- database -------------------------------------------------------------------------------


# Runs ``python -m community_ade worker`` with a statement counter on every engine, written
# to the file named by ADE_BENCH_STATEMENTS when the process exits.
COUNTED_WORKER = """
import atexit, os, runpy, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
count = [0]
def counted(*_args):
    count[0] += 1
event.listen(Engine, "before_cursor_execute", counted)
atexit.register(lambda: open(os.environ["ADE_BENCH_STATEMENTS"], "w").write(str(count[0])))
sys.argv = ["community_ade", *sys.argv[1:]]
runpy.run_module("community_ade", run_name="__main__")
"""


class StatementCounter:
    """SQL statements sent by this process's engine (a SQLAlchemy event hook)."""

    def __init__(self, runtime: Runtime) -> None:
        self.count = 0
        event.listen(runtime.engine.sync_engine, "before_cursor_execute", self._counted)

    def _counted(self, *_args: Any) -> None:
        self.count += 1


def process_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far (user + system) of each live process of ``pids``."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return cpu


async def backend_pids(runtime: Runtime) -> list[int]:
    """The PostgreSQL backends connected to the bench database (the server is local)."""
    async with runtime.sessions() as session:
        pids = await session.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        )
        return list(pids)


async def settled(procs: list[Any]) -> None:
    """Wait until the workers have finished starting (imports, connections): their CPU
    time stops rising, so start-up is not counted as the pipeline's cost."""
    pids = [proc.pid for proc in procs]
    before = process_cpu(pids)
    for _ in range(120):
        await asyncio.sleep(0.5)
        now = process_cpu(pids)
        if sum(now.values()) - sum(before.values()) < 0.02 * len(pids):
            return
        before = now


def statements_written(counts: Path) -> int:
    return sum(int(f.read_text() or 0) for f in counts.iterdir())


async def fresh_database(admin_url: str) -> tuple[str, str]:
    url = make_url(admin_url).set(drivername="postgresql")
    name = f"ade_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return url.set(database=name).render_as_string(hide_password=False), name


async def drop_database(admin_url: str, name: str) -> None:
    url = make_url(admin_url).set(drivername="postgresql")
    admin = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# -- the pipeline ---------------------------------------------------------------------------


def worker_env(settings: Settings) -> dict[str, str]:
    return os.environ | {
        "ADE_DATA_DIR": str(settings.data_dir),
        "ADE_DATABASE_URL": str(settings.database_url),
        "ADE_REDIS_URL": str(settings.redis_url),
        "ADE_QUEUE_NAME": settings.queue_name,
        "ADE_LOCK_DOMAIN": settings.lock_domain,
        "ADE_WORKSPACE_ROOTS": json.dumps([str(r) for r in settings.workspace_roots]),
        "ADE_LOG_LEVEL": "WARNING",
    }


def start_workers(settings: Settings, count: int, profile: Path | None, counts: Path) -> list[Any]:
    procs = []
    for n in range(count):
        env = worker_env(settings) | {"ADE_BENCH_STATEMENTS": str(counts / f"worker-{n}")}
        cmd = [sys.executable]
        if profile is not None:
            cmd += ["-m", "cProfile", "-o", str(profile), "-m", "community_ade"]
        else:
            cmd += ["-c", COUNTED_WORKER]
        cmd += ["worker", "--concurrency", "4"]
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


def stop_workers(procs: list[Any]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc.wait(60) != 0:
            log(f"worker {proc.pid} exited with {proc.returncode}")


async def people(runtime: Runtime) -> list[Principal]:
    users = [
        User(username=f"bench-{i}-{uuid.uuid4().hex[:6]}", role="submitter")
        for i in range(SUBMITTERS)
    ]
    async with runtime.sessions.begin() as session:
        session.add_all(users)
        session.add(PolicyVersion(version=1, document=AUTO))
    return [
        Principal(id=u.id, kind="human", name=u.username, role="submitter", groups=frozenset())
        for u in users
    ]


async def produce(runtime: Runtime, who: list[Principal], root: Path, run: str, count: int) -> None:
    plan_context = PlanContext.from_settings(runtime.settings)
    numbers = iter(range(count))

    async def producer() -> None:
        for i in numbers:
            draft = TaskDraft(
                type="files.write",
                title=f"bench {i}",
                payload={
                    "root": str(root),
                    "changes": [{"path": f"{run}-{i}.txt", "action": "write", "content": f"{i}\n"}],
                },
            )
            principal = who[i % len(who)]
            async with runtime.sessions.begin() as session:
                task = await TaskService(session, plan_context=plan_context).create(
                    principal, draft
                )
            async with runtime.sessions.begin() as session:
                await TaskService(session, plan_context=plan_context).submit(principal, task.id)

    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))


async def pipeline_run(
    runtime: Runtime,
    who: list[Principal],
    workers: int,
    tasks: int,
    statements: StatementCounter,
    profile: Path | None = None,
    producer_profile: Path | None = None,
) -> dict[str, float]:
    run = uuid.uuid4().hex[:6]
    root = runtime.settings.allowed_workspace_roots[0] / run
    root.mkdir(parents=True)
    counts = Path(tempfile.mkdtemp(prefix="ade-bench-counts-"))
    procs = start_workers(runtime.settings, workers, profile, counts)
    try:
        await settled(procs)
        worker_pids = [proc.pid for proc in procs]
        backends = process_cpu(await backend_pids(runtime))
        workers_before = process_cpu(worker_pids)
        sent = statements.count
        start = time.perf_counter()
        cpu_producer = time.process_time()
        profiler = cProfile.Profile() if producer_profile else None
        if profiler is not None:
            profiler.enable()
        await produce(runtime, who, root, run, tasks)
        if profiler is not None and producer_profile is not None:
            profiler.disable()
            profiler.dump_stats(str(producer_profile))
        produced = time.perf_counter() - start
        cpu_producer = time.process_time() - cpu_producer
        producer_statements = statements.count - sent
        deadline = time.monotonic() + 600
        while True:
            done = len(list(root.iterdir()))
            if done >= tasks or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        # Files exist once applied; COMPLETED is recorded right after: wait for it too.
        while time.monotonic() < deadline:
            async with runtime.sessions() as session:
                left = await session.scalar(
                    select(func.count()).where(Task.state.in_(("APPROVED", "APPLYING")))
                )
            if not left:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        cpu_workers = {
            pid: cpu - workers_before[pid] for pid, cpu in process_cpu(worker_pids).items()
        }
        cpu_postgres = {
            pid: cpu - backends.get(pid, 0.0)
            for pid, cpu in process_cpu(await backend_pids(runtime)).items()
        }
    finally:
        stop_workers(procs)
    # Counted over the worker's whole life: less the few reads of start-up and stop.
    worker_statements = statements_written(counts)
    shutil.rmtree(counts)
    tps = tasks / elapsed
    per_task = {
        "tps": tps,
        "cpu_ms_producer": 1000 * cpu_producer / tasks,
        "cpu_ms_workers": 1000 * sum(cpu_workers.values()) / tasks,
        "cpu_ms_postgres": 1000 * sum(cpu_postgres.values()) / tasks,
        "sql_producer": producer_statements / tasks,
        "sql_workers": worker_statements / tasks,
    }
    log(
        f"  {workers} worker(s): {tasks} tasks in {elapsed:.2f} s → {tps:.1f} tasks/s "
        f"(producing took {produced:.2f} s)"
    )
    if profile is None:
        log(
            "    per task: CPU {cpu_ms_producer:.1f} ms producer + {cpu_ms_workers:.1f} ms "
            "workers + {cpu_ms_postgres:.1f} ms PostgreSQL; SQL statements "
            "{sql_producer:.1f} producer + {sql_workers:.1f} workers".format(**per_task)
        )
    return per_task


# -- arq ------------------------------------------------------------------------------------


def arq_python() -> Path:
    python = ARQ_VENV / "bin" / "python"
    if not python.exists():
        log("creating bench/.peers/arq-venv with arq (once)")
        subprocess.run([sys.executable, "-m", "venv", str(ARQ_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "arq"], check=True)
    return python


def arq_floor(redis_url: str, jobs: int) -> float:
    out = (
        subprocess.run(
            [str(arq_python()), "-c", ARQ_SCRIPT, redis_url, str(jobs)],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    result = json.loads(out)
    jobs, seconds, tps = result["jobs"], result["seconds"], result["tps"]
    log(f"  arq: {jobs} no-op jobs in {seconds:.2f} s → {tps:.0f} jobs/s")
    return float(result["tps"])


# -- profile --------------------------------------------------------------------------------

GROUPS = (
    ("waiting for IO (epoll)", ("select.epoll",)),
    ("socket send/recv", ("_socket.socket",)),
    ("SQL (asyncpg, SQLAlchemy)", ("asyncpg", "sqlalchemy")),
    ("policy, risk, routing", ("approvals",)),
    ("pydantic", ("pydantic",)),
    ("imports at start-up", ("importlib", "<frozen")),
    ("Redis client", ("redis",)),
    ("executor (files.write)", ("executors", "difflib")),
    ("locks", ("locks",)),
    ("audit chain", ("audit",)),
    ("asyncio loop, selectors", ("asyncio", "selectors")),
)


def where_time_goes(profile: Path) -> dict[str, float]:
    stats = pstats.Stats(str(profile))
    total = 0.0
    grouped: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += own
        where = f"{filename} {name}"
        group = next((g for g, keys in GROUPS if any(k in where for k in keys)), "other")
        grouped[group] = grouped.get(group, 0.0) + own
    ranked = sorted(grouped.items(), key=lambda item: -item[1])
    shares = {g: round(100 * t / total, 1) for g, t in ranked}
    top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:12]  # type: ignore[attr-defined]
    for (filename, line, function), (_cc, calls, own, cum, _callers) in top:
        where = "/".join(Path(filename).parts[-2:])
        log(f"    {own:7.3f} s own {cum:7.3f} s cum {calls:8d}x  {function} ({where}:{line})")
    log("    own time by part (%): " + ", ".join(f"{g} {p}" for g, p in shares.items()))
    return shares


# -- main -----------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    database_url, name = await fresh_database(args.database_url)
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    data_dir = Path(tempfile.mkdtemp(prefix="ade-bench-exec-"))
    (data_dir / "workspaces").mkdir()
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=args.redis_url,
        workspace_roots=[data_dir / "workspaces"],
        queue_name=tag,
        lock_domain=tag,
    )
    results: dict[str, Any] = {}
    try:
        engine = db.create_engine(database_url)
        await db.upgrade(engine)
        await engine.dispose()
        async with Runtime.open(settings) as runtime:
            who = await people(runtime)
            # Import the executor plugins now (about 130 ms, once per process): like the
            # workers' start-up, not a cost of the tasks the first run measures.
            load_executors()
            statements = StatementCounter(runtime)
            log(
                f"pipeline: {args.tasks} files.write tasks, create → submit (auto-approved) → apply"
            )
            for workers in args.workers:
                measured = await pipeline_run(runtime, who, workers, args.tasks, statements)
                results[f"pipeline_tps_{workers}"] = round(measured.pop("tps"), 1)
                results[f"per_task_{workers}"] = {k: round(v, 2) for k, v in measured.items()}
            log("arq floor:")
            results["arq_noop_tps"] = round(arq_floor(args.redis_url, args.arq_jobs), 1)
            if args.profile:
                log("profile (1 worker under cProfile):")
                profile, producer = data_dir / "worker.prof", data_dir / "producer.prof"
                await pipeline_run(
                    runtime, who, 1, args.profile_tasks, statements, profile, producer
                )
                log("  the worker:")
                results["worker_time_share_pct"] = where_time_goes(profile)
                log("  the producer (create + submit, in this process):")
                results["producer_time_share_pct"] = where_time_goes(producer)
    finally:
        client = aioredis.Redis.from_url(args.redis_url)
        async for key in client.scan_iter(match=f"*{{{tag}}}*", count=1000):
            await client.delete(key)
        await client.srem("ade:lock:domains", tag)
        await client.aclose()
        await drop_database(args.database_url, name)
        shutil.rmtree(data_dir, ignore_errors=True)
    four = results.get("pipeline_tps_4")
    if four is not None:
        results["target"] = f"pipeline_tps_4 >= {TARGET_RATIO} x arq_noop_tps"
        results["ratio_4_to_arq"] = round(four / results["arq_noop_tps"], 3)
        results["target_met"] = four >= TARGET_RATIO * results["arq_noop_tps"]
    return results


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run, about 90 s")
    parser.add_argument(
        "--database-url", default=os.environ.get("ADE_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("ADE_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    )
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--arq-jobs", type=int, default=None)
    parser.add_argument("--workers", default="1,4", help="worker process counts, e.g. 1,4")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    args = parser.parse_args()
    args.tasks = args.tasks or (150 if args.quick else 600)
    args.arq_jobs = args.arq_jobs or (2000 if args.quick else 10000)
    args.profile_tasks = 80 if args.quick else 300
    args.workers = [int(w) for w in args.workers.split(",")]
    args.profile = not args.no_profile
    return args


if __name__ == "__main__":
    outcome = asyncio.run(main(parse()))
    print(json.dumps(outcome))
