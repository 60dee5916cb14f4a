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
