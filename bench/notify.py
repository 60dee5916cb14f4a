"""Benchmark of review notifications: webhooks, Slack, e-mail (issue 15 §5).

In one run, on a fresh PostgreSQL database ``ade_bench_<random>`` (``--database-url``,
an admin DSN) and a private ``redis-server``, with ``python -m community_ade serve
--no-worker`` in a subprocess and the local stand-ins of ``standins/`` in this process
(webhook receivers, a recorder of Slack's Web API, an ``aiosmtpd`` SMTP server):

* tasks (``files.write``, needing a reviewer) are created and submitted on an **open-loop
  schedule** of ``--rate`` tasks/s (task *k* is started at *t0 + k / rate* whether or not
  the earlier ones answered), ``--tasks`` in all, in ``--phases`` alternating phases:
  **A** with ``--endpoints`` normal webhook endpoints subscribed to ``task:submitted``,
  **B** the same plus one **slow** endpoint (answers after ``--slow-ms``) subscribed to
  the same events (enabled for B, disabled for A);
* per task: *submitted* = this process's clock when the submit call **returned**;
  webhook received = the receiver's clock when the request was read; Slack posted = the
  recorder's clock of ``chat.postMessage``; e-mail accepted = the SMTP server's ``DATA``
  handler (one message per reviewer: two reviewers have addresses). One machine, one
  clock (``time.time()``);
* ``slow_endpoint_isolation_ratio`` = the normal endpoints' delivery p99 in B ÷ in A;
  the slow endpoint's sustained deliveries/s over the B phases;
* **floors**, in the same run: a bare HTTP POST of a delivery-sized body to a normal
  receiver (new connection each, as the receiver closes it), a bare ``chat.postMessage``
  POST to the recorder, a bare SMTP send (``aiosmtplib``) to the same server.

The last line is one JSON object (``webhook_p99_ms``, ``slack_p99_ms``, ``email_p99_ms``,
``slow_endpoint_isolation_ratio`` and more). ``bench/README.md`` records runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg  # type: ignore[import-untyped]
import httpx
from api import (
    API,
    DEFAULT_DATABASE_URL,
    CpuMeter,
    CpuUse,
    Server,
    bearer,
    create_database,
    drop_database,
    machine,
    percentile,
    progress,
    rounded,
    run_in_scratch,
    server_env,
)
from locks import redis_server

from community_ade.auth import service as auth
from community_ade.storage import db

sys.path.append(str(Path(__file__).resolve().parents[1] / "standins"))
from slackrec import SlackRecorder
from smtputil import SmtpServer
from webhook_receiver import Receiver

TARGET_P99_MS = 500.0
TARGET_ISOLATION = 1.2
EVENT = "task:submitted"
REVIEWERS = ("rita", "dora")
TASK_ID = re.compile(r"/approvals/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
SLACK_TOKEN = "xoxb-bench-token"
CHANNEL = "CBENCH"


@dataclass
class Sent:
    """One task of the schedule: its phase, id and when the submit call returned."""

    phase: int
    task_id: str | None = None
    submit_sent: float = 0.0
    submitted: float = 0.0
    error: str | None = None


@dataclass
class Stands:
    normal: list[Receiver]
    slow: Receiver
    slack: SlackRecorder
    smtp: SmtpServer


@dataclass
class Phase:
    index: int
    slow: bool
    started: float = 0.0
    ended: float = 0.0  # every expected delivery of the phase arrived (or the wait ended)
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average at start, at end
    cpu: CpuUse | None = None  # this process, the server, PostgreSQL, during the phase
    tasks: list[Sent] = field(default_factory=list)


async def prepare(url: str) -> dict[str, str]:
    """Tokens of the admin and the submitter; the reviewers get e-mail addresses."""
    engine = db.create_engine(url)
    try:
        await db.upgrade(engine)
        async with db.sessionmaker(engine).begin() as session:
            admin = await auth.create_user(session, "ada", "admin")
            sam = await auth.create_user(session, "sam", "submitter")
            for name in REVIEWERS:
                await auth.create_user(session, name, "reviewer", email=f"{name}@example.org")
            tokens = {
                "ada": (await auth.create_token(session, name="bench", user_id=admin.id))[0],
                "sam": (await auth.create_token(session, name="bench", user_id=sam.id))[0],
            }
    finally:
        await engine.dispose()
    return tokens


def task_body(workspace: Path, n: int) -> dict[str, Any]:
    return {
        "type": "files.write",
        "title": f"bench notify #{n}",
        "payload": {
            "root": str(workspace),
            "changes": [{"path": f"conf/{n}.conf", "action": "write", "content": "debug = 1\n"}],
        },
    }


async def submit_one(
    client: httpx.AsyncClient, token: str, workspace: Path, n: int, out: Sent
) -> None:
    headers = bearer(token)
    try:
        created = await client.post(f"{API}/tasks", json=task_body(workspace, n), headers=headers)
        if created.status_code != 201:
            out.error = f"create {created.status_code}"
            return
        task_id = created.json()["id"]
        out.submit_sent = time.time()
        answer = await client.post(f"{API}/tasks/{task_id}/submit", headers=headers)
        out.submitted = time.time()
    except httpx.HTTPError as exc:
        out.error = type(exc).__name__
        return
    if answer.status_code != 200 or answer.json()["task"]["state"] != "SUBMITTED":
        out.error = f"submit {answer.status_code}"
        return
    out.task_id = task_id


async def open_loop(
    client: httpx.AsyncClient,
    token: str,
    workspace: Path,
    phase: Phase,
    first: int,
    count: int,
    rate: float,
) -> None:
    """``count`` tasks started at ``rate`` per second on a fixed schedule (open loop)."""
    started = time.monotonic()
    running = []
    for k in range(count):
        delay = started + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = Sent(phase.index)
        phase.tasks.append(sent)
        running.append(asyncio.create_task(submit_one(client, token, workspace, first + k, sent)))
    await asyncio.gather(*running)


def webhook_times(receiver: Receiver) -> dict[str, float]:
    """Task id → when its ``task:submitted`` delivery was first received."""
    times: dict[str, float] = {}
    for got in receiver.got():
        if "webhook-id" not in got.headers:
            continue  # a floor request
        event = json.loads(got.body)
        subject = str(event["data"].get("subject", ""))
        if event["type"] == EVENT and subject.startswith("task:"):
            times.setdefault(subject.removeprefix("task:"), got.at)
    return times


def slack_times(recorder: SlackRecorder) -> dict[str, float]:
    times: dict[str, float] = {}
    for call in recorder.named("chat.postMessage"):
        if call.params.get("channel") != CHANNEL:
            continue
        found = TASK_ID.search(json.dumps(call.params))
        if found:
            times.setdefault(found.group(1), call.at)
    return times


def email_times(smtp: SmtpServer) -> dict[tuple[str, str], float]:
    """(task id, recipient) → when the SMTP server accepted the message."""
    times: dict[tuple[str, str], float] = {}
    for got in list(smtp):
        text = "".join(
            str(part.get_content()) for part in got.message.walk() if not part.is_multipart()
        )
        found = TASK_ID.search(text)
        if found:
            for rcpt in got.recipients:
                times.setdefault((found.group(1), rcpt), got.at)
    return times


def arrived(stands: Stands, expected: int) -> bool:
    """Whether every channel got ``expected`` tasks' messages (counted, not parsed: the
    check runs often, in the process that hosts the stand-ins)."""
    hooks = all(
        sum("webhook-id" in got.headers for got in r.got()) >= expected for r in stands.normal
    )
    slack = sum(c.params.get("channel") == CHANNEL for c in stands.slack.named("chat.postMessage"))
    return (
        hooks
        and slack >= expected
        and len(stands.smtp.mailbox.received) >= expected * len(REVIEWERS)
    )


async def set_slow(client: httpx.AsyncClient, admin: str, hook_id: str, enabled: bool) -> None:
    r = await client.patch(
        f"{API}/webhooks/{hook_id}", json={"enabled": enabled}, headers=bearer(admin)
    )
    assert r.status_code == 200, r.text


async def configure(client: httpx.AsyncClient, admin: str, stands: Stands) -> str:
    """Slack and the webhook subscriptions; the slow one's id."""
    headers = bearer(admin)
    r = await client.put(
        f"{API}/integrations/slack",
        json={
            "bot_token": SLACK_TOKEN,
            "signing_secret": "benchsigningsecret0123456789abcd",
            "default_channel": CHANNEL,
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    hook_id = ""
    for receiver in [*stands.normal, stands.slow]:
        body = {"url": receiver.url, "event_types": [EVENT], "description": "bench"}
        r = await client.post(f"{API}/webhooks", json=body, headers=headers)
        assert r.status_code == 201, r.text
        hook_id = r.json()["id"]
    await set_slow(client, admin, hook_id, False)
    return hook_id


async def wait_arrived(stands: Stands, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    # Polled: the stand-ins record from their own threads, which set no event of this loop.
    while not arrived(stands, expected) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.25)
    return time.time()


async def floors(stands: Stands, samples: int) -> dict[str, list[float]]:
    """Bare round trips to the same stand-ins: HTTP POST, chat.postMessage, SMTP send."""
    out: dict[str, list[float]] = {"http": [], "slack_http": [], "smtp": []}
    body = json.dumps({"type": EVENT, "data": {"pad": "x" * 1500}}).encode()
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(samples):
            started = time.perf_counter()
            await client.post(
                stands.normal[0].url, content=body, headers={"content-type": "application/json"}
            )
            out["http"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await client.post(
                f"{stands.slack.url}chat.postMessage",
                json={"channel": "CFLOOR", "text": "floor"},
                headers={"Authorization": f"Bearer {SLACK_TOKEN}"},
            )
            out["slack_http"].append((time.perf_counter() - started) * 1000)
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = (
                "ade@localhost",
                "floor@example.org",
                "floor",
            )
            message.set_content("x" * 2000)
            started = time.perf_counter()
            await aiosmtplib.send(
                message, hostname="127.0.0.1", port=stands.smtp.port, start_tls=False
            )
            out["smtp"].append((time.perf_counter() - started) * 1000)
    return out


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}
    return {
        "p50_ms": rounded(percentile(values, 0.5)),
        "p99_ms": rounded(percentile(values, 0.99)),
        "max_ms": rounded(max(values)),
        "n": len(values),
    }


def latencies(stands: Stands, phases: list[Phase]) -> dict[str, Any]:
    hooks = [webhook_times(r) for r in stands.normal]
    slack, mails = slack_times(stands.slack), email_times(stands.smtp)
    by_phase: dict[str, list[float]] = {"A": [], "B": []}
    out: dict[str, list[float]] = {"webhook": [], "slack": [], "email": [], "submit": []}
    missing = {"webhook": 0, "slack": 0, "email": 0}
    for phase in phases:
        for sent in phase.tasks:
            if sent.task_id is None:
                continue
            out["submit"].append((sent.submitted - sent.submit_sent) * 1000)
            for times in hooks:
                if sent.task_id in times:
                    ms = (times[sent.task_id] - sent.submitted) * 1000
                    out["webhook"].append(ms)
                    by_phase["B" if phase.slow else "A"].append(ms)
                else:
                    missing["webhook"] += 1
            if sent.task_id in slack:
                out["slack"].append((slack[sent.task_id] - sent.submitted) * 1000)
            else:
                missing["slack"] += 1
            for name in REVIEWERS:
                at = mails.get((sent.task_id, f"{name}@example.org"))
                if at is None:
                    missing["email"] += 1
                else:
                    out["email"].append((at - sent.submitted) * 1000)
    result: dict[str, Any] = {name: stats(values) for name, values in out.items()}
    result["webhook_A"], result["webhook_B"] = stats(by_phase["A"]), stats(by_phase["B"])
    result["missing"] = missing
    result["errors"] = sorted({s.error for p in phases for s in p.tasks if s.error})
    slow_seconds = sum(p.ended - p.started for p in phases if p.slow)
    slow_count = sum(
        1 for got in stands.slow.got() for p in phases if p.slow and p.started <= got.at <= p.ended
    )
    result["slow_per_s"] = rounded(slow_count / slow_seconds) if slow_seconds else None
    result["slow_received"] = len(stands.slow.got())
    return result


@dataclass
class Bench:
    """What every phase uses: the API client and tokens, the stand-ins, the CPU meter."""

    args: argparse.Namespace
    client: httpx.AsyncClient
    tokens: dict[str, str]
    stands: Stands
    workspace: Path
    meter: CpuMeter
    slow_id: str = ""
    expected: int = 0  # tasks whose messages every channel must have got by now

    async def phase(self, index: int, first: int, count: int, rate: float) -> Phase:
        """``count`` tasks at ``rate``/s, then wait until every channel has them all."""
        phase = Phase(index, slow=index % 2 == 1)
        if index >= 0 and not self.args.bare:
            await set_slow(self.client, self.tokens["ada"], self.slow_id, phase.slow)
            kind = "B, slow endpoint subscribed" if phase.slow else "A"
            progress(f"phase {index + 1}/{self.args.phases} ({kind}): {count} at {rate:g}/s")
        phase.load = (os.getloadavg()[0], 0.0)
        async with self.meter.measure() as use:
            phase.started = time.time()
            sam = self.tokens["sam"]
            await open_loop(self.client, sam, self.workspace, phase, first, count, rate)
            self.expected += sum(t.task_id is not None for t in phase.tasks)
            if self.args.bare:
                phase.ended = time.time()
            else:
                phase.ended = await wait_arrived(self.stands, self.expected, self.args.wait)
        phase.cpu = use[0]
        phase.load = (phase.load[0], os.getloadavg()[0])
        return phase


async def measure(
    args: argparse.Namespace,
    base_url: str,
    tokens: dict[str, str],
    stands: Stands,
    workspace: Path,
    meter: CpuMeter,
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        bench = Bench(args, client, tokens, stands, workspace, meter)
        if not args.bare:
            bench.slow_id = await configure(client, tokens["ada"], stands)
        progress(f"warm-up: {args.warmup} tasks")
        await bench.phase(-1, 0, args.warmup, min(args.rate, 10))
        per_phase = args.tasks // args.phases
        phases = []
        for index in range(args.phases):
            first = args.warmup + index * per_phase
            phases.append(await bench.phase(index, first, per_phase, args.rate))
            await asyncio.sleep(1.0)
        if not args.bare:
            await set_slow(client, tokens["ada"], bench.slow_id, False)
    result = latencies(stands, phases)
    progress(f"floors: {args.floor_samples} rounds")
    result["floors"] = {
        name: stats(v) for name, v in (await floors(stands, args.floor_samples)).items()
    }
    result["phases"] = [
        {
            "phase": "B" if p.slow else "A",
            "seconds": rounded(p.ended - p.started),
            "load": [rounded(x) for x in p.load],
            "cpu_ms_per_task": p.cpu.per_request_ms(len(p.tasks)) if p.cpu else "-",
        }
        for p in phases
    ]
    return result


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    workspaces = tmp / "workspaces"
    workspace = workspaces / "repo"
    workspace.mkdir(parents=True)
    database = await create_database(args.database_url)
    slack = SlackRecorder()
    await slack.start()
    smtp = SmtpServer()
    smtp.start()
    try:
        tokens = await prepare(database.url)
        with contextlib.ExitStack() as stack:
            normal = [stack.enter_context(Receiver()) for _ in range(args.endpoints)]
            slow = stack.enter_context(Receiver(delay=args.slow_ms / 1000))
            stands = Stands(normal, slow, slack, smtp)
            (redis_url, _own) = stack.enter_context(redis_server(args.redis_url))
            env = server_env(database.url, tmp, workspaces, redis_url) | {
                "ADE_HTTP_ALLOWLIST": json.dumps([r.url for r in [*normal, slow]]),
                "ADE_SLACK_API_URL": slack.url,
                "ADE_PUBLIC_URL": "https://ade.example.com",
            }
            if not args.bare:
                env |= {
                    "ADE_SMTP_HOST": "127.0.0.1",
                    "ADE_SMTP_PORT": str(smtp.port),
                    "ADE_SMTP_SECURITY": "none",
                }
            server = Server(env, tmp / "server.log", ["--no-worker"])
            await server.start()
            progress(f"server pid {server.pid} at {server.base_url}")
            admin = await asyncpg.connect(database.admin_dsn, timeout=10)
            try:
                meter = CpuMeter(admin, database.name, server.pid)
                return await measure(args, server.base_url, tokens, stands, workspace, meter)
            finally:
                await admin.close()
                await server.stop()
    finally:
        smtp.stop()
        await slack.stop()
        await drop_database(database)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    a, b = result["webhook_A"]["p99_ms"], result["webhook_B"]["p99_ms"]
    floors = result["floors"]
    return {
        "webhook_p99_ms": result["webhook"]["p99_ms"],
        "slack_p99_ms": result["slack"]["p99_ms"],
        "email_p99_ms": result["email"]["p99_ms"],
        "slow_endpoint_isolation_ratio": round(b / a, 3) if a and b else None,
        "webhook_p50_ms": result["webhook"]["p50_ms"],
        "slack_p50_ms": result["slack"]["p50_ms"],
        "email_p50_ms": result["email"]["p50_ms"],
        "webhook_p99_ms_without_slow": a,
        "webhook_p99_ms_with_slow": b,
        "slow_deliveries_per_s": result["slow_per_s"],
        "submit_p99_ms": result["submit"]["p99_ms"],
        "http_floor_p99_ms": floors["http"]["p99_ms"],
        "slack_floor_p99_ms": floors["slack_http"]["p99_ms"],
        "smtp_floor_p99_ms": floors["smtp"]["p99_ms"],
        "missing": sum(result["missing"].values()),
        "load_avg_1m": rounded(max(x for p in result["phases"] for x in p["load"])),
    }


def print_report(args: argparse.Namespace, result: dict[str, Any], seconds: float) -> None:
    print(f"machine: {machine()}")
    print(
        f"run: {seconds:.0f} s, {args.tasks} tasks at {args.rate:g}/s in {args.phases} "
        f"phases, {args.endpoints} normal endpoints + 1 slow ({args.slow_ms:g} ms)"
    )
    for p in result["phases"]:
        print(
            f"  phase {p['phase']}: {p['seconds']} s to the last delivery, load "
            f"{p['load'][0]} → {p['load'][1]}, CPU ms per task (this process/server/"
            f"PostgreSQL) {p['cpu_ms_per_task']}"
        )
    labels = {
        "webhook": f"submitted → webhook received (target p99 ≤ {TARGET_P99_MS:g})",
        "webhook_A": "  … phase A (normal endpoints only)",
        "webhook_B": "  … phase B (slow endpoint subscribed too)",
        "slack": f"submitted → Slack chat.postMessage (target p99 ≤ {TARGET_P99_MS:g})",
        "email": f"submitted → e-mail accepted (target p99 ≤ {TARGET_P99_MS:g})",
        "submit": "submit request (sent → returned)",
    }
    rows = [(label, result[name]) for name, label in labels.items()]
    rows += [(f"floor: {name}", s) for name, s in result["floors"].items()]
    for label, s in rows:
        print(
            f"{label:<62} p50 {s['p50_ms']!s:>8}  p99 {s['p99_ms']!s:>8}  "
            f"max {s['max_ms']!s:>8}  (n={s['n']})"
        )
    print(
        f"slow endpoint: {result['slow_per_s']} deliveries/s sustained in B, "
        f"{result['slow_received']} received"
    )
    print(f"missing: {result['missing']}; errors: {result['errors'] or 'none'}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=None, help="default: a private redis-server")
    parser.add_argument("--tasks", type=int, default=None, help="tasks measured (1000; quick 100)")
    parser.add_argument(
        "--phases", type=int, default=None, help="alternating A/B phases (4; quick 2)"
    )
    parser.add_argument("--rate", type=float, default=50.0, help="tasks per second (open loop)")
    parser.add_argument("--endpoints", type=int, default=3, help="normal webhook endpoints")
    parser.add_argument("--slow-ms", type=float, default=200.0, help="the slow endpoint's delay")
    parser.add_argument("--warmup", type=int, default=20, help="untimed tasks first")
    parser.add_argument(
        "--wait", type=float, default=120.0, help="longest wait for a phase's deliveries"
    )
    parser.add_argument(
        "--floor-samples", type=int, default=None, help="floor rounds (200; quick 50)"
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="the peer: no channel configured (no webhook, Slack or SMTP); submissions "
        "and CPU per task only",
    )
    parser.add_argument("--quick", action="store_true", help="100 tasks (about a minute)")
    args = parser.parse_args(argv)
    args.tasks = args.tasks or (100 if args.quick else 1000)
    args.phases = args.phases or (2 if args.quick else 4)
    args.floor_samples = args.floor_samples or (50 if args.quick else 200)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result, seconds = run_in_scratch("ade-bench-notify-", lambda tmp: run(args, tmp))
    print_report(args, result, seconds)
    print(json.dumps(summary(result)))


if __name__ == "__main__":
    main()
