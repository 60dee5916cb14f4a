"""The faults of the campaign (``bench/chaos.py``): what each kind does to which
process, and how it is put right again; and the watch for processes that exit by
themselves."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from chaos_cluster import Cluster, Database, Proc, log

FAULT_KINDS = (
    "worker-kill",
    "worker-stop",
    "api-kill",
    "redis-restart-persist",
    "redis-restart-empty",
    "db-terminate",
)
LEASE_S, RECLAIM_S = 4.0, 6.0  # the services' lock lease and reclaim idle (see TIMINGS)
MAX_RESTARTS = 30  # of processes that exited by themselves
AIM_SHARE = 0.8  # of worker faults aimed at a worker that is applying
AIM_WAIT_S = 3.0  # how long an aimed fault waits for a worker to be applying


@dataclass
class Fault:
    kind: str
    target: str
    started: float
    mid_apply: bool = False
    ended: float | None = None
    note: str = ""


class Faults:
    """Injects faults and restarts what they took down; watches for processes that exit
    by themselves (a crash: recorded with the end of its log, then restarted)."""

    def __init__(
        self, cluster: Cluster, database: Database, kinds: list[str], rng: random.Random
    ) -> None:
        self.cluster = cluster
        self.database = database
        self.kinds = kinds
        self.rng = rng
        self.done: list[Fault] = []
        self.running: set[asyncio.Task[None]] = set()
        self.busy: set[str] = set()  # processes a fault is acting on
        self.crashes: list[str] = []
        self.broken: list[str] = []  # faults whose undoing failed (the harness's own trouble)

    def watch(self) -> None:
        for proc in self.cluster.procs:
            if proc.popen is None or proc.running or proc.expected_exit or proc.name in self.busy:
                continue
            code = proc.popen.returncode
            self.crashes.append(
                f"{proc.name} exited by itself with {code}; its log ends:\n{proc.tail()}"
            )
            log(f"  !! {proc.name} exited by itself ({code})")
            if len(self.crashes) <= MAX_RESTARTS:
                proc.start()
            else:
                proc.expected_exit = True  # given up on: no more restarts

    async def applying_pids(self) -> Counter[int]:
        """Workers' pids with an APPLYING task (``worker_id`` is host:pid:random)."""
        assert self.database.pool is not None
        rows = await self.database.pool.fetch(
            "SELECT worker_id FROM tasks WHERE state = 'APPLYING'"
        )
        return Counter(int(r[0].split(":")[-2]) for r in rows if r[0] and r[0].count(":") >= 2)

    async def pick_worker(self) -> tuple[Proc, bool] | None:
        """A started worker no fault acts on; mostly (``AIM_SHARE``) one applying a task,
        waited for up to ``AIM_WAIT_S``; whether it was applying."""
        aim = self.rng.random() < AIM_SHARE
        deadline = time.monotonic() + (AIM_WAIT_S if aim else 0)
        while True:
            live = [w for w in self.cluster.workers if w.ready and w.name not in self.busy]
            try:
                applying = await self.applying_pids()
            except Exception as exc:  # the database may be down for a moment
                log(f"  (could not see who applies: {exc})")
                applying = Counter()
            aimed = [w for w in live if applying[w.pid or 0]]
            if aimed and aim:
                return self.rng.choice(aimed), True
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        if not live:
            return None
        chosen = self.rng.choice(live)
        return chosen, bool(applying[chosen.pid or 0])

    async def inject(self) -> Fault | None:
        """One fault of a kind whose target is free now (None if none is)."""
        for kind in self.rng.sample(self.kinds, len(self.kinds)):
            fault = await self._begin(kind)
            if fault is not None:
                self.done.append(fault)
                aimed = " (mid-apply)" if fault.mid_apply else ""
                log(f"  fault {len(self.done)}: {kind} {fault.target}{aimed} {fault.note}")
                return fault
        return None

    async def _begin(self, kind: str) -> Fault | None:
        now = time.monotonic()
        if kind in ("worker-kill", "worker-stop"):
            picked = await self.pick_worker()
            if picked is None:
                return None
            worker, mid_apply = picked
            fault = Fault(kind, worker.name, now, mid_apply)
            self._spawn(
                self._kill_worker(worker, fault)
                if kind == "worker-kill"
                else self._stop_worker(worker, fault),
                worker.name,
            )
            return fault
        if kind == "api-kill":
            up = [s for s in self.cluster.servers if s.running and s.name not in self.busy]
            if len(up) < len(self.cluster.servers):
                return None  # one server at a time: the client always has the other
            server = self.rng.choice(up)
            fault = Fault(kind, server.name, now)
            self._spawn(self._kill_server(server, fault), server.name)
            return fault
        if kind.startswith("redis-restart"):
            if "redis" in self.busy:
                return None
            fault = Fault(kind, "redis-server", now)
            self._spawn(self._restart_redis(fault, empty=kind.endswith("empty")), "redis")
            return fault
        ended = await self.database.terminate_connections()
        return Fault(
            kind, self.database.name, now, ended=time.monotonic(), note=f"{ended} connection(s)"
        )

    def _spawn(self, action: Any, target: str) -> None:
        self.busy.add(target)
        job = asyncio.create_task(action)
        self.running.add(job)

        def ended(_: asyncio.Task[None]) -> None:
            self.running.discard(job)
            self.busy.discard(target)
            if not job.cancelled() and job.exception() is not None:
                self.broken.append(f"{target}: {job.exception()!r}")

        job.add_done_callback(ended)

    async def _kill_worker(self, worker: Proc, fault: Fault) -> None:
        worker.kill()
        await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        worker.start()
        fault.ended = time.monotonic()

    async def _stop_worker(self, worker: Proc, fault: Fault) -> None:
        worker.signal(signal.SIGSTOP)
        worker.stopped = True
        await asyncio.sleep(self.rng.uniform(LEASE_S + 0.5, RECLAIM_S + 2))
        worker.signal(signal.SIGCONT)
        worker.stopped = False
        fault.ended = time.monotonic()

    async def _kill_server(self, server: Proc, fault: Fault) -> None:
        server.kill()
        await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        server.start()
        if not await self.cluster.healthy(server):
            fault.note = "did not answer /healthz again"
        fault.ended = time.monotonic()

    async def _restart_redis(self, fault: Fault, *, empty: bool) -> None:
        redis = self.cluster.redis
        redis.proc.kill()
        if empty:
            redis.wipe()
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        await asyncio.to_thread(redis.start)
        fault.ended = time.monotonic()

    async def finish(self) -> None:
        """Wait for the faults still acting (each ends within about a minute); a fault
        that could not put right what it broke (e.g. Redis did not start again) makes
        the campaign meaningless: it stops here."""
        if self.running:
            await asyncio.wait(list(self.running), timeout=120)
        if self.broken:
            raise RuntimeError("a fault could not be undone: " + "; ".join(self.broken))

    def last_end(self) -> float:
        return max((f.ended or f.started for f in self.done), default=0.0)
