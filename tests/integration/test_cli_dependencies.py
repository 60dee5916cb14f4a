"""Commands and services against missing dependencies: ``ade serve`` and ``ade worker``
wait for a Redis that is not up yet (saying so) instead of exiting; user and token
commands need only the database and work while Redis is down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_ade, unavailable
from lockutil import PrivateRedis, free_port


@pytest.fixture
def later_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private Redis on a port of its own, not started yet."""
    if PrivateRedis.binary() is None:
        unavailable("no redis-server binary to run a private server")
    server = PrivateRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


def env_for(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = os.environ | {
        "ADE_DATA_DIR": str(tmp_path),
        "ADE_REDIS_URL": redis_url,
        "ADE_LOG_LEVEL": "INFO",
        "ADE_STARTUP_WAIT_SECONDS": "60",
    }
    env.pop("ADE_DATABASE_URL", None)  # the data directory's SQLite file
    return env


def test_users_and_tokens_are_created_while_redis_is_down(tmp_path: Path) -> None:
    env = env_for(tmp_path, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    user = run_ade(env, "users", "create", "ann", "--role", "reviewer")
    assert user.returncode == 0, user.stderr
    token = run_ade(env, "tokens", "create", "--user", "ann", "--name", "laptop")
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip()
    listed = run_ade(env, "users", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ann" in listed.stdout


def test_a_worker_waits_for_redis_at_start_up(tmp_path: Path, later_redis: PrivateRedis) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "community_ade", "worker", "--burst"],
            env=env_for(tmp_path, later_redis.url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(log, "waiting for Redis", 60)
        assert worker.poll() is None
        later_redis.start()
        assert worker.wait(60) == 0, log.read_text()
        assert "Redis at" in log.read_text()
    finally:
        worker.kill()
        worker.wait(10)


def test_a_worker_outlives_redis_going_away_right_after_it_started(
    tmp_path: Path, later_redis: PrivateRedis
) -> None:
    """Redis is killed as soon as the worker says it started (its first reconcile and
    claims run into it): the worker stays up, recovers when Redis is back, and drains on
    SIGTERM with exit 0, without a traceback."""
    later_redis.start()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "community_ade", "worker"],
            env=env_for(tmp_path, later_redis.url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(log, "started (concurrency", 60)
        later_redis.stop()
        wait_for_text(log, "failing", 30)
        time.sleep(2)
        assert worker.poll() is None, log.read_text()
        later_redis.start()
        wait_for_text(log, "recovered", 30)
        worker.terminate()
        assert worker.wait(60) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        worker.kill()
        worker.wait(10)


def test_the_server_waits_for_redis_at_start_up(tmp_path: Path, later_redis: PrivateRedis) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "community_ade", "serve", "--port", str(port)],
            env=env_for(tmp_path, later_redis.url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(log, "waiting for Redis", 60)
        assert server.poll() is None, log.read_text()
        later_redis.start()
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(30)


def wait_for_text(path: Path, text: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not (path.exists() and text in path.read_text(errors="replace")):
        assert time.monotonic() < deadline, path.read_text() if path.exists() else "no output"
        time.sleep(0.1)
