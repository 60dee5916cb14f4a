"""`ade serve` as a real process: its in-process worker applies an auto-approved task end
to end over HTTP, `--no-worker` leaves it APPROVED for a dedicated worker, and SIGTERM
shuts the server (and its worker) down cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from conftest import Backend, delete_domain_keys

from community_ade.auth import service as auth
from community_ade.infra.redis_client import open_redis
from community_ade.storage import db

pytestmark = [
    pytest.mark.parametrize("backend", ["server"], indirect=True),
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]
POLICY = {"rules": [{"name": "auto", "task_types": ["*"], "auto_approve_below": 100}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def tokens(database_url: str, backend: Backend, domain: str) -> AsyncIterator[dict[str, str]]:
    engine = db.create_engine(database_url)
    await db.upgrade(engine)
    made = {}
    async with db.sessionmaker(engine).begin() as session:
        for name, role in (("admin", "admin"), ("alice", "submitter")):
            user = await auth.create_user(session, name, role)
            made[name], _ = await auth.create_token(session, name="e2e", user_id=user.id)
    await engine.dispose()
    yield made
    client = await open_redis(backend.url)
    await delete_domain_keys(client, domain)
    await client.aclose()


def serve(
    database_url: str,
    backend: Backend,
    domain: str,
    tmp_path: Path,
    *flags: str,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``ade serve`` on a free port (``env``: more settings); its process and URL."""
    port = free_port()
    env = (
        os.environ
        | (env or {})
        | {
            "ADE_DATA_DIR": str(tmp_path),
            "ADE_DATABASE_URL": database_url,
            "ADE_REDIS_URL": backend.url,
            "ADE_QUEUE_NAME": domain,
            "ADE_LOCK_DOMAIN": domain,
            "ADE_WORKSPACE_ROOTS": json.dumps([str(tmp_path / "workspaces")]),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "community_ade", "serve", "--port", str(port), *flags],
        env=env,
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError((tmp_path / "serve.log").read_text())


def stop(proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """SIGTERM: uvicorn shuts the app down (lifespan exit), then re-raises the signal."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(30)
    log = (tmp_path / "serve.log").read_text()
    assert code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log


def submit_one(url: str, tokens: dict[str, str], root: Path) -> str:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    alice = {"Authorization": f"Bearer {tokens['alice']}"}
    assert httpx.put(f"{url}/api/v1/policies", json=POLICY, headers=admin).status_code == 200
    body = {
        "type": "files.write",
        "title": "write the greeting",
        "payload": {
            "root": str(root),
            "changes": [{"path": "hello.txt", "action": "write", "content": "hello\n"}],
        },
    }
    created = httpx.post(f"{url}/api/v1/tasks", json=body, headers=alice)
    assert created.status_code == 201, created.text
    task_id = str(created.json()["id"])
    submitted = httpx.post(f"{url}/api/v1/tasks/{task_id}/submit", headers=alice)
    assert submitted.json()["task"]["state"] == "APPROVED", submitted.text
    return task_id


def state_after(url: str, token: str, task_id: str, seconds: float, want: str) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        task: dict[str, object] = httpx.get(
            f"{url}/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        if task["state"] == want or time.monotonic() > deadline:
            return task
        time.sleep(0.1)


def test_serve_applies_an_approved_task_with_its_worker(
    database_url: str, backend: Backend, domain: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    root = tmp_path / "workspaces" / "site"
    root.mkdir(parents=True)
    proc, url = serve(database_url, backend, domain, tmp_path)
    try:
        task_id = submit_one(url, tokens, root)
        task = state_after(url, tokens["alice"], task_id, 20, "COMPLETED")
        assert task["state"] == "COMPLETED", task
        assert (root / "hello.txt").read_text() == "hello\n"
        assert isinstance(task["fence"], int)
    finally:
        stop(proc, tmp_path)
    log = (tmp_path / "serve.log").read_text()
    assert "draining" in log  # the in-process worker drained before the Runtime closed
    assert "stopped: WorkerStats(completed=1" in log


def test_serve_without_worker_leaves_the_task_to_a_dedicated_worker(
    database_url: str, backend: Backend, domain: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    root = tmp_path / "workspaces" / "site"
    root.mkdir(parents=True)
    proc, url = serve(database_url, backend, domain, tmp_path, "--no-worker")
    try:
        task_id = submit_one(url, tokens, root)
        assert state_after(url, tokens["alice"], task_id, 2, "COMPLETED")["state"] == "APPROVED"
        worker = subprocess.run(
            [sys.executable, "-m", "community_ade", "worker", "--burst"],
            env=os.environ
            | {
                "ADE_DATA_DIR": str(tmp_path),
                "ADE_DATABASE_URL": database_url,
                "ADE_REDIS_URL": backend.url,
                "ADE_QUEUE_NAME": domain,
                "ADE_LOCK_DOMAIN": domain,
                "ADE_WORKSPACE_ROOTS": json.dumps([str(tmp_path / "workspaces")]),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert worker.returncode == 0, worker.stdout + worker.stderr
        assert "1 completed" in worker.stdout
        assert state_after(url, tokens["alice"], task_id, 5, "COMPLETED")["state"] == "COMPLETED"
    finally:
        stop(proc, tmp_path)
    assert "WorkerStats" not in (tmp_path / "serve.log").read_text()
