"""The processes of the fault campaign (``bench/chaos.py``): a private ``redis-server``,
two ``ade serve --no-worker``, a few ``ade worker``, and the campaign's own PostgreSQL
database. Every process writes stdout and stderr to its own log file (one per start),
which the verdict scans for tracebacks; every process started is killed at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
from sqlalchemy.engine import make_url

SYSTEM_REDIS_SERVER = "/usr/bin/redis-server"
START_SECONDS = 60.0
WORKER_ARGS = ("--concurrency", "4")
WORKER_READY = "started (concurrency"
APP_NAME = "ade-chaos-driver"
"""The campaign's own PostgreSQL connections (spared by the connection-terminating fault)."""


def log(message: str) -> None:
    """Progress, to stderr (stdout's last line is the campaign's JSON)."""
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str | None:
    if os.access(SYSTEM_REDIS_SERVER, os.X_OK):
        return SYSTEM_REDIS_SERVER
    return shutil.which("redis-server")


@dataclass
class Proc:
    """One process the campaign starts (and restarts): ``argv`` under ``env``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logs: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_files: list[Path] = field(default_factory=list)
    ready_line: str = ""  # what its log says once it has started
    stopped: bool = False  # SIGSTOPped by a fault
    expected_exit: bool = False  # killed by a fault: its exit is no crash
    _ready: bool = False

    def start(self) -> None:
        self.starts += 1
        path = self.logs / f"{self.name}.{self.starts}.log"
        self.log_files.append(path)
        with path.open("wb") as log:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.stopped = self.expected_exit = self._ready = False

    @property
    def ready(self) -> bool:
        """Running, and its log says it has started (a worker killed while it still
        imports would test nothing but Python's start-up)."""
        if not self._ready and self.running and self.log_files:
            self._ready = self.ready_line in self.log_files[-1].read_text(errors="replace")
        return self._ready and self.running

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (a stopped process too) and reap it."""
        self.expected_exit = True
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)
        self.stopped = False

    def tail(self, lines: int = 12) -> str:
        if not self.log_files:
            return ""
        text = self.log_files[-1].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class PrivateRedis:
    """A ``redis-server`` of the campaign on a free loopback port, AOF on with an fsync
    per write: killed and restarted on its directory it comes back with every write it
    acknowledged; with its files wiped first it comes back empty."""

    def __init__(self, directory: Path, logs: Path) -> None:
        binary = redis_binary()
        assert binary, "redis-server not found"
        self.directory = directory
        self.port = free_port()
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(directory)]
        self.proc = Proc("redis", argv, dict(os.environ), logs)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc.start()
        deadline = time.monotonic() + START_SECONDS
        while not self._answers():
            if not self.proc.running or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self.proc.tail()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def wipe(self) -> None:
        """Delete the data files (the server must be down): the next start is empty."""
        for path in self.directory.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


class Database:
    """A fresh PostgreSQL database ``ade_chaos_<random>`` on the server of ``admin_url``."""

    def __init__(self, admin_url: str) -> None:
        self.admin = make_url(admin_url).set(drivername="postgresql")
        self.name = f"ade_chaos_{uuid.uuid4().hex[:10]}"
        self.url = self.admin.set(database=self.name).render_as_string(hide_password=False)
        self.pool: asyncpg.Pool | None = None

    async def _as_admin(self, statement: str) -> None:
        admin = await asyncpg.connect(self.admin.render_as_string(hide_password=False), timeout=10)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    async def create(self) -> None:
        await self._as_admin(f'CREATE DATABASE "{self.name}"')

    async def connect(self) -> asyncpg.Pool:
        self.pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=3, server_settings={"application_name": APP_NAME}
        )
        return self.pool

    async def terminate_connections(self) -> int:
        """``pg_terminate_backend`` of every connection to this database but ours."""
        assert self.pool is not None
        ended = await self.pool.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name <> $2 AND pid <> pg_backend_pid()",
            self.name,
            APP_NAME,
        )
        return sum(1 for row in ended if row[0])

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def drop(self) -> None:
        await self._as_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Cluster:
    """Redis, the API servers and the workers of one campaign, on one database."""

    def __init__(self, work: Path, database_url: str, env: dict[str, str], workers: int) -> None:
        self.logs = work / "logs"
        self.logs.mkdir(parents=True)
        self.redis = PrivateRedis(work / "redis", self.logs)
        self.env = env | {"ADE_REDIS_URL": self.redis.url, "ADE_DATABASE_URL": database_url}
        ade = [sys.executable, "-m", "community_ade"]
        self.servers = [
            Proc(
                f"serve-{n}",
                [*ade, "serve", "--no-worker", "--port", str(port)],
                self.env,
                self.logs,
            )
            for n, port in enumerate([free_port(), free_port()])
        ]
        self.workers = [
            Proc(
                f"worker-{n}",
                [*ade, "worker", *WORKER_ARGS],
                self.env,
                self.logs,
                ready_line=WORKER_READY,
            )
            for n in range(workers)
        ]
        self.clis: list[Path] = []

    @property
    def procs(self) -> list[Proc]:
        return [self.redis.proc, *self.servers, *self.workers]

    @staticmethod
    def url_of(server: Proc) -> str:
        return f"http://127.0.0.1:{server.argv[-1]}"

    async def healthy(self, server: Proc, limit: float = START_SECONDS) -> bool:
        """Wait until ``server`` answers /healthz (False if it exits or takes too long)."""
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline and server.running:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url_of(server)}/healthz")).status_code == 200:
                        return True
                await asyncio.sleep(0.1)
        return False

    async def start(self) -> None:
        for proc in [*self.servers, *self.workers]:
            proc.start()
        for server in self.servers:
            if not await self.healthy(server):
                raise RuntimeError(f"{server.name} did not start:\n{server.tail(30)}")

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``ade *args`` against the campaign's services; its output is kept as a log."""
        done = subprocess.run(
            [sys.executable, "-m", "community_ade", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        path = self.logs / f"cli-{len(self.clis)}-{args[0]}.log"
        path.write_text(done.stdout + done.stderr)
        self.clis.append(path)
        return done

    def log_files(self) -> list[Path]:
        return [path for proc in self.procs for path in proc.log_files] + self.clis

    def kill_all(self) -> None:
        for proc in self.procs:
            proc.signal(signal.SIGCONT)
            proc.kill()
