"""Benchmark of decision latency as an agent feels it, on PostgreSQL with a worker.

Issue 13 §5. In one run:

* a fresh database ``ade_bench_<random>`` on the PostgreSQL server of ``--database-url``
  (an admin DSN; default postgresql://postgres@127.0.0.1:5432/postgres), migrated, with a
  submitter (``sam``) who owns ``max(--levels)`` SDK agents and ``--mcp-agents`` MCP
  agents (each its own identity and token), and a reviewer (``rita``); dropped at the
  end. Redis is a private ``redis-server`` (``--redis-url`` for another); the lock domain
  and queue get a random name either way;
* ``python -m community_ade serve`` in a subprocess: the API, the events fan-out, the MCP
  server at ``/mcp`` and one worker (``ade serve``'s default) in one process;
* **SDK agents**: for each level of 1, 10 and 100 concurrent agents, rounds in which
  every agent ``propose``s a ``files.write`` task (its own file, its own resource) and
  calls ``wait``; the agents run in ``--agent-procs`` spawned processes. The reviewer
  (this process) follows ``WS /api/v1/ws?topics=task,approval`` and approves each task
  ``--think`` seconds after its WebSocket showed it (so the agent is already waiting: an
  approval before the agent's socket is open would measure a read, not a
  notification). Measured: approve → the agent's ``wait`` returned, and approve →
  COMPLETED (the worker applied it). "Approve" is the decision's commit (``decided_at``,
  written in the approving transaction); the reviewer's click (the approve request
  sent) and the approval event reaching the reviewer's own socket are recorded beside it;
* **MCP agents**: ``--mcp-agents`` agents, each with an MCP client session
  (``mcp.Client`` over streamable HTTP, the agent's Bearer token) call the ``files.write``
  tool, then ``wait_for_decision``; measured: approve → ``wait_for_decision`` returned;
* ``--events-server``: a second ``ade serve --no-worker`` kept for the SDK agents' waits
  (their ``events_url``, docs/sdk.md): proposals and approvals go to the first server,
  the agents' events sockets and the reads after them to the second. ``cpu/task`` counts
  the first server only;
* **floor**: a bare Redis pub/sub round trip between two processes (ping on one channel,
  pong on another, redis-py asyncio both sides), on the same Redis.

All processes share one clock (one machine). ``--quick`` ends in about two minutes on
2 cores. The last line is one JSON object: ``notify_p50_ms``, ``notify_p99_ms_100``,
``complete_p50_ms``, ``mcp_notify_p99_ms``, ``pubsub_floor_p99_ms`` and more per level.
``bench/README.md`` records runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx2
import redis.asyncio as aioredis
from api import (
    DEFAULT_DATABASE_URL,
    Database,
    Server,
    _cpu_seconds,
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
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from websockets.asyncio.client import connect

from community_ade.auth import service as auth
from community_ade.client import AdeClient
from community_ade.storage import db

LEVELS = (1, 10, 100)
TARGET_NOTIFY_P99_MS_100 = 50.0
TARGET_COMPLETE_P50_MS = 100.0
ROUND_SECONDS = 120.0  # a round that takes longer than this is broken
# What a wait may read once approved: the worker may already be at it.
DECIDED = ("APPROVED", "APPLYING", "COMPLETED")


# -- the agents (child processes) ---------------------------------------------------------


def write_payload(workspace: str, agent: int, round_no: int) -> dict[str, Any]:
    return {
        "root": workspace,
        "changes": [
            {"path": f"agent-{agent}.txt", "action": "write", "content": f"round {round_no}\n"}
        ],
    }


def resources(agent: int) -> list[dict[str, Any]]:
    return [{"type": "configuration", "id": f"agent-{agent}", "actions": ["write"]}]


async def sdk_agent(client: AdeClient, agent: int, round_no: int, workspace: str) -> dict[str, Any]:
    proposal = await client.propose(
        "files.write",
        write_payload(workspace, agent, round_no),
        resources(agent),
        title=f"agent {agent} round {round_no}",
    )
    waiting = time.time()
    task = await client.wait(proposal.task.id, ROUND_SECONDS)
    return {
        "task": str(task.id),
        "waiting": waiting,
        "returned": time.time(),
        "state": task.state,
    }


async def mcp_agent(session: Client, agent: int, round_no: int, workspace: str) -> dict[str, Any]:
    proposed = await session.call_tool(
        "files.write",
        {
            "title": f"mcp agent {agent} round {round_no}",
            "payload": write_payload(workspace, agent, round_no),
            "resources": resources(agent),
        },
    )
    task_id = json.loads(proposed.content[0].text)["task_id"]
    waiting = time.time()
    while True:
        answer = await session.call_tool(
            "wait_for_decision", {"task_id": task_id, "wait_seconds": 25}
        )
        decided = json.loads(answer.content[0].text)
        if decided["decided"]:
            break
    return {"task": task_id, "waiting": waiting, "returned": time.time(), "state": decided["state"]}


@dataclass(frozen=True)
class AgentShare:
    """What one agent process is given: the server (and where SDK waits go), its agents
    (index, token), ``sdk`` or ``mcp``, and the workspace their files go to."""

    url: str
    events_url: str | None
    agents: list[tuple[int, str]]
    mode: str
    workspace: str


async def _agents(share: AgentShare, pipe: Connection) -> None:
    """Serve rounds until told to stop: ``(count, round)`` → that many of this process's
    agents propose and wait at once; their samples go back."""
    url, agents, mode, workspace = share.url, share.agents, share.mode, share.workspace
    async with contextlib.AsyncExitStack() as stack:
        sessions: list[Any] = []
        for _, token in agents:
            if mode == "sdk":
                client = AdeClient(url, token, events_url=share.events_url)
                sessions.append(await stack.enter_async_context(client))
            else:
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
                )
                transport = streamable_http_client(f"{url}/mcp", http_client=http)
                sessions.append(await stack.enter_async_context(Client(transport)))
        pipe.send("ready")
        run_one = sdk_agent if mode == "sdk" else mcp_agent
        while True:
            message = await asyncio.to_thread(pipe.recv)
            if message == "stop":
                return
            count, round_no = message
            picked = list(zip(sessions, agents, strict=True))[:count]
            samples = await asyncio.gather(
                *(run_one(s, index, round_no, workspace) for s, (index, _) in picked),
                return_exceptions=True,
            )
            pipe.send([s if isinstance(s, dict) else {"error": repr(s)} for s in samples])


def agent_process(share: AgentShare, pipe: Connection) -> None:
    asyncio.run(_agents(share, pipe))


class Fleet:
    """Agent processes, each with a share of the agents (index, token)."""

    def __init__(
        self,
        url: str,
        tokens: list[str],
        mode: str,
        workspace: Path,
        procs: int,
        events_url: str | None = None,
    ) -> None:
        context = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.children: list[Any] = []
        self.shares: list[int] = []
        indexed = list(enumerate(tokens))
        for p in range(procs):
            mine = indexed[p::procs]
            parent_end, child_end = context.Pipe()
            child = context.Process(
                target=agent_process,
                args=(AgentShare(url, events_url, mine, mode, str(workspace)), child_end),
                daemon=True,
            )
            child.start()
            self.pipes.append(parent_end)
            self.children.append(child)
            self.shares.append(len(mine))

    async def ready(self) -> None:
        for pipe in self.pipes:
            if not await asyncio.to_thread(pipe.poll, 120):
                raise RuntimeError("an agent process did not start")
            pipe.recv()

    async def round(self, agents: int, round_no: int) -> list[dict[str, Any]]:
        """``agents`` agents (spread over the processes) propose and wait once."""
        procs = len(self.pipes)
        counts = [min(share, agents // procs + (1 if i < agents % procs else 0))
                  for i, share in enumerate(self.shares)]  # fmt: skip
        for pipe, count in zip(self.pipes, counts, strict=True):
            pipe.send((count, round_no))
        samples: list[dict[str, Any]] = []
        for pipe in self.pipes:
            if not await asyncio.to_thread(pipe.poll, ROUND_SECONDS):
                raise RuntimeError("an agent process did not report its round")
            samples += pipe.recv()
        return samples

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send("stop")
        for child in self.children:
            child.join(timeout=20)
            if child.is_alive():
                child.kill()


# -- the reviewer (this process) ----------------------------------------------------------


@dataclass
class Reviewer:
    """Approves every submitted task ``think`` seconds after its socket showed it."""

    url: str
    token: str
    think: float
    clicked: dict[str, float] = field(default_factory=dict)  # approve request sent
    seen_approved: dict[str, float] = field(default_factory=dict)  # approval event arrived
    approved_ts: dict[str, float] = field(default_factory=dict)  # its audit row's ts
    errors: list[str] = field(default_factory=list)

    async def run(self, ready: asyncio.Event) -> None:
        ws_url = "ws" + self.url.removeprefix("http") + "/api/v1/ws?topics=task,approval"
        headers = {"Authorization": f"Bearer {self.token}"}
        pending: set[asyncio.Task[None]] = set()
        async with (
            AdeClient(self.url, self.token) as ade,
            connect(ws_url, additional_headers=headers, max_size=None) as ws,
        ):
            await ws.recv()  # hello: subscribed
            ready.set()
            async for raw in ws:
                arrived = time.time()
                frame = json.loads(raw)
                if frame.get("kind") != "event":
                    continue
                event = frame["event"]
                task_id = str(event.get("subject", "")).removeprefix("task:")
                if event["type"] == "task:submitted":
                    approving = asyncio.create_task(self.approve(ade, task_id))
                    pending.add(approving)
                    approving.add_done_callback(pending.discard)
                elif event["type"] == "approval:approved":
                    self.seen_approved[task_id] = arrived
                    ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
                    self.approved_ts[task_id] = ts.timestamp()

    async def approve(self, ade: AdeClient, task_id: str) -> None:
        try:
            await asyncio.sleep(self.think)
            task = await ade.get(task_id)
            assert task.preview_digest is not None
            self.clicked[task_id] = time.time()
            await ade.approve(task_id, task.preview_digest)
        except Exception as exc:
            self.errors.append(f"{task_id}: {exc!r}")


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Level:
    label: str
    agents: int
    rounds: int = 0
    notify_ms: list[float] = field(default_factory=list)  # decided_at → wait returned
    click_ms: list[float] = field(default_factory=list)  # approve sent → wait returned
    event_ms: list[float] = field(default_factory=list)  # decided_at → reviewer's socket
    audit_ms: list[float] = field(default_factory=list)  # decided_at → the event's audit ts
    complete_ms: list[float] = field(default_factory=list)  # decided_at → finished_at
    late: int = 0  # waits that began after the decision (not counted as notifications)
    server_cpu_ms: float = 0.0  # the server process's CPU (API, events, MCP, worker)
    tasks: int = 0
    load: float = 0.0  # the machine's 1-minute load average as the level began
    errors: list[str] = field(default_factory=list)


async def task_times(database: Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    """decided_at / finished_at (epoch seconds) and state of the tasks, once all are
    final (or the round's time is up)."""
    conn = await asyncpg.connect(database.url, timeout=10)
    try:
        deadline = time.monotonic() + ROUND_SECONDS
        while True:
            rows = await conn.fetch(
                "SELECT id::text AS id, state, extract(epoch FROM decided_at) AS decided, "
                "extract(epoch FROM finished_at) AS finished FROM tasks WHERE id = ANY($1::uuid[])",
                ids,
            )
            if all(r["finished"] is not None for r in rows) or time.monotonic() > deadline:
                return {r["id"]: dict(r) for r in rows}
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def measure(
    fleet: Fleet,
    reviewer: Reviewer,
    database: Database,
    server_pid: int,
    level: Level,
    rounds: int,
    base: int,
) -> None:
    level.load = os.getloadavg()[0]
    for r in range(rounds):
        cpu_before = _cpu_seconds(server_pid) or 0.0
        samples = await fleet.round(level.agents, base + r)
        good = [s for s in samples if "error" not in s]
        level.errors += [s["error"] for s in samples if "error" in s]
        times = await task_times(database, [s["task"] for s in good])
        for s in good:
            t = times.get(s["task"])
            if t is None or t["decided"] is None or s["state"] not in DECIDED:
                level.errors.append(f"{s['task']}: {s['state']}")
                continue
            decided = float(t["decided"])
            if s["waiting"] > decided:
                level.late += 1
            else:
                level.notify_ms.append(1000 * (s["returned"] - decided))
                if s["task"] in reviewer.clicked:
                    level.click_ms.append(1000 * (s["returned"] - reviewer.clicked[s["task"]]))
            if s["task"] in reviewer.seen_approved:
                level.event_ms.append(1000 * (reviewer.seen_approved[s["task"]] - decided))
                level.audit_ms.append(1000 * (reviewer.approved_ts[s["task"]] - decided))
            if t["finished"] is not None and t["state"] == "COMPLETED":
                level.complete_ms.append(1000 * (float(t["finished"]) - decided))
        level.server_cpu_ms += 1000 * ((_cpu_seconds(server_pid) or 0.0) - cpu_before)
        level.tasks += len(samples)
        level.rounds += 1
    progress(
        f"{level.label} {level.agents}: notify p50 {percentile(level.notify_ms, 0.5):.1f} "
        f"p99 {percentile(level.notify_ms, 0.99):.1f} ms, completed p50 "
        f"{percentile(level.complete_ms, 0.5):.1f} ms ({len(level.notify_ms)} samples, "
        f"{level.late} late, {len(level.errors)} errors; server CPU "
        f"{level.server_cpu_ms / max(1, level.tasks):.0f} ms/task, load {level.load:.1f})"
    )


# -- the floor: Redis pub/sub between two processes ----------------------------------------


async def _echo(url: str, tag: str) -> None:
    client = aioredis.Redis.from_url(url)
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(f"ping-{tag}")
        await client.publish(f"pong-{tag}", b"ready")
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            if message["data"] == b"stop":
                break
            await client.publish(f"pong-{tag}", message["data"])
    await client.aclose()


def echo_process(url: str, tag: str) -> None:
    asyncio.run(_echo(url, tag))


async def pubsub_floor(url: str, messages: int) -> list[float]:
    """Round trips (ms): publish a ping, the other process publishes it back."""
    tag = uuid.uuid4().hex[:8]
    client = aioredis.Redis.from_url(url)
    child = mp.get_context("spawn").Process(target=echo_process, args=(url, tag), daemon=True)
    trips: list[float] = []
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(f"pong-{tag}")
        child.start()

        async def pong() -> bytes:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
                if message is not None:
                    return bytes(message["data"])

        if await pong() != b"ready":
            raise RuntimeError("the echo process did not start")
        for n in range(messages + 10):  # 10 warm-up trips
            sent = time.perf_counter()
            await client.publish(f"ping-{tag}", str(n))
            await pong()
            if n >= 10:
                trips.append(1000 * (time.perf_counter() - sent))
            await asyncio.sleep(0.002)
        await client.publish(f"ping-{tag}", b"stop")
    await client.aclose()
    child.join(timeout=10)
    return trips


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Cast:
    reviewer: str
    sdk: list[str]
    mcp: list[str]


async def prepare(url: str, sdk_agents: int, mcp_agents: int) -> Cast:
    engine = db.create_engine(url)
    try:
        await db.upgrade(engine)
        async with db.sessionmaker(engine).begin() as session:
            sam = await auth.create_user(session, "sam", "submitter")
            rita = await auth.create_user(session, "rita", "reviewer")
            reviewer, _ = await auth.create_token(session, name="bench", user_id=rita.id)
            tokens: list[str] = []
            for i in range(sdk_agents + mcp_agents):
                agent = await auth.create_agent_identity(session, f"bench-agent-{i}", sam.id)
                agent.tools = ["files.write"]
                token, _ = await auth.create_token(session, name="bench", agent_id=agent.id)
                tokens.append(token)
    finally:
        await engine.dispose()
    return Cast(reviewer, tokens[:sdk_agents], tokens[sdk_agents:])


async def start_worker(env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    """``python -m community_ade worker`` beside the server (``--separate-worker``)."""
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "community_ade", "worker", env=env, stdout=log, stderr=log
        )


def rounds_for(agents: int, args: argparse.Namespace) -> int:
    """Enough rounds for ~``--samples`` samples, at least ``--min-rounds``."""
    return max(args.min_rounds, -(-args.samples // agents))


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    workspaces = tmp / "workspaces"
    workspace = workspaces / "bench"
    workspace.mkdir(parents=True)
    database = await create_database(args.database_url)
    try:
        cast = await prepare(database.url, max(args.levels), args.mcp_agents)
        with redis_server(args.redis_url) as (redis_url, _own):
            env = server_env(database.url, tmp, workspaces, redis_url)
            env["ADE_QUEUE_NAME"] = f"bench-{uuid.uuid4().hex[:8]}"
            server = Server(
                env, tmp / "server.log", ["--no-worker"] if args.separate_worker else []
            )
            await server.start()
            # Processes kept for the agents' waits (--events-server): the SDK's events_url.
            events_server = None
            if args.events_server:
                events_server = Server(env, tmp / "events-server.log", ["--no-worker"])
                await events_server.start()
            worker = await start_worker(env, tmp / "worker.log") if args.separate_worker else None
            try:
                floor = await pubsub_floor(redis_url, args.floor_messages)
                progress(
                    f"pub/sub floor: p50 {percentile(floor, 0.5):.2f} "
                    f"p99 {percentile(floor, 0.99):.2f} ms"
                )
                return await run_levels(
                    args, server, events_server, database, cast, workspace, floor
                )
            finally:
                if worker is not None:
                    worker.send_signal(signal.SIGINT)  # drain and exit
                    await asyncio.wait_for(worker.wait(), 30)
                await server.stop()
                if events_server is not None:
                    await events_server.stop()
    finally:
        await drop_database(database)


async def run_levels(
    args: argparse.Namespace,
    server: Server,
    events_server: Server | None,
    database: Database,
    cast: Cast,
    workspace: Path,
    floor: list[float],
) -> dict[str, Any]:
    reviewer = Reviewer(server.base_url, cast.reviewer, args.think)
    ready = asyncio.Event()
    reviewing = asyncio.create_task(reviewer.run(ready))
    await asyncio.wait_for(ready.wait(), 30)
    levels: list[Level] = []
    round_no = 0
    try:
        events_url = events_server.base_url if events_server else None
        sdk = Fleet(server.base_url, cast.sdk, "sdk", workspace, args.agent_procs, events_url)
        try:
            await sdk.ready()
            for agents in args.levels:
                level = Level("sdk", agents)
                rounds = rounds_for(agents, args)
                await measure(sdk, reviewer, database, server.pid, level, rounds, round_no)
                round_no += rounds
                levels.append(level)
        finally:
            sdk.close()
        if args.mcp_agents:
            procs = min(args.agent_procs, args.mcp_agents)
            mcp = Fleet(server.base_url, cast.mcp, "mcp", workspace, procs)
            try:
                await mcp.ready()
                level = Level("mcp", args.mcp_agents)
                rounds = rounds_for(args.mcp_agents, args)
                await measure(mcp, reviewer, database, server.pid, level, rounds, round_no)
                levels.append(level)
            finally:
                mcp.close()
    finally:
        reviewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reviewing
    if reviewer.errors:
        progress(f"reviewer errors: {reviewer.errors[:5]}")
    return {"levels": levels, "floor": floor, "reviewer_errors": reviewer.errors}


def summary(levels: list[Level], floor: list[float]) -> dict[str, Any]:
    sdk = {level.agents: level for level in levels if level.label == "sdk"}
    mcp = [level for level in levels if level.label == "mcp"]
    # The headline figures are those of the largest level (100 agents by default).
    top = sdk[max(sdk)] if sdk else Level("sdk", 0)

    def r(value: float) -> float | None:
        return rounded(value, 1)  # None: not measured

    out: dict[str, Any] = {
        "notify_p50_ms": r(percentile(top.notify_ms, 0.5)),
        "notify_p99_ms_100": r(percentile(sdk[100].notify_ms, 0.99)) if 100 in sdk else None,
        "complete_p50_ms": r(percentile(top.complete_ms, 0.5)),
        "mcp_notify_p99_ms": r(percentile(mcp[0].notify_ms, 0.99)) if mcp else None,
        "pubsub_floor_p99_ms": round(percentile(floor, 0.99), 2),
        "pubsub_floor_p50_ms": round(percentile(floor, 0.5), 2),
    }
    for n, level in sdk.items():
        out[f"notify_p50_ms_{n}"] = r(percentile(level.notify_ms, 0.5))
        out[f"notify_p99_ms_{n}"] = r(percentile(level.notify_ms, 0.99))
        out[f"complete_p50_ms_{n}"] = r(percentile(level.complete_ms, 0.5))
        out[f"complete_p99_ms_{n}"] = r(percentile(level.complete_ms, 0.99))
        out[f"server_cpu_ms_per_task_{n}"] = r(level.server_cpu_ms / max(1, level.tasks))
        # Against the floor: how many bare pub/sub round trips a notification costs.
        out[f"notify_p99_over_floor_p99_{n}"] = r(
            percentile(level.notify_ms, 0.99) / percentile(floor, 0.99)
        )
    if mcp:
        out["mcp_notify_p50_ms"] = r(percentile(mcp[0].notify_ms, 0.5))
    out["notify_target_met"] = (
        out["notify_p99_ms_100"] is not None
        and out["notify_p99_ms_100"] <= TARGET_NOTIFY_P99_MS_100
    )
    out["complete_target_met"] = (
        out["complete_p50_ms"] is not None and out["complete_p50_ms"] <= TARGET_COMPLETE_P50_MS
    )
    return out


def print_report(levels: list[Level], floor: list[float], seconds: float) -> None:
    def p(values: list[float], q: float) -> str:
        return f"{percentile(values, q):8.1f}" if values else f"{'-':>8}"

    print(
        f"{'who':>4} {'agents':>6} {'rounds':>6} {'n':>5} {'notify50':>8} {'notify99':>8}"
        f" {'click50':>8} {'click99':>8} {'event50':>8} {'event99':>8} {'done50':>8}"
        f" {'done99':>8} {'audit50':>8} {'cpu/task':>8} {'load':>5} {'late':>5} {'errors':>6}"
    )
    for level in levels:
        print(
            f"{level.label:>4} {level.agents:>6} {level.rounds:>6} {len(level.notify_ms):>5}"
            f" {p(level.notify_ms, 0.5)} {p(level.notify_ms, 0.99)}"
            f" {p(level.click_ms, 0.5)} {p(level.click_ms, 0.99)}"
            f" {p(level.event_ms, 0.5)} {p(level.event_ms, 0.99)}"
            f" {p(level.complete_ms, 0.5)} {p(level.complete_ms, 0.99)}"
            f" {p(level.audit_ms, 0.5)} {level.server_cpu_ms / max(1, level.tasks):8.1f}"
            f" {level.load:5.1f} {level.late:>5} {len(level.errors):>6}"
        )
        for error in level.errors[:3]:
            print(f"   error: {error[:200]}")
    print(
        f"floor (Redis pub/sub round trip, 2 processes): p50 {percentile(floor, 0.5):.2f} ms,"
        f" p99 {percentile(floor, 0.99):.2f} ms over {len(floor)} trips"
    )
    for level in levels:
        ratio = percentile(level.notify_ms, 0.99) / percentile(floor, 0.99)
        print(f"{level.label} {level.agents}: notify p99 / floor p99 = {ratio:.0f}×")
    print(f"\n({seconds:.0f} s; {machine()})")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (about 2 minutes)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="admin DSN")
    parser.add_argument("--redis-url", help="a Redis to use (default: a private redis-server)")
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=list(LEVELS)
    )
    parser.add_argument("--samples", type=int, help="samples per level, about (200; quick 40)")
    parser.add_argument("--min-rounds", type=int, help="rounds per level at least (3; quick 2)")
    parser.add_argument("--mcp-agents", type=int, default=10, help="MCP agents (10; 0: none)")
    parser.add_argument("--agent-procs", type=int, default=2, help="agent processes (2)")
    parser.add_argument(
        "--separate-worker",
        action="store_true",
        help="the worker in a process of its own (ade serve --no-worker + ade worker)",
    )
    parser.add_argument(
        "--events-server",
        action="store_true",
        help="a second `ade serve --no-worker` kept for the SDK agents' waits (their "
        "events_url): the layout docs/deployment.md recommends for many agents",
    )
    parser.add_argument("--think", type=float, default=0.5, help="reviewer's delay, s (0.5)")
    parser.add_argument("--floor-messages", type=int, help="pub/sub round trips (1000; quick 300)")
    args = parser.parse_args(argv)
    args.samples = args.samples or (40 if args.quick else 200)
    args.min_rounds = args.min_rounds or (2 if args.quick else 3)
    args.floor_messages = args.floor_messages or (300 if args.quick else 1000)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    result, seconds = run_in_scratch("ade-bench-agents-", lambda tmp: run(args, tmp))
    print_report(result["levels"], result["floor"], seconds)
    print(json.dumps(summary(result["levels"], result["floor"])))


if __name__ == "__main__":
    main()
