"""Webhooks survive a crash of the server: `ade serve` (a real process, PostgreSQL) is
killed with SIGKILL while deliveries are being retried; once it is started again and the
receiver is back, every event arrives, once per ``webhook-id``."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import Backend
from webhook_receiver import Receiver

from e2e.test_pipeline_serve import serve, tokens

__all__ = ["tokens"]  # the fixture, shared with test_pipeline_serve

pytestmark = [
    pytest.mark.parametrize("backend", ["server"], indirect=True),
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]
TASKS = 3


def new_task(url: str, headers: dict[str, str], root: Path, n: int) -> str:
    body = {
        "type": "files.write",
        "title": f"task {n}",
        "payload": {"root": str(root), "changes": [{"path": "a.txt", "action": "write",
                                                     "content": f"{n}\n"}]},
    }  # fmt: skip
    created = httpx.post(f"{url}/api/v1/tasks", json=body, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def subscribe(url: str, headers: dict[str, str], hook: str) -> None:
    body = {"url": hook, "event_types": ["task:created"]}
    made = httpx.post(f"{url}/api/v1/webhooks", json=body, headers=headers)
    assert made.status_code == 201, made.text


@pytest.mark.timeout(600)
async def test_a_server_killed_mid_retry_loses_no_delivery(
    database_url: str, backend: Backend, domain: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    root = tmp_path / "workspaces"
    root.mkdir()
    with Receiver(status=503) as hooks:
        env = {
            "ADE_HTTP_ALLOWLIST": json.dumps([hooks.url]),
            "ADE_WEBHOOK_RETRY_SCHEDULE": json.dumps([0] + [1.0] * 30),
            "ADE_WEBHOOK_POLL_SECONDS": "0.2",
        }
        first, url = serve(database_url, backend, domain, tmp_path, "--no-worker", env=env)
        try:
            admin = {"Authorization": f"Bearer {tokens['admin']}"}
            alice = {"Authorization": f"Bearer {tokens['alice']}"}
            subscribe(url, admin, hooks.url)
            tasks = [new_task(url, alice, root, n) for n in range(TASKS)]
            # Every event was tried and refused at least twice: retries are under way.
            await hooks.wait_for(
                lambda got: (
                    len(got) >= 2 * TASKS and len({r.headers["webhook-id"] for r in got}) == TASKS
                ),
                timeout=120,
            )
        finally:
            first.send_signal(signal.SIGKILL)  # a crash: nothing is shut down cleanly
            first.wait(30)
        hooks.status = 200
        tried = len(hooks.got())
        await asyncio.sleep(1.0)
        assert len(hooks.got()) == tried  # nobody is sending while the server is down
        second, url = serve(database_url, backend, domain, tmp_path, "--no-worker", env=env)
        try:
            got = await hooks.wait_for(
                lambda got: len({r.headers["webhook-id"] for r in got if r.status == 200}) == TASKS,
                timeout=120,
            )
            await asyncio.sleep(2.0)  # time for a duplicate to show up, were there one
            accepted = [r for r in hooks.got() if r.status == 200]
            assert set(Counter(r.headers["webhook-id"] for r in accepted).values()) == {1}
            subjects = sorted(json.loads(r.body)["data"]["subject"] for r in accepted)
            assert subjects == sorted(f"task:{t}" for t in tasks)
            assert len(got) > TASKS  # the refused attempts happened before the crash
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
