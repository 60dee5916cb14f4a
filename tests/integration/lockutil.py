"""Helpers of the lock integration tests (child processes, polling, a private Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis
from conftest import unavailable
from redis.backoff import NoBackoff
from redis.retry import Retry

from community_ade.locks import LockConfig, LockManager

T = TypeVar("T")

WORKER = Path(__file__).with_name("lock_worker.py")
SYSTEM_REDIS_SERVER = "/usr/bin/redis-server"


def data_key(domain: str, name: str) -> str:
    """A test key under the domain's hash tag (same slot; removed by the cleanup)."""
    return f"ade:test:{{{domain}}}:{name}"


def config_json(config: LockConfig) -> str:
    return json.dumps(dataclasses.asdict(config))


async def eventually(
    probe: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool] = bool,
    *,
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``predicate`` holds for its value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


async def queue_of(locks: LockManager, resource: str) -> list[str]:
    """Request ids waiting on a resource, in queue order."""
    return [w.request for w in (await locks.inspect_resource(resource)).queue]


async def holders_of(locks: LockManager, resource: str) -> list[str]:
    return [h.request for h in (await locks.inspect_resource(resource)).holders]


async def wait_queued(locks: LockManager, resource: str, n: int, timeout: float = 5.0) -> list[str]:
    """Wait until exactly ``n`` requests wait on ``resource``."""
    return await eventually(
        lambda: queue_of(locks, resource),
        lambda q: len(q) == n,
        timeout=timeout,
        what=f"{n} waiters on {resource}",
    )


async def event_types(locks: LockManager, count: int = 1000) -> list[str]:
    return [e["type"] for e in await locks.events(count=count)]


class Child:
    """A ``lock_worker.py`` child process talking in lines over stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: list[str]) -> None:
        self.proc = proc
        self.argv = argv
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str) -> Child:
        argv = [sys.executable, str(WORKER), *args]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return cls(proc, argv)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, prefix: str, timeout: float = 20.0) -> str:
        """The next output line starting with ``prefix`` (other lines are kept in ``lines``)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {prefix!r} line from the child within {timeout}s")
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            except TimeoutError:
                raise AssertionError(
                    f"no {prefix!r} line from the child within {timeout}s; got {self.lines}"
                ) from None
            if not raw:
                code = await self.proc.wait()
                raise AssertionError(
                    f"child exited ({code}) before printing {prefix!r}; got {self.lines}"
                )
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def finish(self, timeout: float = 10.0) -> int:
        """Wait for the exit; kill it if it does not come."""
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            return await self.proc.wait()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.kill()

    async def close(self) -> None:
        """Make sure the process is gone (used in ``finally``)."""
        self.kill()
        await self.proc.wait()
        transport: Any = getattr(self.proc, "_transport", None)
        if transport is not None:
            transport.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A throw-away ``redis-server`` of the test on a free loopback port (no persistence)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def binary() -> str | None:
        if os.access(SYSTEM_REDIS_SERVER, os.X_OK):
            return SYSTEM_REDIS_SERVER
        return shutil.which("redis-server")

    def _client(self, **kwargs: Any) -> redis.Redis:
        # No retries: the connection drop after SHUTDOWN is expected, not to be retried.
        return redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0), **kwargs)

    def start(self, timeout: float = 10.0) -> None:
        binary = self.binary()
        assert binary, "redis-server not found"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            client = self._client(socket_connect_timeout=0.5)
            try:
                if client.ping():
                    return
            except (redis.RedisError, OSError):
                pass
            finally:
                client.close()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = (self.directory / "redis.log").read_text(errors="replace")
                raise AssertionError(f"private redis-server did not start:\n{text[-2000:]}")
            time.sleep(0.05)

    def shutdown_nosave(self) -> None:
        """``SHUTDOWN NOSAVE``: everything in memory (the fence counter too) is lost."""
        client = self._client(socket_timeout=5)
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)
        client.close()
        assert self.proc is not None
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def private_redis_server(directory: Path) -> Iterator[PrivateRedis]:
    """A started ``PrivateRedis`` for the block (unavailable without a redis-server)."""
    if PrivateRedis.binary() is None:
        unavailable("no redis-server binary to run a private server")
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
