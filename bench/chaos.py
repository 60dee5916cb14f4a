"""The project's own fault campaign (issue 12 §1): real processes, faults at random.

Two ``ade serve --no-worker`` on one database and one Redis (a client alternates between
them, retrying on the other with the same ``Idempotency-Key`` when one fails), ``--workers``
``ade worker`` processes, a private ``redis-server`` (AOF, fsync always) on a free
loopback port, and a fresh PostgreSQL database ``ade_chaos_<random>`` (dropped at the
end). The client submits ``--tasks`` auto-approved tasks: ``git.patch`` commits onto
``main`` of a few repositories (work trees checked out) and ``files.write`` writes over
seeded or absent files; ``--slow-share`` of them are their slow twins from
``chaos_plugin.py`` (same executors, a sleep before and after the write), so that faults
land mid-apply. Meanwhile ``--faults`` faults of the kinds ``--kinds`` are injected:

    worker-kill            SIGKILL a worker (aimed at one applying a task when there is
                           one), a replacement starts 0.3-1.5 s later
    worker-stop            SIGSTOP a worker (aimed likewise) past its lock lease and its
                           messages' reclaim time, then SIGCONT
    api-kill               SIGKILL one API server, restarted 0.3-1.5 s later
    redis-restart-persist  SIGKILL redis-server, restarted on its files 0.2-2 s later
    redis-restart-empty    the same with its files deleted: it comes back empty
    db-terminate           pg_terminate_backend of every connection to the database

Then it waits for every task to end (at most ``--settle-seconds``, and no longer than
45 s without any audit event), and checks: each
COMPLETED git task's ``ADE-Task`` trailer on ``main`` exactly once and its file in the
work tree, no trailer and no file for the others; each files task's file as approved
(COMPLETED) or as it was (otherwise); no task left unfinished; no lock held once the
leases have run out (``ade locks list --json``); the audit chain intact (``ade audit
verify``); no traceback in any process's log; no process that exited by itself.

Progress and a readable report go to stderr; the last line of stdout is one JSON object
(keys in bench/README.md). Exit 0 when every check passed, 1 otherwise. The logs are kept
(path printed) when a check failed or with ``--keep``. ``--quick`` is CI's variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chaos_plugin
import httpx
from chaos_checks import (
    FINAL_STATES,
    OPEN_STATES,
    Findings,
    Intent,
    Traceback,
    held_locks,
    judge,
    tracebacks,
)
from chaos_cluster import Cluster, Database, log
from chaos_faults import FAULT_KINDS, LEASE_S, RECLAIM_S, Faults
from chaos_workload import intents, make_repos, prepare_database

HERE = Path(__file__).parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TIMINGS = {
    "ADE_LOCK_LEASE_SECONDS": str(LEASE_S),
    "ADE_LOCK_DELAY_SECONDS": "0.3",
    "ADE_WORKER_RECLAIM_IDLE_SECONDS": str(RECLAIM_S),
    "ADE_WORKER_RECONCILE_SECONDS": "2",
    "ADE_WORKER_BACKOFF_BASE_SECONDS": "0.2",
    "ADE_WORKER_BACKOFF_CAP_SECONDS": "2",
    "ADE_WORKER_MAX_ATTEMPTS": "8",
    "ADE_WORKER_LOCK_WAIT_SECONDS": "15",
}
PRODUCERS = 4
CALL_SECONDS = 90.0  # one API call, retried across both servers, gives up after this
STALL_S = 45.0  # the wait for the tasks gives up once nothing happened this long


# -- the client -----------------------------------------------------------------------------


def in_progress(answer: httpx.Response) -> bool:
    """The 409 that says the first request with this Idempotency-Key has not finished
    (a retry raced the original, e.g. after a read timeout): to be asked again."""
    return answer.status_code == 409 and "being processed" in answer.text


class Client:
    """Creates and submits the tasks, alternating between the two API servers; a call
    that gets no answer, a 5xx or a 409 "being processed" is sent again, to the other
    server, with the same ``Idempotency-Key``."""

    def __init__(self, cluster: Cluster, tokens: list[str], gap: float) -> None:
        self.cluster = cluster
        self.tokens = tokens
        self.gap = gap
        self.http = httpx.AsyncClient(timeout=10)
        self.turn = 0
        self.next_at = time.monotonic()
        self.http_errors: Counter[str] = Counter()
        self.samples: dict[int, str] = {}
        self.finished_at = 0.0

    async def call(
        self, method: str, path: str, token: str, key: str, body: Any = None
    ) -> httpx.Response | None:
        deadline = time.monotonic() + CALL_SECONDS
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        while time.monotonic() < deadline:
            server = self.cluster.servers[self.turn % len(self.cluster.servers)]
            self.turn += 1
            try:
                answer = await self.http.request(
                    method, Cluster.url_of(server) + path, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                self.http_errors[type(exc).__name__] += 1
                await asyncio.sleep(0.2)
                continue
            if answer.status_code < 500 and not in_progress(answer):
                return answer
            self.http_errors[str(answer.status_code)] += 1
            self.samples.setdefault(answer.status_code, f"{method} {path}: {answer.text[:300]}")
            await asyncio.sleep(0.3)
        return None

    async def submit(self, intent: Intent) -> None:
        token = self.tokens[intent.seq % len(self.tokens)]
        body = {
            "type": intent.task_type,
            "title": f"chaos #{intent.seq}",
            "payload": intent.payload,
            "resources": intent.resources,
        }
        created = await self.call("POST", "/api/v1/tasks", token, f"create-{intent.seq}", body)
        if created is None or created.status_code != 201:
            intent.error = "create: " + (
                "no answer" if created is None else f"{created.status_code} {created.text[:300]}"
            )
            return
        intent.task_id = created.json()["id"]
        path = f"/api/v1/tasks/{intent.task_id}/submit"
        submitted = await self.call("POST", path, token, f"submit-{intent.seq}")
        if submitted is not None and submitted.status_code == 200:
            intent.submitted = True
        else:  # the database tells at the end whether it was submitted after all
            intent.error = "submit: " + (
                "no answer"
                if submitted is None
                else f"{submitted.status_code} {submitted.text[:300]}"
            )

    async def produce(self, work: list[Intent]) -> None:
        pending = iter(work)

        async def producer() -> None:
            for intent in pending:
                slot = max(time.monotonic(), self.next_at)
                self.next_at = slot + self.gap
                await asyncio.sleep(slot - time.monotonic())
                await self.submit(intent)

        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        self.finished_at = time.monotonic()


# -- the campaign ---------------------------------------------------------------------------


async def task_rows(database: Database) -> dict[str, tuple[str, str]]:
    """title -> (id, state) of every task."""
    assert database.pool is not None
    rows = await database.pool.fetch("SELECT id::text, state, title FROM tasks")
    return {r["title"]: (r["id"], r["state"]) for r in rows}


async def settle(
    work: list[Intent], database: Database, faults: Faults, limit: float
) -> float | None:
    """Wait until every submitted task is final; the time it happened. Gives up (None)
    after ``limit`` seconds, or sooner once nothing has happened — no audit event — for
    ``STALL_S``; the tasks still open then are marked ``unfinished``."""
    deadline = time.monotonic() + limit
    last_report = 0.0
    open_: list[tuple[Intent, str]] = []
    newest, moved_at = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - moved_at < STALL_S:
        faults.watch()
        try:
            rows = await task_rows(database)
            assert database.pool is not None
            seq = await database.pool.fetchval("SELECT coalesce(max(seq), 0) FROM audit_log")
        except Exception as exc:
            log(f"  (database: {exc})")
            await asyncio.sleep(1)
            continue
        if seq != newest:
            newest, moved_at = seq, time.monotonic()
        for intent in work:  # the server may have acted on a call whose answer was lost
            found = rows.get(f"chaos #{intent.seq}")
            if found is not None and intent.task_id in (None, found[0]):
                intent.task_id = found[0]
                intent.submitted = intent.submitted or found[1] != "DRAFT"
        states = ((i, rows.get(f"chaos #{i.seq}", ("", "missing"))[1]) for i in work)
        open_ = [(i, state) for i, state in states if i.submitted and state not in FINAL_STATES]
        if not open_:
            return time.monotonic()
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            log(f"  {len(open_)} task(s) not final yet: {dict(Counter(s for _, s in open_))}")
        await asyncio.sleep(0.5)
    why = "time is up" if time.monotonic() >= deadline else f"nothing for {STALL_S:.0f} s"
    log(f"  gave up waiting for the tasks: {why}")
    for intent, state in open_:
        intent.unfinished = state
    return None


async def keep_histories(database: Database, findings: Findings, path: Path) -> None:
    """The audit trail of every flagged task, written next to the logs: the database
    is dropped at the end, and the logs alone do not say in which order things happened."""
    assert database.pool is not None
    lines = []
    for task_id in findings.task_ids()[:50]:
        rows = await database.pool.fetch(
            "SELECT seq, ts, type, actor_id, data::text FROM audit_log "
            "WHERE subject = $1 ORDER BY seq",
            f"task:{task_id}",
        )
        lines.append(f"== task {task_id}")
        lines += [
            f"{r['seq']} {r['ts']:%H:%M:%S.%f} {r['type']} {r['actor_id']} {r['data']}"
            for r in rows
        ]
    if lines:
        await asyncio.to_thread(path.write_text, "\n".join(lines) + "\n")


async def wait_orphaned_locks(cluster: Cluster, database: Database) -> list[str]:
    """The grants still held for tasks that have ended, once every lease has had time
    to run out (a grant of a task still being applied is live work, not an orphan)."""
    deadline = time.monotonic() + 2 * LEASE_S + 10
    orphans = ["(never listed)"]
    while time.monotonic() < deadline:
        listed = await asyncio.to_thread(cluster.run_cli, "locks", "list", "--json")
        if listed.returncode != 0:
            orphans = [f"ade locks list failed: {listed.stderr.strip()[-300:]}"]
        else:
            states = dict((await task_rows(database)).values())
            orphans = [
                f"{resource} <- {task} ({states.get(task.split('/')[0], 'no such task')})"
                for resource, task in held_locks(listed.stdout)
                if states.get(task.split("/")[0]) not in OPEN_STATES
            ]
            if not orphans:
                break
        await asyncio.sleep(1)
    return orphans


def worker_env(work: Path, site: Path) -> dict[str, str]:
    return (
        dict(os.environ)
        | TIMINGS
        | {
            "ADE_DATA_DIR": str(work / "data"),
            "ADE_WORKSPACE_ROOTS": json.dumps([str(work / "workspaces")]),
            "ADE_SECRET_KEY": uuid.uuid4().hex,
            "ADE_LOG_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join([str(site), str(HERE)]),
        }
    )


async def campaign(
    args: argparse.Namespace, work: Path, database: Database, cleanup: list[Cluster]
) -> dict[str, Any]:
    rng = random.Random(args.seed)
    site = work / "site"
    chaos_plugin.install(site)
    workspace = work / "workspaces"
    work_items = intents(
        workspace, make_repos(workspace, args.repos), args.tasks, args.slow_share, rng
    )
    log(f"database {database.name}, work dir {work}")
    tokens = await prepare_database(database)
    await database.connect()
    try:
        cluster = Cluster(work, database.url, worker_env(work, site), args.workers)
        cleanup.append(cluster)
        cluster.redis.start()
        await cluster.start()
        log(f"up: redis :{cluster.redis.port}, 2 API servers, {args.workers} workers")
        faults = Faults(cluster, database, args.kinds, rng)
        client = Client(cluster, tokens, gap=args.fault_gap * args.faults / args.tasks)
        begun = time.monotonic()
        calm = await inject_while_producing(args, faults, client, work_items, rng)
        log(f"faults done ({len(faults.done)} in {calm - begun:.0f} s); waiting for the tasks")
        final_at = await settle(work_items, database, faults, args.settle_seconds)
        held = await wait_orphaned_locks(cluster, database)
        audit = await asyncio.to_thread(cluster.run_cli, "audit", "verify")
        faults.watch()
        # Nothing acts any more: the states read now and the effects judged next agree,
        # and everything the logs will ever say has been said.
        cluster.kill_all()
        states = dict((await task_rows(database)).values())
        findings = judge(work_items, states)
        await keep_histories(database, findings, cluster.logs / "flagged-tasks.txt")
    finally:
        await database.close()
    verdict = Verdict(findings, held, audit.returncode == 0, tracebacks(cluster.log_files()))
    timing = {
        "recovery_s": None if final_at is None else round(max(0.0, final_at - calm), 1),
        "campaign_s": round(calm - begun, 1),
    }
    return report(work_items, states, faults, client, verdict) | timing


async def inject_while_producing(
    args: argparse.Namespace,
    faults: Faults,
    client: Client,
    work: list[Intent],
    rng: random.Random,
) -> float:
    """Faults at random while the client submits; when the last fault has ended and
    the last task is submitted (the moment ``recovery_s`` counts from)."""
    producing = asyncio.create_task(client.produce(work))
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline and (len(faults.done) < args.faults or not producing.done()):
        await asyncio.sleep(min(rng.expovariate(1 / args.fault_gap), 3 * args.fault_gap))
        faults.watch()
        if len(faults.done) < args.faults:
            await faults.inject()
    await faults.finish()
    if not producing.done():
        log("  the fault phase's time is up: waiting for the client's last calls")
        await asyncio.wait([producing], timeout=CALL_SECONDS * 2)
    producing.result()  # a bug of the client itself ends the campaign here
    return max(faults.last_end(), client.finished_at)


@dataclass
class Verdict:
    findings: Findings
    held: list[str]
    audit_ok: bool
    traces: list[Traceback]


def report(
    work: list[Intent], states: dict[str, str], faults: Faults, client: Client, verdict: Verdict
) -> dict[str, Any]:
    """The JSON line's figures; the details behind every non-zero one go to stderr."""
    found = verdict.findings
    kinds = Counter(t.kind() for t in verdict.traces)
    log("\n== findings ==")
    for name, items in found.examples(5).items():
        log(f"{name}:" + "\n  ".join(["", *items]))
    for item in verdict.held[:10]:
        log(f"lock still held: {item}")
    for kind, count in kinds.most_common():
        log(f"traceback x{count}: {kind}")
    for crash in faults.crashes[:10]:
        log(f"crash: {crash}")
    for status, sample in client.samples.items():
        log(f"HTTP {status}, e.g. {sample}")
    if not verdict.audit_ok:
        log("audit chain: ade audit verify FAILED")
    return {
        "faults": len(faults.done),
        "faults_by_kind": dict(Counter(f.kind for f in faults.done)),
        "faults_mid_apply": sum(f.mid_apply for f in faults.done),
        "tasks": sum(i.submitted for i in work),
        "outcomes": dict(Counter(states.get(i.task_id or "", "?") for i in work if i.submitted)),
        **found.counts(),
        "orphaned_locks": len(verdict.held),
        "tracebacks": len(verdict.traces),
        "crashes": len(faults.crashes),
        "audit_ok": verdict.audit_ok,
        "http_errors": dict(client.http_errors),
        "traceback_kinds": dict(kinds.most_common(8)),
    }


def clean(result: dict[str, Any]) -> bool:
    bad = (
        "double_applies",
        "lost",
        "stray_effects",
        "stuck",
        "orphaned_locks",
        "tracebacks",
        "crashes",
    )
    return all(result[k] == 0 for k in bad) and result["audit_ok"]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI's variant: 24 faults, 100 tasks")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ADE_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="admin DSN of the PostgreSQL server",
    )
    parser.add_argument(
        "--kinds", default=",".join(FAULT_KINDS), help="fault kinds to inject, comma-separated"
    )
    parser.add_argument("--faults", type=int, help="how many (default 120, quick 24)")
    parser.add_argument("--tasks", type=int, help="how many (default 480, quick 100)")
    parser.add_argument("--fault-gap", type=float, help="mean seconds between faults (default 1.5)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--repos", type=int, help="git repositories (default tasks / 8, >= 16)")
    parser.add_argument("--slow-share", type=float, default=0.5, help="share of slow twins")
    parser.add_argument(
        "--max-seconds", type=float, help="bound on the fault phase (default 600, quick 100)"
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        help="bound on the wait for the tasks (default 600, quick 120); it also ends once "
        "nothing has happened for 45 s",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args()
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(args.kinds) - set(FAULT_KINDS)
    if unknown or not args.kinds:
        parser.error(f"unknown fault kind(s) {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
    args.faults = args.faults or (24 if args.quick else 120)
    args.tasks = args.tasks or (100 if args.quick else 480)
    # About four git tasks a repository: each commit re-plans the others (that is part of
    # the test), but many more make the campaign mostly a queue of re-plans.
    args.repos = args.repos or max(16, args.tasks // 8)
    args.fault_gap = args.fault_gap or 1.5
    args.max_seconds = args.max_seconds or (100.0 if args.quick else 600.0)
    args.settle_seconds = args.settle_seconds or (120.0 if args.quick else 600.0)
    args.seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    return args


def interrupted(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: every process started is killed


def main() -> int:
    args = parse()
    kinds = ", ".join(args.kinds)
    log(f"chaos: {args.faults} faults ({kinds}), {args.tasks} tasks, seed {args.seed}")
    work = Path(tempfile.mkdtemp(prefix="ade-chaos-"))
    database = Database(args.database_url)
    cleanup: list[Cluster] = []
    signal.signal(signal.SIGTERM, interrupted)
    result: dict[str, Any] | None = None
    try:
        result = asyncio.run(campaign(args, work, database, cleanup))
    finally:
        for cluster in cleanup:
            cluster.kill_all()
        try:
            asyncio.run(database.drop())
        except Exception as exc:
            log(f"could not drop {database.name}: {exc}")
        if result is not None and clean(result) and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs kept in {work}/logs")
    result["seed"] = args.seed
    print(json.dumps(result))
    return 0 if clean(result) else 1


if __name__ == "__main__":
    sys.exit(main())
