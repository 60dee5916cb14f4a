"""Benchmark of the Redis lock manager against the two-round-trip floor and its peers.

Issue 2, §4. Against one Redis (``--redis-url``, else ``$ADE_REDIS_URL``, else a private
``redis-server`` this script starts on a free port and stops at the end), in one run:

* uncontended acquire+release cycles per second for ours (``LockManager``), the floor
  (``SET NX PX`` + compare-and-delete ``EVALSHA``), redis-py ``Lock`` — those three
  through ``redis.asyncio`` like ours — then python-redis-lock and pottery ``Redlock``
  (one master), which are sync-only and run sync. Rounds interleave the contenders
  (A B C D E, A B C D E, …); a rate is the median over rounds, a ratio the median of
  the per-round ratios.
* contended: 4 and 16 worker processes (spawned once, each its own agent) on one
  resource, each holding ~1 ms then releasing and asking again at once, for ours,
  redis-py ``Lock`` (defaults) and python-redis-lock, interleaved the same way; each
  figure is the median over rounds, except the longest wait: the worst round's.

``python bench/locks.py --quick`` ends within 90 s on a 2-core machine. It prints a table,
then, as its last line, one JSON object (see ``summary``). ``bench/README.md`` explains
every figure and records the last run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

import redis

LEASE_S = 30
BOOKKEEPING = frozenset({"info", "config", "client", "hello", "select", "ping"})
UNCONTENDED = ("ours", "floor", "redis_py", "python_redis_lock", "pottery")
CONTENDED = ("ours", "redis_py", "python_redis_lock")
LABELS = {
    "ours": "ours (LockManager, async)",
    "floor": "floor SET NX PX + EVALSHA (async)",
    "redis_py": "redis-py Lock (async)",
    "python_redis_lock": "python-redis-lock (sync)",
    "pottery": "pottery Redlock, 1 master (sync)",
}
# Compare-and-delete: the second round trip of the floor.
CAD_LUA = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
BARRIER_TIMEOUT_S = 60.0
# After its run ends, a worker waits at most this long for the grant it is asking for
# (async contenders only), so a lock that stops handing over cannot stall the benchmark.
DRAIN_S = 3.0

Row = tuple[float, float, float, float]  # asked, granted, release sent, release returned


# -- Redis server and command statistics ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, bool]]:
    """Yield (url, own): the given Redis, or a private redis-server on a free port."""
    if url:
        yield url, False
        return
    binary = "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    binary = binary or shutil.which("redis-server")
    if binary is None:
        sys.exit("no redis-server found: pass --redis-url or set ADE_REDIS_URL")
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    args += ["no", "--logfile", "", "--loglevel", "warning"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)
        client.close()
        yield url, True
    finally:
        proc.terminate()
        proc.wait(10)


def command_calls(admin: redis.Redis) -> Counter[str]:
    """``calls`` of every command in INFO commandstats, bookkeeping commands left out.

    Includes the commands Lua scripts run (``redis.call``)."""
    stats: dict[str, dict[str, Any]] = admin.info("commandstats")
    calls: Counter[str] = Counter()
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_").split("|")[0].lower()
        if name not in BOOKKEEPING:
            calls[name] += int(value["calls"])
    return calls


def per(calls: Counter[str], n: int) -> dict[str, float]:
    """Commands per acquisition (or cycle), by name, most frequent first."""
    return {name: c / n for name, c in calls.most_common() if c > 0} if n else {}


def breakdown(calls: dict[str, float], top: int = 12) -> str:
    return ", ".join(f"{name} {c:.2f}" for name, c in list(calls.items())[:top])


# Commands this process sends, by name (counted in the contended workers only).
SENT: Counter[str] = Counter()


def _count(args: tuple[Any, ...]) -> None:
    first = args[0] if args else ""
    name = first.decode() if isinstance(first, bytes) else str(first)
    SENT[name.split(" ")[0].lower()] += 1


def count_sent_commands() -> None:
    """Patch redis-py's command packers (sync and async) to count what is sent."""
    import redis.asyncio.connection as aconn
    import redis.connection as sconn

    def patch(cls: Any, attr: str) -> None:
        original = getattr(cls, attr)

        def counting(self: Any, *args: Any) -> Any:
            _count(args)
            return original(self, *args)

        setattr(cls, attr, counting)

    patch(aconn.AbstractConnection, "pack_command")
    patch(sconn.PythonRespSerializer, "pack")
    patch(sconn.HiredisRespSerializer, "pack")


def sent_calls() -> int:
    return sum(n for name, n in SENT.items() if name not in BOOKKEEPING)


# -- small statistics ------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def jain(counts: Sequence[int]) -> float | None:
    """Jain's fairness index: (Σx)² / (n·Σx²); 1.0 is perfectly even."""
    squares = sum(c * c for c in counts)
    return sum(counts) ** 2 / (len(counts) * squares) if squares else None


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# -- uncontended -----------------------------------------------------------------------


async def _rate_async(cycle: Callable[[], Awaitable[None]], seconds: float) -> tuple[int, float]:
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        await cycle()
        n += 1
        now = time.perf_counter()
        if now >= end:
            return n, now - start


def _rate_sync(cycle: Callable[[], None], seconds: float) -> tuple[int, float]:
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        cycle()
        n += 1
        now = time.perf_counter()
        if now >= end:
            return n, now - start


@dataclass
class Bench:
    """One uncontended contender: an async or a sync acquire+release cycle."""

    acycle: Callable[[], Awaitable[None]] | None = None
    cycle: Callable[[], None] | None = None
    closers: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)

    async def rate(self, seconds: float) -> tuple[int, float]:
        """Run cycles for about ``seconds``: (cycles, seconds taken)."""
        if self.acycle is not None:
            return await _rate_async(self.acycle, seconds)
        assert self.cycle is not None
        return _rate_sync(self.cycle, seconds)

    async def close(self) -> None:
        for close in self.closers:
            result = close()
            if result is not None:
                await result


async def _bench_ours(url: str, tag: str) -> Bench:
    from community_ade.infra.redis_client import open_redis
    from community_ade.locks import LockConfig, LockManager

    manager = LockManager(await open_redis(url), LockConfig(), domain=f"bench-{tag}")
    resource = {"uncontended": "exclusive"}

    async def cycle() -> None:
        grant = await manager.acquire("bench-task", "bench-agent", resource, timeout=None)
        await manager.release(grant)

    return Bench(acycle=cycle, closers=[manager.close, manager.redis.aclose])


async def _bench_floor(url: str, tag: str) -> Bench:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    sha = await client.script_load(CAD_LUA)
    key = f"bench:locks:{tag}:floor"

    async def cycle() -> None:
        token = uuid.uuid4().hex
        if not await client.set(key, token, nx=True, px=LEASE_S * 1000):
            raise RuntimeError("floor: key unexpectedly held")
        await client.evalsha(sha, 1, key, token)

    return Bench(acycle=cycle, closers=[client.aclose])


async def _bench_redis_py(url: str, tag: str) -> Bench:
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    lock = client.lock(f"bench:locks:{tag}:redis-py", timeout=LEASE_S)

    async def cycle() -> None:
        if not await lock.acquire():
            raise RuntimeError("redis-py Lock not acquired")
        await lock.release()

    return Bench(acycle=cycle, closers=[client.aclose])


async def _bench_python_redis_lock(url: str, tag: str) -> Bench:
    import redis_lock

    client = redis.Redis.from_url(url)
    lock = redis_lock.Lock(client, f"bench:locks:{tag}:prl", expire=LEASE_S)

    def cycle() -> None:
        lock.acquire()
        lock.release()

    return Bench(cycle=cycle, closers=[client.close])


async def _bench_pottery(url: str, tag: str) -> Bench:
    from pottery import Redlock

    client = redis.Redis.from_url(url)
    lock = Redlock(key=f"bench:locks:{tag}:pottery", masters={client}, auto_release_time=LEASE_S)

    def cycle() -> None:
        if not lock.acquire():
            raise RuntimeError("pottery Redlock not acquired")
        lock.release()

    return Bench(cycle=cycle, closers=[client.close])


MAKERS: dict[str, Callable[[str, str], Awaitable[Bench]]] = {
    "ours": _bench_ours,
    "floor": _bench_floor,
    "redis_py": _bench_redis_py,
    "python_redis_lock": _bench_python_redis_lock,
    "pottery": _bench_pottery,
}


@dataclass
class Uncontended:
    """Cycles per second of each contender, one entry per round, and Redis commands per
    cycle by name (over all rounds, script-internal ones included)."""

    rates: dict[str, list[float]] = field(default_factory=dict)
    cmds: dict[str, dict[str, float]] = field(default_factory=dict)

    def ratio(self, name: str, other: str) -> float:
        """Median over rounds of name's rate ÷ other's in the same round: the two ran
        seconds apart, so slow drifts of the machine cancel out."""
        return statistics.median(
            a / b for a, b in zip(self.rates[name], self.rates[other], strict=True)
        )


async def run_uncontended(url: str, tag: str, rounds: int, seconds: float) -> Uncontended:
    admin = redis.Redis.from_url(url, decode_responses=True)
    benches = {name: await MAKERS[name](url, tag) for name in UNCONTENDED}
    out = Uncontended({name: [] for name in UNCONTENDED})
    calls: dict[str, Counter[str]] = {name: Counter() for name in UNCONTENDED}
    cycles = dict.fromkeys(UNCONTENDED, 0)
    try:
        for bench in benches.values():  # warm-up: scripts loaded, connections open
            await bench.rate(min(0.2, seconds))
        for r in range(rounds):
            for name, bench in benches.items():
                before = command_calls(admin)
                n, took = await bench.rate(seconds)
                calls[name] += command_calls(admin) - before
                cycles[name] += n
                out.rates[name].append(n / took)
            progress(f"uncontended round {r + 1}/{rounds}: " + _fmt_rates(out.rates, -1))
    finally:
        for bench in benches.values():
            await bench.close()
        admin.close()
    out.cmds = {name: per(calls[name], cycles[name]) for name in UNCONTENDED}
    return out


def _fmt_rates(rates: dict[str, list[float]], i: int) -> str:
    return ", ".join(f"{name} {values[i]:.0f}" for name, values in rates.items())


# -- contended: worker side ------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    contender: str
    procs: int
    round: int
    seconds: float
    hold_s: float
    url: str
    tag: str

    @property
    def name(self) -> str:
        return f"c{self.procs}-r{self.round}-{self.contender}"


def _meet(barrier: Barrier, timeout: float = BARRIER_TIMEOUT_S) -> None:
    barrier.wait(timeout)


def _hold(seconds: float) -> None:
    """The ~1 ms of work under the lock: a blocking sleep, the same for every contender."""
    time.sleep(seconds)


@dataclass
class WorkerResult:
    worker: int
    rows: list[Row] = field(default_factory=list)
    deadline: float = 0.0
    sent: int = 0
    lost: int = 0
    abandoned: list[float] = field(default_factory=list)  # ms waited by a given-up acquire
    error: str | None = None


async def _loop_async(
    acquire: Callable[[], Awaitable[Any]],
    release: Callable[[Any], Awaitable[Any]],
    case: Case,
    out: WorkerResult,
    barrier: Barrier,
) -> None:
    _meet(barrier)  # ready: connected and warmed up
    _meet(barrier)  # go: the parent has read the command counters
    SENT.clear()
    out.deadline = time.monotonic() + case.seconds
    give_up = asyncio.get_running_loop().time() + case.seconds + DRAIN_S
    while (asked := time.monotonic()) < out.deadline:
        try:
            async with asyncio.timeout_at(give_up):
                handle = await acquire()
        except TimeoutError:
            out.abandoned.append((time.monotonic() - asked) * 1000)
            break
        granted = time.monotonic()
        _hold(case.hold_s)
        releasing = time.monotonic()
        await release(handle)
        out.rows.append((asked, granted, releasing, time.monotonic()))
    out.sent = sent_calls()
    _meet(barrier, case.seconds + BARRIER_TIMEOUT_S)  # end: everyone stopped
    _meet(barrier)  # the parent has read the command counters again


def _loop_sync(
    acquire: Callable[[], Any],
    release: Callable[[Any], Any],
    case: Case,
    out: WorkerResult,
    barrier: Barrier,
) -> None:
    _meet(barrier)
    _meet(barrier)
    SENT.clear()
    out.deadline = time.monotonic() + case.seconds
    while (asked := time.monotonic()) < out.deadline:
        handle = acquire()
        granted = time.monotonic()
        _hold(case.hold_s)
        releasing = time.monotonic()
        release(handle)
        out.rows.append((asked, granted, releasing, time.monotonic()))
    out.sent = sent_calls()
    _meet(barrier, case.seconds + BARRIER_TIMEOUT_S)
    _meet(barrier)


async def _work_ours(case: Case, out: WorkerResult, barrier: Barrier) -> None:
    from community_ade.infra.redis_client import open_redis
    from community_ade.locks import Grant, LockConfig, LockManager

    manager = LockManager(await open_redis(case.url), LockConfig(), domain=f"bench-{case.tag}")
    agent, task = f"agent-w{out.worker}", f"task-w{out.worker}"
    try:
        warm = await manager.acquire(task, agent, {f"warm-w{out.worker}": "exclusive"})
        await manager.release(warm)

        async def acquire() -> Grant:
            return await manager.acquire(task, agent, {case.name: "exclusive"}, timeout=None)

        async def release(grant: Grant) -> None:
            was_held = await manager.release(grant)
            if not was_held or grant.lost.is_set():
                out.lost += 1  # the grant ended before its holder released it

        await _loop_async(acquire, release, case, out, barrier)
    finally:
        await manager.close()
        await manager.redis.aclose()


async def _work_redis_py(case: Case, out: WorkerResult, barrier: Barrier) -> None:
    from redis.asyncio import Redis
    from redis.asyncio.lock import Lock

    client = Redis.from_url(case.url, decode_responses=True)
    try:
        warm = client.lock(f"bench:locks:{case.tag}:warm-w{out.worker}", timeout=LEASE_S)
        await warm.acquire()
        await warm.release()
        # Defaults (sleep=0.1 polling, blocking without limit) except a 30 s lease.
        lock = client.lock(f"bench:locks:{case.tag}:{case.name}", timeout=LEASE_S)

        async def acquire() -> Lock:
            if not await lock.acquire():
                raise RuntimeError("redis-py Lock not acquired")
            return lock

        async def release(held: Lock) -> None:
            await held.release()

        await _loop_async(acquire, release, case, out, barrier)
    finally:
        await client.aclose()


def _work_python_redis_lock(case: Case, out: WorkerResult, barrier: Barrier) -> None:
    import redis_lock

    client = redis.Redis.from_url(case.url)
    try:
        warm = redis_lock.Lock(client, f"bench:locks:{case.tag}:warm-w{out.worker}", expire=LEASE_S)
        warm.acquire()
        warm.release()
        lock = redis_lock.Lock(client, f"bench:locks:{case.tag}:{case.name}", expire=LEASE_S)

        def acquire() -> redis_lock.Lock:
            lock.acquire()
            return lock

        _loop_sync(acquire, lambda held: held.release(), case, out, barrier)
    finally:
        client.close()


def _run_case(case: Case, worker: int, barrier: Barrier) -> WorkerResult:
    out = WorkerResult(worker)
    try:
        if case.contender == "ours":
            asyncio.run(_work_ours(case, out, barrier))
        elif case.contender == "redis_py":
            asyncio.run(_work_redis_py(case, out, barrier))
        else:
            _work_python_redis_lock(case, out, barrier)
    except Exception:
        out.error = traceback.format_exc()
        barrier.abort()
    return out


def worker_main(worker: int, conn: Connection, barriers: dict[int, Barrier]) -> None:
    """A contended worker process: runs the cases it is sent until it gets None."""
    count_sent_commands()
    # Import before the first case, not in it.
    import redis_lock  # noqa: F401

    import community_ade.locks  # noqa: F401

    conn.send("ready")
    while (case := conn.recv()) is not None:
        # A plain dict: classes of the spawned main module do not unpickle in the parent.
        conn.send(asdict(_run_case(case, worker, barriers[case.procs])))


# -- contended: parent side ------------------------------------------------------------


@dataclass
class Contended:
    """Figures of one contended run (or the aggregate of several rounds)."""

    contender: str
    procs: int
    acquisitions: int = 0
    acq_s: float | None = None
    gap_p50_ms: float | None = None
    gap_p99_ms: float | None = None
    handover_p50_ms: float | None = None
    wait_p50_ms: float | None = None
    wait_p99_ms: float | None = None
    wait_max_ms: float | None = None
    jain: float | None = None
    regrab: float | None = None
    cmds_per_acq: float | None = None
    cmds: dict[str, float] = field(default_factory=dict)
    sent_per_acq: float | None = None
    hold_ms: float | None = None
    overlaps: int = 0
    lost: int = 0
    abandoned: int = 0
    failed_rounds: int = 0
    rounds: int = 1
    error: str | None = None  # of the first failed round


class Pool:
    """Worker processes spawned once; cases on ``procs`` workers use the first ``procs``."""

    def __init__(self, sizes: Sequence[int]) -> None:
        ctx = mp.get_context("spawn")
        self.barriers = {n: ctx.Barrier(n + 1) for n in sizes}
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(max(sizes)):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(i, theirs, self.barriers), daemon=True)
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)
        for conn in self.conns:
            if not conn.poll(120) or conn.recv() != "ready":
                raise RuntimeError("a worker process did not start")

    def run(self, case: Case, admin: redis.Redis, own: bool) -> Contended:
        barrier = self.barriers[case.procs]
        conns = self.conns[: case.procs]
        for conn in conns:
            conn.send(case)
        before = after = Counter[str]()
        try:
            _meet(barrier)
            if own:
                admin.config_resetstat()
            before = command_calls(admin)
            _meet(barrier)
            _meet(barrier, case.seconds + BARRIER_TIMEOUT_S)
            after = command_calls(admin)
            _meet(barrier)
        except threading.BrokenBarrierError:
            pass  # a worker failed and broke the barrier; its result says why
        results = [self._receive(conn, case) for conn in conns]
        if barrier.broken:
            barrier.reset()
        return analyse(case, results, after - before)

    @staticmethod
    def _receive(conn: Connection, case: Case) -> WorkerResult:
        if not conn.poll(case.seconds + 2 * BARRIER_TIMEOUT_S):
            raise RuntimeError(f"{case.name}: a worker gave no result")
        return WorkerResult(**conn.recv())

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def _pending_at(asked: list[float], granted: list[float], t: float) -> bool:
    """Was this worker waiting (asked, not yet granted) at time t?"""
    i = bisect_right(asked, t) - 1
    return i >= 0 and granted[i] > t


def _transfers(
    rows: list[tuple[int, Row]], workers: int
) -> tuple[list[float], list[float], float | None, int]:
    """Transfer gaps and hand-over times (ms), the re-grab share and the count of
    overlapping holds."""
    asked: list[list[float]] = [[] for _ in range(workers)]
    granted: list[list[float]] = [[] for _ in range(workers)]
    for w, row in rows:  # rows are in grant order, so each worker's lists are sorted
        asked[w].append(row[0])
        granted[w].append(row[1])
    gaps: list[float] = []
    handovers: list[float] = []
    kept = contested = overlaps = 0
    for (wa, a), (wb, b) in pairwise(rows):
        if b[1] < a[2]:
            overlaps += 1  # granted to b before a began to release: mutual exclusion broken
        others_waiting = any(
            _pending_at(asked[w], granted[w], a[3]) for w in range(workers) if w != wa
        )
        if wb != wa and b[0] <= a[3]:  # a hand-over to a worker already waiting
            gaps.append((b[1] - a[3]) * 1000)
            handovers.append((b[1] - a[2]) * 1000)
        if others_waiting:
            contested += 1
            kept += wb == wa
    return gaps, handovers, (kept / contested if contested else None), overlaps


def analyse(case: Case, results: list[WorkerResult], calls: Counter[str]) -> Contended:
    out = Contended(case.contender, case.procs)
    errors = [r.error for r in results if r.error]
    if errors:
        # The worker that failed first breaks the barrier for the others: report its error.
        causes = [e for e in errors if not e.rstrip().endswith("BrokenBarrierError")]
        out.error = (causes or errors)[0]
        return out
    rows = sorted(((r.worker, row) for r in results for row in r.rows), key=lambda x: x[1][1])
    if not rows:
        out.error = "no acquisitions"
        return out
    in_window = [sum(row[1] <= r.deadline for row in r.rows) for r in results]
    abandoned = [ms for r in results for ms in r.abandoned]
    waits = [(row[1] - row[0]) * 1000 for _, row in rows]
    gaps, handovers, out.regrab, out.overlaps = _transfers(rows, case.procs)
    out.handover_p50_ms = percentile(handovers, 50)
    out.acquisitions = len(rows)
    out.acq_s = sum(in_window) / case.seconds
    out.gap_p50_ms, out.gap_p99_ms = percentile(gaps, 50), percentile(gaps, 99)
    out.wait_p50_ms, out.wait_p99_ms = percentile(waits, 50), percentile(waits, 99)
    out.wait_max_ms = max(waits + abandoned)  # a wait given up on is at least that long
    out.abandoned = len(abandoned)
    out.jain = jain(in_window)
    out.cmds_per_acq = calls.total() / len(rows)
    out.cmds = per(calls, len(rows))
    out.sent_per_acq = sum(r.sent for r in results) / len(rows)
    out.hold_ms = statistics.fmean((row[2] - row[1]) * 1000 for _, row in rows)
    out.lost = sum(r.lost for r in results)
    return out


def aggregate(runs: list[Contended]) -> Contended:
    """Median over rounds of every figure, except the longest wait: the worst round's."""
    first = runs[0]
    out = Contended(first.contender, first.procs)
    errors = [r.error for r in runs if r.error]
    ok = [r for r in runs if not r.error]
    out.error = errors[0] if errors else None
    out.failed_rounds, out.rounds = len(errors), len(runs)
    if not ok:
        return out
    for name in ("acq_s", "gap_p50_ms", "gap_p99_ms", "wait_p50_ms", "wait_p99_ms", "jain"):
        setattr(out, name, median([getattr(r, name) for r in ok]))
    for name in ("handover_p50_ms", "regrab", "cmds_per_acq", "sent_per_acq", "hold_ms"):
        setattr(out, name, median([getattr(r, name) for r in ok]))
    out.wait_max_ms = max(r.wait_max_ms or 0.0 for r in ok)
    out.cmds = ok[-1].cmds
    out.acquisitions = sum(r.acquisitions for r in ok)
    out.overlaps = sum(r.overlaps for r in ok)
    out.lost = sum(r.lost for r in ok)
    out.abandoned = sum(r.abandoned for r in ok)
    return out


def run_contended(
    url: str, own: bool, tag: str, procs: Sequence[int], rounds: int, seconds: float, hold: float
) -> dict[tuple[str, int], Contended]:
    admin = redis.Redis.from_url(url, decode_responses=True)
    pool = Pool(procs)
    runs: dict[tuple[str, int], list[Contended]] = {}
    try:
        for r in range(rounds):
            for n in procs:
                for name in CONTENDED:
                    case = Case(name, n, r, seconds, hold, url, tag)
                    result = pool.run(case, admin, own)
                    runs.setdefault((name, n), []).append(result)
                    progress(f"contended {case.name}: {_brief(result)}")
                    if result.error:
                        print(result.error, file=sys.stderr)
    finally:
        pool.close()
        admin.close()
    return {key: aggregate(value) for key, value in runs.items()}


def _brief(c: Contended) -> str:
    if c.error:
        return "ERROR " + c.error.strip().splitlines()[-1]
    return (
        f"{_num(c.acq_s, 0)} acq/s, gap p99 {_num(c.gap_p99_ms, 2)} ms, "
        f"wait max {_num(c.wait_max_ms, 1)} ms, Jain {_num(c.jain, 3)}, "
        f"{_num(c.cmds_per_acq, 1)} cmds/acq"
    )


# -- report ----------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_uncontended(u: Uncontended) -> None:
    print(
        f"\nUncontended acquire+release cycles/s: median and best of {len(u.rates['floor'])} "
        "interleaved rounds; ÷ floor is the median of the per-round ratios"
    )
    print(f"  {'contender':36} {'median':>8} {'best':>8} {'÷ floor':>8} {'cmd/cyc':>7}  rounds")
    for name, values in u.rates.items():
        mid = statistics.median(values)
        every = " ".join(f"{v:.0f}" for v in values)
        cmds = sum(u.cmds[name].values())
        print(
            f"  {LABELS[name]:36} {mid:8.0f} {max(values):8.0f} {u.ratio(name, 'floor'):8.3f} "
            f"{cmds:7.2f}  {every}"
        )
    print(f"  ours, Redis commands per cycle: {breakdown(u.cmds['ours'])}")


def _contended_lines(label: str, c: Contended) -> list[str]:
    lines = []
    if c.acq_s is not None:
        regrab = None if c.regrab is None else c.regrab * 100
        lines.append(
            f"  {label:26} {_num(c.acq_s, 0):>7} {_num(c.gap_p50_ms, 2):>6} "
            f"{_num(c.gap_p99_ms, 2):>7} {_num(c.wait_p50_ms, 1):>7} "
            f"{_num(c.wait_p99_ms, 1):>7} {_num(c.wait_max_ms, 1):>8} {_num(c.jain, 4):>6} "
            f"{_num(regrab, 0) + '%':>6} {_num(c.cmds_per_acq, 2):>7} "
            f"{_num(c.sent_per_acq, 2):>5} {_num(c.hold_ms, 2):>5} "
            f"{_num(c.handover_p50_ms, 2):>6}"
        )
        label = ""
    if c.error:
        last = c.error.strip().splitlines()[-1]
        lines.append(f"  {label:26} !! failed in {c.failed_rounds} of {c.rounds} rounds: {last}")
        label = ""
    if c.overlaps or c.lost or c.abandoned:
        lines.append(
            f"  {label:26} !! {c.overlaps} overlapping holds, {c.lost} grants lost, "
            f"{c.abandoned} waits still unanswered {DRAIN_S:.0f} s after the end"
        )
    return lines


def print_contended(results: dict[tuple[str, int], Contended], procs: Sequence[int]) -> None:
    head = (
        f"  {'contender':26} {'acq/s':>7} {'gap50':>6} {'gap99':>7} {'wait50':>7} {'wait99':>7} "
        f"{'waitmax':>8} {'Jain':>6} {'regrab':>6} {'cmd/acq':>7} {'sent':>5} {'hold':>5} "
        f"{'hand50':>6}"
    )
    for n in procs:
        print(f"\nContended, {n} processes on one resource (times in ms)")
        print(head)
        for name in CONTENDED:
            print("\n".join(_contended_lines(LABELS[name].split(" (")[0], results[(name, n)])))
        ours = results[("ours", n)]
        if ours.cmds:
            print(f"  ours, Redis commands per acquisition: {breakdown(ours.cmds)}")


def _get(results: dict[tuple[str, int], Contended], name: str, n: int, attr: str) -> Any:
    """A figure from the rounds that did not fail (None when all did)."""
    c = results.get((name, n))
    return None if c is None else getattr(c, attr)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def summary(u: Uncontended, results: dict[tuple[str, int], Contended]) -> dict[str, Any]:
    """The final JSON line: the figures issue 2 §4 asks for."""
    cps = {name: round(statistics.median(values), 1) for name, values in u.rates.items()}
    return {
        "ours_cps": cps["ours"],
        "floor_cps": cps["floor"],
        "redis_py_cps": cps["redis_py"],
        "python_redis_lock_cps": cps["python_redis_lock"],
        "pottery_cps": cps["pottery"],
        "ours_acq_s_16": _round(_get(results, "ours", 16, "acq_s"), 1),
        "python_redis_lock_acq_s_16": _round(_get(results, "python_redis_lock", 16, "acq_s"), 1),
        "xfer_gap_p99_ms_16": _round(_get(results, "ours", 16, "gap_p99_ms"), 3),
        "wait_max_ms_16": _round(_get(results, "ours", 16, "wait_max_ms"), 2),
        "redis_py_wait_max_ms_16": _round(_get(results, "redis_py", 16, "wait_max_ms"), 2),
        "jain_16": _round(_get(results, "ours", 16, "jain"), 4),
        "cmds_per_acq_4": _round(_get(results, "ours", 4, "cmds_per_acq"), 2),
        "cmds_per_acq_16": _round(_get(results, "ours", 16, "cmds_per_acq"), 2),
    }


def _check(ok: bool | None, text: str) -> str:
    return f"  {'n/a ' if ok is None else 'PASS' if ok else 'FAIL'}  {text}"


def print_targets(s: dict[str, Any], u: Uncontended) -> None:
    """Issue 2 §4 targets, each with the ratio behind it."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    def at_least(v: float | None, bound: float) -> bool | None:
        return None if v is None else v >= bound

    def at_most(v: float | None, bound: float) -> bool | None:
        return None if v is None else v <= bound

    r_floor = u.ratio("ours", "floor")
    r_prl = u.ratio("ours", "python_redis_lock")
    r_pot = u.ratio("ours", "pottery")
    r_rpy = u.ratio("ours", "redis_py")
    r_acq = ratio(s["ours_acq_s_16"], s["python_redis_lock_acq_s_16"])
    r_cmd = ratio(s["cmds_per_acq_16"], s["cmds_per_acq_4"])
    print("\nTargets (issue 2 §4)")
    lines = [
        _check(at_least(r_floor, 0.9), f"uncontended ours / floor = {_num(r_floor, 3)} (≥ 0.9)"),
        _check(at_least(r_prl, 1.0), f"ours / python-redis-lock = {_num(r_prl, 3)} (> 1)"),
        _check(at_least(r_pot, 1.0), f"ours / pottery = {_num(r_pot, 3)} (> 1)"),
        _check(at_least(r_rpy, 0.95), f"ours / redis-py Lock = {_num(r_rpy, 3)} (≥ 0.95)"),
        _check(
            at_least(r_acq, 1.0),
            f"16 procs: ours / python-redis-lock acq/s = {_num(r_acq, 3)} (≥ 1)",
        ),
        _check(
            at_most(s["xfer_gap_p99_ms_16"], 3.0),
            f"16 procs: transfer gap p99 = {_num(s['xfer_gap_p99_ms_16'], 2)} ms (≤ 3)",
        ),
        _check(
            at_most(s["wait_max_ms_16"], 100.0),
            f"16 procs: longest wait = {_num(s['wait_max_ms_16'], 1)} ms (≤ 100)",
        ),
        _check(at_least(s["jain_16"], 0.99), f"16 procs: Jain = {_num(s['jain_16'], 4)} (≥ 0.99)"),
        _check(at_most(r_cmd, 1.2), f"commands/acq at 16 ÷ at 4 = {_num(r_cmd, 3)} (≤ 1.2)"),
    ]
    print("\n".join(lines))


def cleanup(url: str, tag: str) -> None:
    """On a Redis we did not start, delete every key this run made."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        names = list(client.scan_iter(match=f"*{tag}*", count=1000))
        for i in range(0, len(names), 500):
            client.delete(*names[i : i + 500])
        client.srem("ade:lock:domains", f"bench-{tag}")
    finally:
        client.close()


def machine() -> str:
    try:
        server = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        version = next((w for w in server if w.startswith("v=")), "v=?")[2:]
    except OSError:
        version = "?"
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, redis-py {redis.__version__}, "
        f"redis-server {version}, {platform.platform()}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short run (< 90 s on 2 cores)")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("ADE_REDIS_URL"),
        help="Redis to use (default $ADE_REDIS_URL, else a private redis-server on a free port)",
    )
    p.add_argument("--seconds", type=float, help="length of each contended run (5; quick 4)")
    p.add_argument("--rounds", type=int, help="contended rounds (3; quick 1)")
    p.add_argument("--slice", type=float, help="length of one uncontended slice (1; quick 0.3)")
    p.add_argument("--uncontended-rounds", type=int, help="uncontended rounds (10; quick 9)")
    p.add_argument("--procs", default="4,16", help="contended process counts (4,16)")
    p.add_argument("--hold-ms", type=float, default=1.0, help="time each holder keeps the lock")
    args = p.parse_args(argv)
    quick = args.quick
    args.seconds = args.seconds or (4.0 if quick else 5.0)
    args.rounds = args.rounds or (1 if quick else 3)
    args.slice = args.slice or (0.3 if quick else 1.0)
    args.uncontended_rounds = args.uncontended_rounds or (9 if quick else 10)
    args.procs = [int(n) for n in str(args.procs).split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    with redis_server(args.redis_url) as (url, own):
        where = "a private redis-server" if own else url
        progress(f"run {tag} against {where}; {machine()}")
        if not own:
            progress("not our own server: command counts include any other client's traffic")
        try:
            uncontended = asyncio.run(
                run_uncontended(url, tag, args.uncontended_rounds, args.slice)
            )
            results = run_contended(
                url, own, tag, args.procs, args.rounds, args.seconds, args.hold_ms / 1000
            )
        finally:
            if not own:
                cleanup(url, tag)
    print(f"Lock benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}")
    print_uncontended(uncontended)
    print_contended(results, args.procs)
    s = summary(uncontended, results)
    print_targets(s, uncontended)
    print(f"\n({time.monotonic() - started:.0f} s)")
    print(json.dumps(s))


if __name__ == "__main__":
    main()
