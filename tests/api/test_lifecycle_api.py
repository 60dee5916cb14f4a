"""The whole lifecycle over HTTP, and the problem documents of its failures."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
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
    assert await api.logged_surfaces(task_id) == ["api"]
    view = (await c.get(f"/api/v1/approvals/{task_id}", headers=api.as_("vic"))).json()
    assert [r["surface"] for r in view["reviews"]] == ["api"]
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
    assert body["eligible_reviewers"]["by_group"]["db-owners"] == [api.ids["carol"]]


async def submitted(api: Api, who: str = "alice") -> tuple[str, str]:
    c = api.client
    task_id = (await c.post("/api/v1/tasks", json=task_body(api), headers=api.as_(who))).json()[
        "id"
    ]
    body = (await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_(who))).json()
    return task_id, body["preview_digest"]


async def test_batch_decisions_report_each_item_and_half_apply_none(api: Api) -> None:
    c = api.client
    first, first_digest = await submitted(api)
    second, _ = await submitted(api)
    own, own_digest = await submitted(api, "carol")  # carol reviews but submitted this one
    missing = "00000000-0000-0000-0000-000000000000"
    items = [
        {"task_id": first, "action": "approve", "digest": first_digest},
        {"task_id": second, "action": "approve", "digest": "0" * 64},
        {"task_id": own, "action": "approve", "digest": own_digest},
        {"task_id": missing, "action": "approve", "digest": "0" * 64},
        {"task_id": first, "action": "reject", "digest": first_digest},
    ]
    response = await c.post(
        "/api/v1/approvals/batch", json={"items": items}, headers=api.as_("carol")
    )
    assert response.status_code == 200, response.text
    results = [(r["result"], r["state"]) for r in response.json()["results"]]
    assert results == [
        ("ok", "APPROVED"),
        ("stale_preview", None),
        ("self_review", None),
        ("not_found", None),
        ("already_decided", None),
    ]
    assert await api.logged_surfaces(first) == ["api"]
    view = (await c.get(f"/api/v1/approvals/{second}", headers=api.as_("vic"))).json()
    assert view["reviews"] == []  # the refused item left nothing behind
    assert view["task"]["state"] == "SUBMITTED"


async def test_idempotency_key_replays_the_first_answer(api: Api) -> None:
    c = api.client
    headers = {**api.as_("alice"), "Idempotency-Key": "create-1"}
    one = await c.post("/api/v1/tasks", json=task_body(api), headers=headers)
    two = await c.post("/api/v1/tasks", json=task_body(api), headers=headers)
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["id"] == two.json()["id"]
    listed = (await c.get("/api/v1/tasks", headers=api.as_("alice"))).json()
    assert listed["total"] == 1
    other = await c.post("/api/v1/tasks", json=task_body(api, "x = 1\n"), headers=headers)
    problem(other, 409, "conflict")

    task_id, digest = await submitted(api)
    decision = {**api.as_("bob"), "Idempotency-Key": "approve-1"}
    first = await c.post(
        f"/api/v1/approvals/{task_id}/approve", json={"digest": digest}, headers=decision
    )
    again = await c.post(
        f"/api/v1/approvals/{task_id}/approve", json={"digest": digest}, headers=decision
    )
    assert first.status_code == again.status_code == 200
    assert first.json()["review"]["id"] == again.json()["review"]["id"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_repeat_while_the_first_still_runs_is_told_to_retry(api: Api) -> None:
    """The first request holds its key's row, not yet committed; the repeat waits on that
    row, then answers 409 ``in_progress`` (a client retries it) and leaves nothing."""
    from sqlalchemy import text

    from community_ade.storage.models import IdempotencyKey

    headers = {**api.as_("alice"), "Idempotency-Key": "slow-1"}
    async with api.runtime.sessions() as first, first.begin():
        first.add(
            IdempotencyKey(
                key="slow-1",
                actor=api.ids["alice"],
                route="POST /tasks",  # the route's own template, as idempotent() keys it
                request_hash="the first request",
                status_code=201,
                response={},
            )
        )
        await first.flush()
        repeat = asyncio.create_task(
            api.client.post("/api/v1/tasks", json=task_body(api), headers=headers)
        )
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        async with api.runtime.sessions() as probe:
            for _ in range(500):
                if await probe.scalar(waiting) or repeat.done():
                    break
                await asyncio.sleep(0.02)
                await probe.rollback()  # a fresh snapshot of pg_stat_activity each turn
    body = problem(await repeat, 409, "conflict")
    assert body["in_progress"] is True
    listed = (await api.client.get("/api/v1/tasks", headers=api.as_("alice"))).json()
    assert listed["total"] == 0


async def test_an_idempotency_key_past_its_time_to_live_is_forgotten(api: Api) -> None:
    from datetime import timedelta

    from sqlalchemy import func, select, update

    from community_ade.api.idempotency import forget_expired
    from community_ade.storage.models import IdempotencyKey, utcnow

    c = api.client
    headers = {**api.as_("alice"), "Idempotency-Key": "old-key"}
    first = await c.post("/api/v1/tasks", json=task_body(api), headers=headers)
    fresh = {**api.as_("alice"), "Idempotency-Key": "fresh-key"}
    assert (await c.post("/api/v1/tasks", json=task_body(api), headers=fresh)).status_code == 201
    ttl = timedelta(hours=api.runtime.settings.idempotency_key_ttl_hours)
    async with api.runtime.sessions.begin() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "old-key")
            .values(created_at=utcnow() - ttl - timedelta(minutes=1))
        )
    # Past its time to live the key is new again: a different body is run, not refused.
    other = await c.post("/api/v1/tasks", json=task_body(api, "x = 1\n"), headers=headers)
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    again = await c.post("/api/v1/tasks", json=task_body(api, "x = 1\n"), headers=headers)
    assert again.json()["id"] == other.json()["id"]

    async with api.runtime.sessions.begin() as session:
        await session.execute(
            update(IdempotencyKey).values(created_at=utcnow() - ttl - timedelta(minutes=1))
        )
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "fresh-key")
            .values(created_at=utcnow() - ttl + timedelta(minutes=1))
        )
    assert await forget_expired(api.runtime.sessions, api.runtime.settings, batch=1) == 1
    async with api.runtime.sessions() as session:
        kept = (await session.scalars(select(IdempotencyKey.key))).all()
        assert kept == ["fresh-key"]
        assert await session.scalar(select(func.count()).select_from(IdempotencyKey)) == 1


async def test_the_sweep_expires_overdue_reviews(api: Api) -> None:
    from datetime import timedelta

    from community_ade.api.app import sweep_once
    from community_ade.storage.models import Task, utcnow

    task_id, _ = await submitted(api)
    async with api.runtime.sessions.begin() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        task.review_deadline = utcnow() - timedelta(seconds=1)
    assert [str(t) for t, _ in (await sweep_once(api.runtime)).decided] == [task_id]
    assert (await sweep_once(api.runtime)).decided == []
    view = (await api.client.get(f"/api/v1/tasks/{task_id}", headers=api.as_("vic"))).json()
    assert view["state"] == "EXPIRED"
    events = await api.client.get(
        f"/api/v1/audit?subject=task:{task_id}&type=approval:expired", headers=api.as_("vic")
    )
    assert len(events.json()["items"]) == 1


async def test_the_queue_shows_each_reviewer_what_they_may_decide(api: Api) -> None:
    c = api.client
    policy = {
        "rules": [{"name": "owners", "task_types": ["files.*"], "groups": [{"group": "db-owners"}]}]
    }
    assert (
        await c.put("/api/v1/policies", json=policy, headers=api.as_("admin"))
    ).status_code == 200
    created = await c.post("/api/v1/tasks", json=task_body(api), headers=api.as_("alice"))
    task_id = created.json()["id"]
    submit = (await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))).json()
    digest = submit["preview_digest"]
    assert submit["eligible_reviewers"]["by_group"] == {"db-owners": [api.ids["carol"]]}

    async def queue(who: str) -> list[str]:
        page = (await c.get("/api/v1/approvals?awaiting=me", headers=api.as_(who))).json()
        return [t["id"] for t in page["items"]]

    # Only the group slot exists: carol (db-owners) may decide, bob (reviewer) may not.
    assert await queue("carol") == [task_id]
    assert await queue("bob") == []
    assert await queue("alice") == []  # the submitter never
    all_open = (await c.get("/api/v1/approvals", headers=api.as_("vic"))).json()
    assert [t["id"] for t in all_open["items"]] == [task_id]
    # Carol hands her review to bob: now it is in his queue, and his approval counts
    # for her group slot.
    handed = await c.post(
        f"/api/v1/approvals/{task_id}/delegate",
        json={"digest": digest, "delegate_to": api.ids["bob"]},
        headers=api.as_("carol"),
    )
    assert handed.status_code == 200, handed.text
    assert await queue("bob") == [task_id]
    approved = await c.post(
        f"/api/v1/approvals/{task_id}/approve", json={"digest": digest}, headers=api.as_("bob")
    )
    assert approved.json()["task"]["state"] == "APPROVED"
    assert approved.json()["delegated_for"] == [api.ids["carol"]]
    assert await queue("carol") == []
    assert await queue("bob") == []


async def test_the_queue_total_stops_at_the_cap(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from community_ade.api.routes import approvals as approval_routes
    from community_ade.approvals import reviews

    monkeypatch.setattr(reviews, "COUNT_CAP", 2)
    monkeypatch.setattr(approval_routes, "COUNT_CAP", 2)
    for _ in range(3):
        await submitted(api)
    page = (
        await api.client.get("/api/v1/approvals?awaiting=me&limit=1", headers=api.as_("bob"))
    ).json()
    assert (page["total"], page["total_is_capped"], len(page["items"])) == (2, True, 1)
    monkeypatch.setattr(reviews, "COUNT_CAP", 3)
    monkeypatch.setattr(approval_routes, "COUNT_CAP", 3)
    page = (await api.client.get("/api/v1/approvals?awaiting=me", headers=api.as_("bob"))).json()
    assert (page["total"], page["total_is_capped"], len(page["items"])) == (3, False, 3)


async def test_out_of_range_and_nul_input_is_refused_not_a_server_error(api: Api) -> None:
    c = api.client
    admin = api.as_("admin")
    nul_title = {**task_body(api), "title": "a\u0000b"}
    problem(await c.post("/api/v1/tasks", json=nul_title, headers=admin), 422, "validation_failed")
    nul_payload = {**task_body(api), "payload": {"root": "\u0000"}}
    problem(
        await c.post("/api/v1/tasks", json=nul_payload, headers=admin), 422, "validation_failed"
    )
    problem(await c.get("/api/v1/tasks?type=%00", headers=admin), 422, "validation_failed")
    problem(
        await c.get("/api/v1/tasks?page=9223372036854775808", headers=admin),
        422,
        "validation_failed",
    )
    problem(
        await c.get("/api/v1/audit?before_seq=9223372036854775808", headers=admin),
        422,
        "validation_failed",
    )
    huge_ttl = {"default_review_ttl_seconds": 86_399_913_600_000}
    problem(await c.put("/api/v1/policies", json=huge_ttl, headers=admin), 422, "validation_failed")
    far = {
        "delegate": api.ids["bob"],
        "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "9999-12-31T23:59:59-01:00",
    }
    problem(
        await c.post("/api/v1/delegations", json=far, headers=api.as_("carol")),
        422,
        "validation_failed",
    )
    # Text that merely mentions the escape is fine.
    literal = task_body(api, 'note = "\\\\u0000 is not a NUL"\n')
    assert (await c.post("/api/v1/tasks", json=literal, headers=admin)).status_code == 201


@pytest.mark.parametrize("resource_id", ["repo: x", "a{b}", "tab\there", "nbsp\u00a0x"])
async def test_a_resource_the_lock_manager_refuses_is_refused_at_create(
    api: Api, resource_id: str
) -> None:
    body = task_body(api)
    body["resources"] = [
        {"type": "configuration", "id": "fine", "actions": ["read"]},
        {"type": "configuration", "id": resource_id, "actions": ["write"]},
    ]
    c = api.client
    refused = problem(await c.post("/api/v1/tasks", json=body, headers=api.as_("alice")), 422,
                      "validation_failed")  # fmt: skip
    assert [e["path"] for e in refused["errors"]] == ["resources[1].id"]
    assert "whitespace or braces" in refused["detail"]
    created = await c.post("/api/v1/tasks", json=task_body(api), headers=api.as_("alice"))
    edited = await c.patch(
        f"/api/v1/tasks/{created.json()['id']}",
        json={"resources": body["resources"]},
        headers=api.as_("alice"),
    )
    assert problem(edited, 422, "validation_failed")["errors"][0]["path"] == "resources[1].id"


async def test_a_payload_its_executor_refuses_is_refused_at_create_and_edit(api: Api) -> None:
    body = task_body(api)
    body["payload"]["changes"][0]["path"] = "../escape"
    c = api.client
    refused = problem(await c.post("/api/v1/tasks", json=body, headers=api.as_("alice")), 422,
                      "validation_failed")  # fmt: skip
    assert [e["path"] for e in refused["errors"]] == ["changes[0].path"]
    assert refused["task_type"] == "files.write"
    created = await c.post("/api/v1/tasks", json=task_body(api), headers=api.as_("alice"))
    task_id = created.json()["id"]
    edited = await c.patch(
        f"/api/v1/tasks/{task_id}", json={"payload": body["payload"]}, headers=api.as_("alice")
    )
    assert problem(edited, 422, "validation_failed")["errors"][0]["path"] == "changes[0].path"
    kept = await c.get(f"/api/v1/tasks/{task_id}", headers=api.as_("alice"))
    assert kept.json()["payload"] == task_body(api)["payload"]


async def test_a_delegation_to_someone_who_can_never_review_is_refused(api: Api) -> None:
    c = api.client
    agent = await c.post(
        "/api/v1/agents", json={"name": "helper-bot", "model": "gpt-4o"}, headers=api.as_("bob")
    )
    assert agent.status_code == 201, agent.text
    never = {
        "vic": "is a viewer and cannot review",
        "alice": "is a submitter and cannot review",
    }
    window = {"valid_from": "2020-01-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z"}
    for who, said in never.items():
        body = {"delegate": api.ids[who], **window}
        refused = problem(
            await c.post("/api/v1/delegations", json=body, headers=api.as_("carol")),
            422,
            "validation_failed",
        )
        assert said in refused["detail"]
        assert refused["field"] == "delegate"
    to_agent = {"delegate": agent.json()["id"], **window}
    refused = problem(
        await c.post("/api/v1/delegations", json=to_agent, headers=api.as_("carol")),
        422,
        "validation_failed",
    )
    assert "agents never review" in refused["detail"]
    ok = await c.post(
        "/api/v1/delegations", json={"delegate": api.ids["bob"], **window}, headers=api.as_("carol")
    )
    assert ok.status_code == 201, ok.text

    # Handing one task's review on: the same, and never to the task's own submitter.
    created = await c.post("/api/v1/tasks", json=task_body(api), headers=api.as_("admin"))
    task_id = created.json()["id"]
    submitted = await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("admin"))
    digest = submitted.json()["preview_digest"]
    url = f"/api/v1/approvals/{task_id}/delegate"
    for target, said in [
        (api.ids["admin"], "submitted this task"),
        (api.ids["vic"], "is a viewer"),
        (api.ids["alice"], "is a submitter"),
        (agent.json()["id"], "agents never review"),
    ]:
        body = {"digest": digest, "delegate_to": target}
        refused = problem(await c.post(url, json=body, headers=api.as_("bob")), 422,
                          "validation_failed")  # fmt: skip
        assert said in refused["detail"]
        assert refused["field"] == "delegate_to"
    handed = await c.post(
        url, json={"digest": digest, "delegate_to": api.ids["carol"]}, headers=api.as_("bob")
    )
    assert handed.status_code == 200, handed.text
