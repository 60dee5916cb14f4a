"""Lock routes over HTTP: the overview, recent events, force release (admins, audited),
and the Prometheus metrics."""

from __future__ import annotations

from typing import Any

from conftest import Api


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == code
    return body


async def test_overview_filters_and_events(api: Api) -> None:
    locks = api.runtime.locks
    grant = await locks.acquire("task-1", "agent-a", {"repo:x": "exclusive"})
    try:
        c = api.client
        assert (await c.get("/api/v1/locks")).status_code == 401
        overview = (await c.get("/api/v1/locks", headers=api.as_("vic"))).json()
        assert overview["domain"] == "default"
        assert "default" in overview["domains"]
        (resource,) = overview["resources"]
        assert resource["resource"] == "repo:x"
        assert [h["task"] for h in resource["holders"]] == ["task-1"]
        assert [s["agent"] for s in overview["sessions"]] == ["agent-a"]

        one = await c.get("/api/v1/locks?resource=repo:y&agent=agent-a", headers=api.as_("vic"))
        body = one.json()
        assert [r["resource"] for r in body["resources"]] == ["repo:y"]
        assert body["resources"][0]["holders"] == []
        assert body["sessions"][0]["in_use"] == 1

        events = (await c.get("/api/v1/locks/events?limit=5", headers=api.as_("vic"))).json()
        assert events[0]["type"] == "lock:acquired"
        assert events[0]["task"] == "task-1"
        problem(
            await c.get("/api/v1/locks?domain=bad{tag}", headers=api.as_("vic")),
            422,
            "validation_failed",
        )
        problem(
            await c.get("/api/v1/locks?resource=a%20b", headers=api.as_("vic")),
            422,
            "validation_failed",
        )
    finally:
        await locks.release(grant)


async def test_force_release_is_for_admins_and_audited(api: Api) -> None:
    c = api.client
    grant = await api.runtime.locks.acquire("task-2", "agent-b", {"repo:z": "exclusive"})
    body = {"resource": "repo:z", "reason": "stuck holder"}
    problem(await c.post("/api/v1/locks/force-release", json=body), 401, "unauthenticated")
    denied = problem(
        await c.post("/api/v1/locks/force-release", json=body, headers=api.as_("bob")),
        403,
        "forbidden",
    )
    assert "lock_admin" in denied["detail"]
    problem(
        await c.post(
            "/api/v1/locks/force-release",
            json={"resource": "repo:z", "reason": ""},
            headers=api.as_("admin"),
        ),
        422,
        "validation_failed",
    )
    assert not grant.lost.is_set()

    done = await c.post("/api/v1/locks/force-release", json=body, headers=api.as_("admin"))
    assert done.status_code == 200, done.text
    assert done.json() == {"domain": "default", "resource": "repo:z", "ended": [grant.request_id]}
    await api.runtime.locks.release(grant)  # the holder finds out (idempotent)

    again = await c.post("/api/v1/locks/force-release", json=body, headers=api.as_("admin"))
    problem(again, 404, "not_found")
    audit = (await c.get("/api/v1/audit?type=lock:force_released", headers=api.as_("vic"))).json()
    (event,) = audit["items"]  # the refused and the empty attempts left no record
    assert event["actor"]["id"] == api.ids["admin"]
    assert event["data"] == {"resource": "repo:z", "reason": "stuck holder", "domain": "default"}


async def test_metrics(api: Api) -> None:
    created = await api.client.post(
        "/api/v1/tasks",
        headers=api.as_("alice"),
        json={
            "type": "files.write",
            "title": "counted",
            "payload": {
                "root": str(api.workspace),
                "changes": [{"path": "a.txt", "action": "write", "content": "a\n"}],
            },
            "resources": [],
        },
    )
    assert created.status_code == 201, created.text
    grant = await api.runtime.locks.acquire("task-3", "agent-c", {"repo:m": "shared"})
    try:
        response = await api.client.get("/metrics")
    finally:
        await api.runtime.locks.release(grant)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    assert 'ade_tasks{state="DRAFT"} 1.0' in lines
    assert 'ade_lock_holders{domain="default"} 1.0' in lines
    assert 'ade_lock_waiters{domain="default"} 0.0' in lines
    assert "ade_ws_clients 0.0" in lines
    assert any(line.startswith("ade_events_relay_lag ") for line in lines)
