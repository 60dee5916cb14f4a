"""The whole lifecycle over HTTP, and the problem documents of its failures."""

from __future__ import annotations

from typing import Any

from conftest import Api


def task_body(api: Api, content: str = "debug = true\n") -> dict[str, Any]:
    return {
        "type": "files.write",
        "title": "turn on debug",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": content}],
        },
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == code
    assert body["status"] == status
    assert body["detail"]
    return body


async def test_create_submit_review_approve_and_audit(api: Api) -> None:
    c = api.client
    created = await c.post("/api/v1/tasks", json=task_body(api), headers=api.as_("alice"))
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    submitted = await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert body["task"]["state"] == "SUBMITTED"
    assert body["requirements"]["approvals_needed"] >= 1
    digest = body["preview_digest"]
    preview = await c.get(f"/api/v1/tasks/{task_id}/preview", headers=api.as_("bob"))
    assert "+debug = true" in preview.json()["content"]

    queue = await c.get("/api/v1/approvals?awaiting=me", headers=api.as_("bob"))
    assert [t["id"] for t in queue.json()["items"]] == [task_id]
    assert (await c.get("/api/v1/approvals?awaiting=me", headers=api.as_("alice"))).json()[
        "items"
    ] == []

    approved = await c.post(
        f"/api/v1/approvals/{task_id}/approve",
        json={"digest": digest, "comment": "ok"},
        headers=api.as_("bob"),
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["task"]["state"] == "APPROVED"
    view = (await c.get(f"/api/v1/approvals/{task_id}", headers=api.as_("vic"))).json()
    assert view["accounting"]["satisfied"] is True
    assert [f["actor"] for f in view["accounting"]["fills"]] == [api.ids["bob"]]

    events = (await c.get(f"/api/v1/audit?subject=task:{task_id}", headers=api.as_("vic"))).json()
    types = [e["type"] for e in reversed(events["items"])]
    assert types[:3] == ["task:created", "task:submitted", "approval:requested"]
    assert "approval:approved" in types
    verify = (await c.get("/api/v1/audit/verify", headers=api.as_("vic"))).json()
    assert verify["ok"] is True


async def test_failures_are_problem_documents(api: Api) -> None:
    c = api.client
    problem(await c.get("/api/v1/tasks"), 401, "unauthenticated")
    problem(
        await c.get("/api/v1/tasks", headers={"Authorization": "Bearer ade_nope"}),
        401,
        "unauthenticated",
    )
    problem(
        await c.post("/api/v1/tasks", json=task_body(api), headers=api.as_("vic")), 403, "forbidden"
    )
    problem(
        await c.post("/api/v1/tasks", json={"type": "files.write"}, headers=api.as_("alice")),
        422,
        "validation_failed",
    )
    problem(
        await c.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000", headers=api.as_("vic")),
        404,
        "not_found",
    )
    task_id = (await c.post("/api/v1/tasks", json=task_body(api), headers=api.as_("alice"))).json()[
        "id"
    ]
    await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))
    problem(
        await c.post(
            f"/api/v1/approvals/{task_id}/approve",
            json={"digest": "0" * 64},
            headers=api.as_("bob"),
        ),
        409,
        "stale_preview",
    )
    digest = (await c.get(f"/api/v1/tasks/{task_id}", headers=api.as_("bob"))).json()[
        "preview_digest"
    ]
    problem(
        await c.post(
            f"/api/v1/approvals/{task_id}/approve",
            json={"digest": digest},
            headers=api.as_("alice"),
        ),
        403,
        "forbidden",
    )
    problem(
        await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice")),
        409,
        "invalid_transition",
    )


async def test_policy_routes_and_evaluate(api: Api) -> None:
    c = api.client
    assert (await c.get("/api/v1/policies", headers=api.as_("vic"))).json()["version"] == 0
    policy = {
        "rules": [
            {
                "name": "config needs db-owners",
                "task_types": ["files.*"],
                "resource_types": ["configuration"],
                "groups": [{"group": "db-owners", "count": 1}],
            }
        ]
    }
    problem(await c.put("/api/v1/policies", json=policy, headers=api.as_("bob")), 403, "forbidden")
    stored = await c.put("/api/v1/policies", json=policy, headers=api.as_("admin"))
    assert stored.json()["version"] == 1
    evaluation = await c.post(
        "/api/v1/policies/evaluate",
        json={"type": "files.write", "resources": task_body(api)["resources"], "lines_changed": 2},
        headers=api.as_("alice"),
    )
    body = evaluation.json()
    assert body["requirements"]["matched_rules"] == ["config needs db-owners"]
    assert body["eligible_by_group"]["db-owners"] == [api.ids["carol"]]
