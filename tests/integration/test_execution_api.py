"""Over HTTP: the final approval queues the task after its commit, `apply: manual` waits
for POST /tasks/{id}/apply (submitter or admin; 409 unless APPROVED), and the task's
execution record is part of its output."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from conftest import Api
from execution_util import events_of

from community_ade.execution.worker import Worker
from community_ade.storage.models import Task


def task_body(api: Api, content: str) -> dict[str, Any]:
    return {
        "type": "files.write",
        "title": "turn on debug",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": content}],
        },
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }


async def run_worker(api: Api) -> Worker:
    worker = Worker(api.runtime, concurrency=2, burst=True)
    await asyncio.wait_for(worker.run(), 60)
    return worker


async def create_and_submit(api: Api, content: str) -> dict[str, Any]:
    c = api.client
    created = await c.post("/api/v1/tasks", json=task_body(api, content), headers=api.as_("alice"))
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    submitted = await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))
    assert submitted.status_code == 200, submitted.text
    body: dict[str, Any] = submitted.json()
    return body


async def test_the_final_approval_queues_the_task_and_a_worker_applies_it(api: Api) -> None:
    c = api.client
    submitted = await create_and_submit(api, "debug = true\n")
    task_id = submitted["task"]["id"]
    assert submitted["task"]["state"] == "SUBMITTED"
    approved = await c.post(
        f"/api/v1/approvals/{task_id}/approve",
        json={"digest": submitted["preview_digest"]},
        headers=api.as_("bob"),
    )
    assert approved.json()["task"]["state"] == "APPROVED", approved.text
    await api.runtime.queue.drain_background()
    assert sum((await api.runtime.queue.depth()).ready) == 1
    await run_worker(api)
    task = (await c.get(f"/api/v1/tasks/{task_id}", headers=api.as_("vic"))).json()
    assert task["state"] == "COMPLETED"
    assert task["fence"] > 0
    assert task["attempts"] == 1
    assert task["result"]["fence"] == str(task["fence"])
    assert task["finished_at"]
    assert task["apply_started_at"]
    assert task["duration_ms"] >= 0
    assert task["rollback_outcome"] is None
    assert task["last_error"] is None
    assert "snapshot" not in task
    assert (api.workspace / "app.conf").read_text() == "debug = true\n"


async def test_manual_apply_waits_for_the_submitters_request(api: Api) -> None:
    c = api.client
    policy = {
        "rules": [{"name": "auto", "task_types": ["*"], "auto_approve_below": 100}],
        "apply": {"files.write": "manual"},
    }
    put = await c.put("/api/v1/policies", json=policy, headers=api.as_("admin"))
    assert put.status_code == 200, put.text
    submitted = await create_and_submit(api, "debug = maybe\n")
    task_id = submitted["task"]["id"]
    assert submitted["task"]["state"] == "APPROVED"
    assert submitted["requirements"]["auto_apply"] is False
    await run_worker(api)
    assert (await c.get(f"/api/v1/tasks/{task_id}", headers=api.as_("alice"))).json()[
        "state"
    ] == "APPROVED"

    refused = await c.post(f"/api/v1/tasks/{task_id}/apply", headers=api.as_("bob"))
    assert refused.status_code == 403, refused.text
    asked = await c.post(f"/api/v1/tasks/{task_id}/apply", headers=api.as_("alice"))
    assert asked.status_code == 202, asked.text
    assert asked.json()["apply_requested_at"]
    again = await c.post(f"/api/v1/tasks/{task_id}/apply", headers=api.as_("admin"))
    assert again.status_code == 202
    assert again.json()["apply_requested_at"] == asked.json()["apply_requested_at"]
    await api.runtime.queue.drain_background()
    await run_worker(api)
    done = (await c.get(f"/api/v1/tasks/{task_id}", headers=api.as_("alice"))).json()
    assert done["state"] == "COMPLETED"
    assert (api.workspace / "app.conf").read_text() == "debug = maybe\n"
    late = await c.post(f"/api/v1/tasks/{task_id}/apply", headers=api.as_("alice"))
    assert late.status_code == 409
    assert late.json()["type"] == "invalid_transition"
    events = await events_of(api.runtime, uuid.UUID(task_id))
    assert events.count("task:apply_requested") == 1
    assert events[-2:] == ["task:applying", "task:completed"]


async def test_apply_of_an_unknown_or_draft_task_is_refused(api: Api) -> None:
    c = api.client
    created = await c.post("/api/v1/tasks", json=task_body(api, "x\n"), headers=api.as_("alice"))
    draft = await c.post(f"/api/v1/tasks/{created.json()['id']}/apply", headers=api.as_("alice"))
    assert draft.status_code == 409
    missing = await c.post(
        "/api/v1/tasks/00000000-0000-4000-8000-000000000000/apply", headers=api.as_("alice")
    )
    assert missing.status_code == 404
    viewer = await c.post(f"/api/v1/tasks/{created.json()['id']}/apply", headers=api.as_("vic"))
    assert viewer.status_code == 403


async def test_a_task_whose_apply_cannot_start_fails_with_the_reason_after_its_attempts(
    api: Api,
) -> None:
    """A stored task whose resources the lock manager refuses (written before create
    checked them) is not dead-lettered and re-queued for ever: each try counts as an
    attempt with its error shown, and after the last it is FAILED, on the dashboard too."""
    c = api.client
    submitted = await create_and_submit(api, "debug = true\n")
    task_id = submitted["task"]["id"]
    async with api.runtime.sessions.begin() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        task.resources = [{"type": "configuration", "id": "a{b}", "actions": ["write"]}]
    await c.post(
        f"/api/v1/approvals/{task_id}/approve",
        json={"digest": submitted["preview_digest"]},
        headers=api.as_("bob"),
    )
    await api.runtime.queue.drain_background()
    worker = Worker(api.runtime, concurrency=2, burst=True)
    fast = {"worker_backoff_base_seconds": 0.05, "worker_backoff_cap_seconds": 0.1}
    worker.settings = api.runtime.settings.model_copy(update=fast)
    await asyncio.wait_for(worker.run(), 60)
    task_out = (await c.get(f"/api/v1/tasks/{task_id}", headers=api.as_("vic"))).json()
    assert task_out["state"] == "FAILED"
    assert task_out["attempts"] == api.runtime.settings.worker_max_attempts == 3
    assert "cannot lock its resources" in task_out["last_error"]
    assert "whitespace or braces" in task_out["last_error"]
    assert task_out["rollback_outcome"] == "nothing_to_roll_back"
    assert worker.stats.failed == 1
    assert worker.stats.retried == 2
    events = await events_of(api.runtime, uuid.UUID(task_id))
    assert events[-4:] == [
        "task:apply_not_started",
        "task:apply_not_started",
        "task:applying",
        "task:failed",
    ]
    depth = await api.runtime.queue.depth()
    assert depth.empty
    assert depth.dead == 0
    page = await c.get(f"/tasks/{task_id}", headers={"Cookie": f"ade_session={api.tokens['vic']}"})
    assert page.status_code == 200
    assert "cannot lock its resources" in page.text
