"""Benchmark of live events: fan-out latency from commit to WebSocket client.

Issue 5. One ``python -m community_ade serve`` process (uvicorn, a private
``redis-server`` started here unless ``--redis-url``, a SQLite database in a temporary
directory) and, for each level of 100, 500 and 1000 concurrent clients, that many
WebSocket connections (``WS /api/v1/ws?topics=task``, the ``websockets`` client with its
defaults, so permessage-deflate is negotiated as a browser would) spread over
``--client-procs`` processes, so the clients do not share the server's event loop.

Each event is a ``POST /api/v1/tasks`` (``task:created``): the server commits the task
and its audit row, the relay in the server process is woken by the commit and appends the
event to the Redis stream, the fan-out's XREAD returns it and it is queued to every
client. A client notes the wall-clock time a frame arrived; latency = arrival − the
event's ``ts`` (set by the server when the audit row is written, just before the commit;
all processes share one clock). The first ``WARM_UP`` events of each level are not counted.
Events are sent one at a time, ``--interval`` apart.

``python bench/events.py --quick`` ends within about 90 s on 2 cores. The report ends
with one JSON object on the last line: ``fanout_p99_ms_100``, ``fanout_p99_ms_500``,
``fanout_p99_ms_1000`` (and p50s, deliveries missing). ``bench/README.md`` records runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from api import Server, _cpu_seconds, percentile, progress, server_env
from locks import redis_server
from websockets.asyncio.client import connect

from community_ade.auth import service as auth
from community_ade.storage import db

LEVELS = (100, 500, 1000)
CONNECT_BATCH = 50
READY_SECONDS = 120.0
WARM_UP = 3  # events per level sent before measuring (caches, the clients' first reads)


# -- the clients (child processes) -------------------------------------------------------


@dataclass
class Countdown:
    """Set ``zero`` when every client has finished receiving (or failed)."""

    left: int
    zero: asyncio.Event

    def tick(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.zero.set()


async def _one_client(
    url: str,
    expected: int,
    arrivals: list[tuple[float, str]],
    finished: Countdown,
    release: asyncio.Event,
) -> None:
    """Keep (arrival time, frame) of each event frame; parsing waits until the end, so
    the clients' own work competes less with the server for the CPU while it counts.
    The connection stays open until ``release``: closing handshakes must not compete
    with the fan-out of the last events to the other clients."""
    try:
        async with connect(url, open_timeout=60, max_size=None) as ws:
            await ws.recv()  # hello
            arrivals.append((0.0, "connected"))
            while len(arrivals) <= expected:
                raw = await ws.recv()
                arrived = time.time()
                if isinstance(raw, str) and raw.startswith('{"kind":"event"'):
                    arrivals.append((arrived, raw))
            finished.tick()
            await release.wait()
    finally:
        if len(arrivals) <= expected:
            finished.tick()


def _latencies(arrivals: list[tuple[float, str]]) -> list[tuple[int, float]]:
    """(audit seq, seconds from the event's ts to its arrival) of each event frame."""
    out = []
    for arrived, raw in arrivals[1:]:
        event = json.loads(raw)["event"]
        ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
        out.append((event["audit_seq"], arrived - ts.timestamp()))
    return out


async def _clients(url: str, count: int, expected: int, pipe: Connection, deadline: float) -> None:
    per_client: list[list[tuple[float, str]]] = [[] for _ in range(count)]
    release = asyncio.Event()
    finished = Countdown(count, asyncio.Event())
    tasks = []
    for start in range(0, count, CONNECT_BATCH):
        for arrivals in per_client[start : start + CONNECT_BATCH]:
            tasks.append(
                asyncio.create_task(_one_client(url, expected, arrivals, finished, release))
            )
        while sum(1 for a in per_client[: start + CONNECT_BATCH] if a) < min(
            count, start + CONNECT_BATCH
        ):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
    pipe.send(("ready", sum(1 for a in per_client if a)))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.zero.wait(), deadline)
    pipe.send(("done", [pair for arrivals in per_client for pair in _latencies(arrivals)]))
    await asyncio.to_thread(pipe.recv)  # the parent has every report: close now
    release.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


def client_process(url: str, count: int, expected: int, pipe: Connection, deadline: float) -> None:
    asyncio.run(_clients(url, count, expected, pipe, deadline))


# -- the run -------------------------------------------------------------------------------


@dataclass
class Level:
    clients: int
    events: int
    latencies_ms: list[float]
    missing: int
    server_cpu_us: float  # server CPU per delivered event frame, over the sending phase

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


async def prepare(database_url: str) -> str:
    """Migrate the database; a submitter with a token (which also reads the events)."""
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine)
        async with db.sessionmaker(engine).begin() as session:
            user = await auth.create_user(session, "sam", "submitter")
            token, _ = await auth.create_token(session, name="bench", user_id=user.id)
    finally:
        await engine.dispose()
    return token


async def measure(
    server: Server, token: str, workspace: Path, clients: int, args: argparse.Namespace
) -> Level:
    procs = max(1, min(args.client_procs, clients // 50 or 1))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    url = f"ws://127.0.0.1:{server.port}/api/v1/ws?topics=task&token={token}"
    expected = WARM_UP + args.events
    budget = READY_SECONDS + args.events * args.interval + 30
    context = mp.get_context("spawn")
    pipes, children = [], []
    for share in shares:
        parent_end, child_end = context.Pipe()
        child = context.Process(
            target=client_process, args=(url, share, expected, child_end, budget), daemon=True
        )
        child.start()
        pipes.append(parent_end)
        children.append(child)
    try:
        ready = 0
        for pipe in pipes:
            if not await asyncio.to_thread(pipe.poll, READY_SECONDS):
                raise RuntimeError("a client process did not connect in time")
            _, connected = pipe.recv()
            ready += connected
        progress(f"{clients} clients: {ready} connected; sending {expected} events")
        cpu_before = _cpu_seconds(server.pid) or 0.0
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
            for n in range(expected):
                body = {
                    "type": "files.write",
                    "title": f"fan-out {clients} #{n}",
                    "payload": {
                        "root": str(workspace),
                        "changes": [{"path": "a.txt", "action": "write", "content": "a\n"}],
                    },
                    "resources": [],
                }
                response = await http.post("/api/v1/tasks", json=body)
                response.raise_for_status()
                await asyncio.sleep(args.interval)
        latencies: list[tuple[int, float]] = []
        for pipe in pipes:
            if not await asyncio.to_thread(pipe.poll, budget):
                raise RuntimeError("a client process did not report")
            _, got = pipe.recv()
            latencies += got
        cpu_used = (_cpu_seconds(server.pid) or 0.0) - cpu_before
        for pipe in pipes:
            pipe.send("close")
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    first = min((seq for seq, _ in latencies), default=0)
    by_event: dict[int, float] = {}
    for seq, lat in latencies:
        by_event[seq] = max(by_event.get(seq, 0.0), lat * 1000)
    progress(
        "slowest delivery per event, ms: "
        + " ".join(f"{by_event[k]:.0f}" for k in sorted(by_event))
    )
    measured = [lat * 1000 for seq, lat in latencies if seq >= first + WARM_UP]
    cpu_us = 1e6 * cpu_used / max(1, len(latencies))
    return Level(clients, args.events, measured, clients * args.events - len(measured), cpu_us)


async def run(args: argparse.Namespace, tmp: Path) -> list[Level]:
    workspace = tmp / "workspaces"
    workspace.mkdir()
    database_url = f"sqlite:///{tmp / 'ade.db'}"
    token = await prepare(database_url)
    with redis_server(args.redis_url) as (redis_url, _own):
        env = server_env(database_url, tmp, workspace, redis_url)
        env["ADE_WS_CLIENT_BUFFER"] = "1000"
        server = Server(env, tmp / "server.log")
        await server.start()
        try:
            levels = []
            for clients in args.levels:
                levels.append(await measure(server, token, workspace, clients, args))
                level = levels[-1]
                progress(
                    f"{clients} clients: p50 {level.p(0.5):.1f} ms, p99 {level.p(0.99):.1f} ms"
                    f", {level.missing} missing"
                )
            return levels
        finally:
            await server.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer events (about 90 s)")
    parser.add_argument("--events", type=int, help="measured events per level (100; quick 20)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between events (0.2)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (2)")
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=list(LEVELS)
    )
    parser.add_argument("--redis-url", help="a Redis to use (default: a private redis-server)")
    args = parser.parse_args(argv)
    args.events = args.events or (20 if args.quick else 100)
    return args


def summary(levels: list[Level]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in levels:
        out[f"fanout_p50_ms_{level.clients}"] = round(level.p(0.5), 1)
        out[f"fanout_p99_ms_{level.clients}"] = round(level.p(0.99), 1)
        out[f"fanout_missing_{level.clients}"] = level.missing
        out[f"server_cpu_us_per_frame_{level.clients}"] = round(level.server_cpu_us, 1)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ade-bench-events-") as tmp:
        levels = asyncio.run(run(args, Path(tmp)))
    print(
        f"{'clients':>8} {'events':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'missing':>8}"
        f" {'server CPU µs/frame':>20}"
    )
    for level in levels:
        worst = max(level.latencies_ms, default=float("nan"))
        print(
            f"{level.clients:>8} {level.events:>7} {level.p(0.5):>8.1f} {level.p(0.99):>8.1f}"
            f" {worst:>8.1f} {level.missing:>8} {level.server_cpu_us:>20.1f}"
        )
    print(f"\n({time.monotonic() - started:.0f} s, {sys.platform})")
    print(json.dumps(summary(levels)))


if __name__ == "__main__":
    main()
