"""Benchmark of the coding-agent hooks as a harness feels them (issue 14 §3).

In one run, on a fresh PostgreSQL database ``ade_bench_<random>`` (``--database-url``,
an admin DSN) and a private ``redis-server``, with ``python -m community_ade serve
--no-worker`` in a subprocess (an ``agent.call`` is applied by its agent, never a
worker) and one agent whose token the hook uses:

* **auto**: ``ade hook claude-code`` started as a new process per call (the installed
  ``ade`` script, as a harness starts it), a ``Read`` PreToolUse event on stdin, the
  built-in policy auto-approving it: process start → the answer read and the process
  exited (the hand-over to the harness recorded: claimed and completed);
* **approve → answer**: a ``Bash`` call that waits for a reviewer; this process, the
  reviewer, finds the task, waits ``--think`` s (the hook is in its long-poll), and
  approves over the REST API: the approve request sent → the hook's answer line read;
* **floors**, in the same run: ``python -c pass`` (process start alone), the hook's own
  imports (``python -c "import community_ade.hooks.gate"``), and a bare HTTP round trip
  (``GET /healthz`` on a kept-alive ``http.client`` connection).

The last line is one JSON object: ``auto_p50_ms``, ``auto_p99_ms``,
``approve_to_answer_p50_ms``, ``approve_to_answer_p99_ms`` and the floors.
``bench/README.md`` records runs.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from api import (
    DEFAULT_DATABASE_URL,
    Server,
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

TARGET_AUTO_P99_MS = 150.0
TARGET_APPROVE_P99_MS = 100.0


def ade_command() -> list[str]:
    """The ``ade`` console script beside this Python (what a harness runs)."""
    script = Path(sys.executable).with_name("ade")
    return [str(script)] if script.exists() else [sys.executable, "-m", "community_ade"]


def event(tool: str, tool_input: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "session_id": "bench",
            "cwd": "/bench",
            "hook_event_name": "PreToolUse",
            "tool_name": tool,
            "tool_input": tool_input,
            "tool_use_id": "toolu_bench",
        }
    ).encode()


def timed_process(command: Sequence[str], stdin: bytes, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, env=env, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, done.stdout.decode()


def decision_of(output: str) -> str:
    return str(json.loads(output)["hookSpecificOutput"]["permissionDecision"])


async def prepare(url: str) -> tuple[str, str]:
    """The reviewer's token and the agent's."""
    engine = db.create_engine(url)
    try:
        await db.upgrade(engine)
        async with db.sessionmaker(engine).begin() as session:
            sam = await auth.create_user(session, "sam", "submitter")
            rita = await auth.create_user(session, "rita", "reviewer")
            reviewer, _ = await auth.create_token(session, name="bench", user_id=rita.id)
            agent = await auth.create_agent_identity(session, "bench-coder", sam.id)
            token, _ = await auth.create_token(session, name="bench", agent_id=agent.id)
    finally:
        await engine.dispose()
    return reviewer, token


def http_floor(base_url: str, samples: int) -> list[float]:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        times.append((time.perf_counter() - started) * 1000)
    connection.close()
    return times


async def approve_to_answer(
    base_url: str, reviewer: str, env: dict[str, str], think: float
) -> float:
    """One Bash call: the hook waits, the reviewer approves; ms from the approve request
    sent to the hook's answer read."""
    process = await asyncio.create_subprocess_exec(
        *ade_command(),
        "hook",
        "claude-code",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(event("Bash", {"command": "make test"}))
    process.stdin.close()
    stdout = process.stdout

    async def read_answer() -> float:
        line = await stdout.readline()
        answered = time.perf_counter()
        assert decision_of(line.decode()) == "allow", line
        return answered

    reader = asyncio.create_task(read_answer())
    headers = {"Authorization": f"Bearer {reviewer}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as c:
        task = None
        while task is None:
            page = await c.get("/api/v1/tasks", params={"type": "agent.call", "state": "SUBMITTED"})
            items = page.json()["items"]
            task = items[0] if items else None
            if task is None:
                await asyncio.sleep(0.02)
        digest = (await c.get(f"/api/v1/tasks/{task['id']}/preview")).json()["digest"]
        await asyncio.sleep(think)  # the hook is in its long-poll now
        sent = time.perf_counter()
        r = await c.post(f"/api/v1/approvals/{task['id']}/approve", json={"digest": digest})
        assert r.status_code == 200, r.text
    answered = await asyncio.wait_for(reader, 30)
    await asyncio.wait_for(process.wait(), 30)
    return (answered - sent) * 1000


def stats(values: list[float]) -> dict[str, float | None]:
    return {
        "p50_ms": rounded(percentile(values, 0.5)),
        "p99_ms": rounded(percentile(values, 0.99)),
        "n": len(values),
    }


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    workspaces = tmp / "workspaces"
    workspaces.mkdir()
    database = await create_database(args.database_url)
    try:
        reviewer, token = await prepare(database.url)
        with redis_server(args.redis_url) as (redis_url, _own):
            env = server_env(database.url, tmp, workspaces, redis_url)
            server = Server(env, tmp / "server.log", ["--no-worker"])
            await server.start()
            try:
                return await measure(args, server.base_url, reviewer, token, env)
            finally:
                await server.stop()
    finally:
        await drop_database(database)


async def measure(
    args: argparse.Namespace, base_url: str, reviewer: str, token: str, env: dict[str, str]
) -> dict[str, Any]:
    hook_env = env | {"ADE_URL": base_url, "ADE_TOKEN": token, "ADE_HOOK_WAIT_SECONDS": "30"}
    read = event("Read", {"file_path": "/bench/a.py"})
    hook = [*ade_command(), "hook", "claude-code"]
    for _ in range(3):  # warm-up: disk caches, the server's first requests
        timed_process(hook, read, hook_env)
    samples: dict[str, list[float]] = {"auto": [], "python": [], "imports": [], "http": []}
    progress(f"auto-approved calls and process floors: {args.samples} rounds")
    for _ in range(args.samples):  # interleaved, so machine noise hits all alike
        elapsed, out = timed_process(hook, read, hook_env)
        assert decision_of(out) == "allow", out
        samples["auto"].append(elapsed)
        samples["python"].append(timed_process([sys.executable, "-c", "pass"], b"", env)[0])
        imports = [sys.executable, "-c", "import community_ade.hooks.gate"]
        samples["imports"].append(timed_process(imports, b"", env)[0])
    samples["http"] = http_floor(base_url, args.samples * 5)
    progress(f"approve → answer: {args.approvals} calls")
    samples["approve"] = [
        await approve_to_answer(base_url, reviewer, hook_env, args.think)
        for _ in range(args.approvals)
    ]
    return {name: stats(values) for name, values in samples.items()}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "auto_p50_ms": result["auto"]["p50_ms"],
        "auto_p99_ms": result["auto"]["p99_ms"],
        "approve_to_answer_p50_ms": result["approve"]["p50_ms"],
        "approve_to_answer_p99_ms": result["approve"]["p99_ms"],
        "python_start_p99_ms": result["python"]["p99_ms"],
        "hook_imports_p99_ms": result["imports"]["p99_ms"],
        "http_round_trip_p99_ms": result["http"]["p99_ms"],
    }


def print_report(result: dict[str, Any], seconds: float) -> None:
    print(f"machine: {machine()}")
    print(f"run: {seconds:.0f} s")
    labels = {
        "auto": f"auto-approved Read, process start → answer (target p99 ≤ {TARGET_AUTO_P99_MS:g})",
        "approve": f"approve → hook answers (target p99 ≤ {TARGET_APPROVE_P99_MS:g})",
        "python": "floor: python -c pass",
        "imports": "floor: python -c 'import community_ade.hooks.gate'",
        "http": "floor: GET /healthz, kept-alive connection",
    }
    for name, label in labels.items():
        s = result[name]
        print(f"{label:<70} p50 {s['p50_ms']:>8} ms  p99 {s['p99_ms']:>8} ms  (n={s['n']})")
    python = result["python"]["p50_ms"] or 1
    print(f"auto p50 / python start p50: {(result['auto']['p50_ms'] or 0) / python:.1f}×")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=None, help="default: a private redis-server")
    parser.add_argument("--samples", type=int, default=None, help="auto calls (100; quick 30)")
    parser.add_argument("--approvals", type=int, default=None, help="approvals (40; quick 15)")
    parser.add_argument("--think", type=float, default=0.3, help="seconds before approving")
    parser.add_argument("--quick", action="store_true", help="fewer samples (about a minute)")
    args = parser.parse_args(argv)
    args.samples = args.samples or (30 if args.quick else 100)
    args.approvals = args.approvals or (15 if args.quick else 40)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result, seconds = run_in_scratch("ade-bench-hooks-", lambda tmp: run(args, tmp))
    print_report(result, seconds)
    print(json.dumps(summary(result)))


if __name__ == "__main__":
    main()
