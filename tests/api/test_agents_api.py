"""Agents over HTTP: validation, versions, permissions role by role, capacity reaching the
lock manager, health and leases. Real Redis and SQL (the ``api`` fixture: SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from conftest import Api

from community_ade.agents.watch import publish_changes
from community_ade.events.system import system_stream as events_stream
from community_ade.storage.models import Task, utcnow

AGENTS = "/api/v1/agents"


def agent_body(name: str = "reviewer-bot", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "model": "gpt-4o",
        "description": "reviews config changes",
        "tags": ["config", "ops"],
        "system_prompt": "You are careful.",
        "tools": ["files.read", "git.log"],
        "parameters": {"temperature": 0.5, "top_p": 0.9, "max_tokens": 2048},
        "capacity": 2,
    }
    body.update(overrides)
    return body


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == code, body
    return body


async def create(api: Api, who: str = "alice", **overrides: Any) -> dict[str, Any]:
    response = await api.client.post(AGENTS, json=agent_body(**overrides), headers=api.as_(who))
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def agent_token(api: Api, agent_id: str, who: str = "alice") -> dict[str, str]:
    response = await api.client.post(
        f"{AGENTS}/{agent_id}/tokens", json={"name": "worker"}, headers=api.as_(who)
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_create_reads_back_and_sets_the_lock_capacity(api: Api) -> None:
    agent = await create(api)
    assert agent["config_version"] == 1
    assert agent["owner_id"] == api.ids["alice"]
    assert agent["parameters"] == {
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 2048,
        "context_window": None,
    }
    state = await api.runtime.locks.inspect_agent(agent["id"])
    assert state.capacity == 2
    got = await api.client.get(f"{AGENTS}/{agent['id']}", headers=api.as_("vic"))
    assert got.status_code == 200
    assert got.json()["health"]["status"] == "offline"


async def test_every_problem_is_reported_with_its_field_and_range(api: Api) -> None:
    body = agent_body(
        "ab",
        model="gpt-4o",
        tools=["files.read", "teleport"],
        parameters={"temperature": 3, "top_p": 1.5, "max_tokens": 500_000},
        capacity=0,
    )
    response = await api.client.post(AGENTS, json=body, headers=api.as_("alice"))
    errors = {
        e["path"]: e["message"] for e in problem(response, 422, "validation_failed")["errors"]
    }
    assert errors == {
        "name": "must be 3 to 100 characters, got 2",
        "tools": "not in the catalogue: teleport",
        "parameters.temperature": "must be between 0 and 2, got 3.0",
        "parameters.top_p": "must be between 0 and 1, got 1.5",
        "parameters.max_tokens": "must be between 1 and 128000, got 500000",
        "capacity": "must be between 1 and 100, got 0",
    }
    unknown = await api.client.post(
        AGENTS, json=agent_body(model="gpt-9"), headers=api.as_("alice")
    )
    (error,) = problem(unknown, 422, "validation_failed")["errors"]
    assert error["path"] == "model"
    assert "gpt-4o" in error["message"]
    listed = await api.client.get(AGENTS, headers=api.as_("admin"))
    assert listed.json()["total"] == 0  # nothing half-written


async def test_names_are_unique(api: Api) -> None:
    await create(api)
    again = await api.client.post(AGENTS, json=agent_body(), headers=api.as_("bob"))
    (error,) = problem(again, 422, "validation_failed")["errors"]
    assert error["path"] == "name"
    assert "already exists" in error["message"]


async def test_a_deleted_agents_name_is_not_reused_and_the_refusal_says_so(api: Api) -> None:
    agent = await create(api)
    gone = await api.client.delete(f"{AGENTS}/{agent['id']}", headers=api.as_("alice"))
    assert gone.status_code == 204, gone.text
    again = await api.client.post(AGENTS, json=agent_body(), headers=api.as_("alice"))
    (error,) = problem(again, 422, "validation_failed")["errors"]
    assert error["path"] == "name"
    assert "was deleted" in error["message"]


async def test_versions_diff_and_revert(api: Api) -> None:
    c = api.client
    agent = await create(api)
    url = f"{AGENTS}/{agent['id']}"
    edited = await c.patch(
        url,
        json={"parameters": {"temperature": 1.2}, "tools": ["files.read"], "comment": "warmer"},
        headers=api.as_("alice"),
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["config_version"] == 2
    assert edited.json()["parameters"]["top_p"] == 0.9  # parameters merge key by key

    same = await c.patch(url, json={"parameters": {"temperature": 1.2}}, headers=api.as_("alice"))
    assert same.json()["config_version"] == 2  # nothing changed, nothing saved

    versions = (await c.get(f"{url}/versions", headers=api.as_("vic"))).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["comment"] == "warmer"
    assert versions[0]["author_id"] == api.ids["alice"]

    diff = await c.get(f"{url}/versions/diff?from=1&to=2", headers=api.as_("vic"))
    assert diff.status_code == 200, diff.text
    assert diff.json()["changes"] == [
        {"field": "parameters.temperature", "from": 0.5, "to": 1.2},
        {"field": "tools", "from": ["files.read", "git.log"], "to": ["files.read"],
         "added": [], "removed": ["git.log"]},
    ]  # fmt: skip

    reverted = await c.post(f"{url}/revert", json={"version": 1}, headers=api.as_("alice"))
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["config_version"] == 3
    assert reverted.json()["parameters"]["temperature"] == 0.5
    assert reverted.json()["tools"] == ["files.read", "git.log"]
    assert (await c.get(f"{url}/versions/diff?from=1&to=3", headers=api.as_("vic"))).json()[
        "changes"
    ] == []

    missing = await c.post(f"{url}/revert", json={"version": 9}, headers=api.as_("alice"))
    problem(missing, 404, "not_found")
    stale = await c.patch(
        url, json={"description": "x", "expected_version": 2}, headers=api.as_("alice")
    )
    problem(stale, 409, "conflict")

    audit = await c.get(f"/api/v1/audit?subject=agent:{agent['id']}", headers=api.as_("vic"))
    types = [e["type"] for e in audit.json()["items"]]
    assert types == ["agent:updated", "agent:updated", "agent:created"]
    assert audit.json()["items"][0]["data"]["reverted_to"] == 1


async def test_permissions_role_by_role(api: Api) -> None:
    c = api.client
    problem(await c.post(AGENTS, json=agent_body(), headers=api.as_("vic")), 403, "forbidden")
    agent = await create(api)
    url = f"{AGENTS}/{agent['id']}"
    token = await agent_token(api, agent["id"])
    for who in ("vic", "bob", "alice", "admin"):
        assert (await c.get(url, headers=api.as_(who))).status_code == 200
    assert (await c.get(url, headers=token)).status_code == 200  # agents read
    change = {"description": "changed"}
    problem(await c.patch(url, json=change, headers=api.as_("vic")), 403, "forbidden")
    problem(await c.patch(url, json=change, headers=api.as_("bob")), 403, "forbidden")  # not owner
    problem(await c.patch(url, json=change, headers=token), 403, "forbidden")  # agents never
    assert (await c.patch(url, json=change, headers=api.as_("admin"))).status_code == 200
    assert (await c.patch(url, json={"capacity": 3}, headers=api.as_("alice"))).status_code == 200
    problem(
        await c.post(f"{url}/tokens", json={"name": "x"}, headers=api.as_("bob")), 403, "forbidden"
    )
    problem(await c.delete(url, headers=api.as_("bob")), 403, "forbidden")
    assert (await c.get(f"{AGENTS}/{uuid.uuid4()}", headers=api.as_("vic"))).status_code == 404


async def test_admin_may_create_for_another_owner_others_may_not(api: Api) -> None:
    c = api.client
    for_alice = agent_body("delegated-bot", owner_id=api.ids["alice"])
    problem(await c.post(AGENTS, json=for_alice, headers=api.as_("bob")), 403, "forbidden")
    made = await c.post(AGENTS, json=for_alice, headers=api.as_("admin"))
    assert made.status_code == 201, made.text
    assert made.json()["owner_id"] == api.ids["alice"]


async def test_capacity_change_reaches_the_lock_manager_at_once(api: Api) -> None:
    agent = await create(api)
    response = await api.client.patch(
        f"{AGENTS}/{agent['id']}", json={"capacity": 7}, headers=api.as_("alice")
    )
    assert response.status_code == 200, response.text
    assert (await api.runtime.locks.inspect_agent(agent["id"])).capacity == 7


async def test_delete_revokes_tokens_and_hides_the_agent(api: Api) -> None:
    c = api.client
    agent = await create(api)
    token = await agent_token(api, agent["id"])
    assert (await c.get(AGENTS, headers=token)).status_code == 200
    assert (await c.delete(f"{AGENTS}/{agent['id']}", headers=api.as_("alice"))).status_code == 204
    problem(await c.get(f"{AGENTS}/{agent['id']}", headers=api.as_("alice")), 404, "not_found")
    problem(await c.get(AGENTS, headers=token), 401, "unauthenticated")
    assert (await c.get(AGENTS, headers=api.as_("alice"))).json()["total"] == 0


async def test_list_filters_and_pages(api: Api) -> None:
    c = api.client
    await create(api, name="alpha-bot", tags=["ops"], model="gpt-4o")
    await create(api, name="beta-bot", tags=["docs"], model="claude-sonnet-4")
    await create(api, name="gamma-helper", tags=["ops", "docs"], model="gpt-4o")

    async def names(query: str) -> list[str]:
        response = await c.get(f"{AGENTS}?{query}", headers=api.as_("vic"))
        assert response.status_code == 200, response.text
        return [a["name"] for a in response.json()["items"]]

    assert await names("tag=ops") == ["alpha-bot", "gamma-helper"]
    assert await names("model=claude-sonnet-4") == ["beta-bot"]
    assert await names("q=HELP") == ["gamma-helper"]
    assert await names("q=%25") == []  # a LIKE wildcard is searched for, not expanded
    assert await names("limit=2&page=2") == ["gamma-helper"]
    assert await names("health=offline") == ["alpha-bot", "beta-bot", "gamma-helper"]
    assert await names("health=online") == []
    problem(
        await c.get(f"{AGENTS}?health=sleepy", headers=api.as_("vic")), 422, "validation_failed"
    )


async def test_catalogue_is_seeded_and_edited_by_admins(api: Api) -> None:
    c = api.client
    models = (await c.get("/api/v1/catalogue/models", headers=api.as_("vic"))).json()
    assert {
        "id": "gpt-4o",
        "name": "GPT-4o",
        "provider": "OpenAI",
        "context_window": 128000,
    } in models
    tools = (await c.get("/api/v1/catalogue/tools", headers=api.as_("vic"))).json()
    assert any(t["base"] for t in tools)
    assert not all(t["base"] for t in tools)
    new = {"id": "tiny-1", "name": "Tiny", "provider": "Local", "context_window": 1000}
    problem(
        await c.post("/api/v1/catalogue/models", json=new, headers=api.as_("alice")),
        403,
        "forbidden",
    )
    assert (
        await c.post("/api/v1/catalogue/models", json=new, headers=api.as_("admin"))
    ).status_code == 201
    problem(
        await c.post("/api/v1/catalogue/models", json=new, headers=api.as_("admin")),
        409,
        "conflict",
    )

    agent = await create(api, model="tiny-1", parameters={"max_tokens": 1000})
    too_many = await c.patch(
        f"{AGENTS}/{agent['id']}",
        json={"parameters": {"max_tokens": 1001}},
        headers=api.as_("alice"),
    )
    (error,) = problem(too_many, 422, "validation_failed")["errors"]
    assert error == {
        "path": "parameters.max_tokens",
        "message": "must be between 1 and 1000, got 1001",
    }
    in_use = await c.delete("/api/v1/catalogue/models/tiny-1", headers=api.as_("admin"))
    assert problem(in_use, 409, "conflict")["agents"] == ["reviewer-bot"]

    bigger = {"name": "Tiny", "provider": "Local", "context_window": 4000}
    assert (
        await c.put("/api/v1/catalogue/models/tiny-1", json=bigger, headers=api.as_("admin"))
    ).status_code == 200
    assert (
        await c.patch(
            f"{AGENTS}/{agent['id']}",
            json={"parameters": {"max_tokens": 3000}},
            headers=api.as_("alice"),
        )
    ).status_code == 200
    tool = {"id": "x.tool", "name": "X", "category": "Misc"}
    assert (
        await c.post("/api/v1/catalogue/tools", json=tool, headers=api.as_("admin"))
    ).status_code == 201
    assert (
        await c.delete("/api/v1/catalogue/tools/x.tool", headers=api.as_("admin"))
    ).status_code == 204
    problem(
        await c.delete("/api/v1/catalogue/tools/x.tool", headers=api.as_("admin")), 404, "not_found"
    )


# -- leases and health ----------------------------------------------------------------


async def health_of(api: Api, agent_id: str) -> dict[str, Any]:
    response = await api.client.get(f"{AGENTS}/{agent_id}/health", headers=api.as_("vic"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_lease_makes_the_agent_online_until_closed(api: Api) -> None:
    c = api.client
    agent = await create(api)
    token = await agent_token(api, agent["id"])
    assert (await health_of(api, agent["id"]))["status"] == "offline"
    opened = await c.post("/api/v1/leases", json={}, headers=token)
    assert opened.status_code == 201, opened.text
    lease = opened.json()
    assert lease["agent_id"] == agent["id"]
    assert lease["lease_seconds"] == 30
    health = await health_of(api, agent["id"])
    assert health["status"] == "online"
    assert health["live_leases"] == 1
    assert health["last_seen"] is not None
    beat = await c.post(f"/api/v1/leases/{lease['id']}/heartbeat", headers=token)
    assert beat.status_code == 200
    assert beat.json()["expires_at"] >= lease["expires_at"]
    assert (await c.delete(f"/api/v1/leases/{lease['id']}", headers=token)).status_code == 204
    assert (await health_of(api, agent["id"]))["status"] == "offline"
    gone = await c.post(f"/api/v1/leases/{lease['id']}/heartbeat", headers=token)
    problem(gone, 404, "not_found")


async def test_a_lease_not_renewed_lapses(api: Api) -> None:
    agent = await create(api)
    opened = await api.client.post(
        "/api/v1/leases",
        json={"agent_id": agent["id"], "lease_seconds": 1},
        headers=api.as_("alice"),
    )
    assert opened.status_code == 201, opened.text
    assert (await health_of(api, agent["id"]))["status"] == "online"
    await asyncio.sleep(1.3)
    assert (await health_of(api, agent["id"]))["status"] == "offline"
    late = await api.client.post(
        f"/api/v1/leases/{opened.json()['id']}/heartbeat", headers=api.as_("alice")
    )
    problem(late, 404, "not_found")


async def test_who_may_hold_a_lease(api: Api) -> None:
    c = api.client
    mine = await create(api)
    other = await create(api, who="bob", name="bobs-bot")
    token = await agent_token(api, mine["id"])
    problem(
        await c.post("/api/v1/leases", json={"agent_id": other["id"]}, headers=token),
        403,
        "forbidden",
    )
    problem(
        await c.post("/api/v1/leases", json={"agent_id": mine["id"]}, headers=api.as_("bob")),
        403,
        "forbidden",
    )
    problem(
        await c.post("/api/v1/leases", json={"agent_id": mine["id"]}, headers=api.as_("vic")),
        403,
        "forbidden",
    )
    problem(
        await c.post("/api/v1/leases", json={}, headers=api.as_("alice")), 422, "validation_failed"
    )
    bad = await c.post(
        "/api/v1/leases",
        json={"agent_id": mine["id"], "lease_seconds": 0.1},
        headers=api.as_("alice"),
    )
    problem(bad, 422, "validation_failed")
    admin = await c.post("/api/v1/leases", json={"agent_id": mine["id"]}, headers=api.as_("admin"))
    assert admin.status_code == 201
    problem(
        await c.post(f"/api/v1/leases/{admin.json()['id']}/heartbeat", headers=api.as_("bob")),
        403,
        "forbidden",
    )
    assert (
        await c.post(f"/api/v1/leases/{admin.json()['id']}/heartbeat", headers=token)
    ).status_code == 200
    problem(
        await c.post(f"/api/v1/leases/{uuid.uuid4()}/heartbeat", headers=token), 404, "not_found"
    )


async def _finish_tasks(api: Api, agent_id: str, outcomes: list[bool]) -> None:
    """Tasks the agent submitted that ended, newest last (as the worker records them)."""
    async with api.runtime.sessions.begin() as session:
        for i, ok in enumerate(outcomes):
            now = utcnow()
            session.add(
                Task(
                    type="files.write",
                    title=f"task {i}",
                    submitter_id=uuid.UUID(api.ids["alice"]),
                    agent_id=uuid.UUID(agent_id),
                    state="COMPLETED" if ok else "FAILED",
                    duration_ms=100 * (i + 1),
                    last_error=None if ok else f"boom {i}",
                    finished_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            await asyncio.sleep(0.002)  # distinct finish times


async def test_recent_failures_degrade_an_online_agent(api: Api) -> None:
    agent = await create(api)
    await _finish_tasks(api, agent["id"], [True, False, False, False])
    offline = await health_of(api, agent["id"])
    assert offline["status"] == "offline"  # failures alone do not make it alive
    assert offline["success_rate"] == 0.25
    assert offline["sample"] == 4
    assert offline["p50_duration_ms"] == 200
    assert offline["last_error"] == "boom 3"
    assert offline["last_run"] is not None
    assert (await health_of(api, (await create(api, name="idle-bot"))["id"]))["last_run"] is None
    await api.client.post(
        "/api/v1/leases", json={"agent_id": agent["id"]}, headers=api.as_("alice")
    )
    degraded = await health_of(api, agent["id"])
    assert degraded["status"] == "degraded"
    assert degraded["reasons"] == ["1 of its last 4 tasks succeeded (below 50%)"]
    listed = await api.client.get(f"{AGENTS}?health=degraded", headers=api.as_("vic"))
    assert [a["name"] for a in listed.json()["items"]] == ["reviewer-bot"]


async def test_a_worker_holding_locks_counts_as_alive(api: Api) -> None:
    agent = await create(api)
    grant = await api.runtime.locks.acquire("t-1", agent["id"], [("db", "exclusive")], timeout=5)
    try:
        health = await health_of(api, agent["id"])
        assert health["status"] == "online"
        assert health["active_tasks"] == 1
        assert health["capacity"] == 2
    finally:
        await api.runtime.locks.release(grant)


async def test_health_changes_are_published_once(api: Api) -> None:
    agent = await create(api)
    opened = await api.client.post(
        "/api/v1/leases", json={"agent_id": agent["id"]}, headers=api.as_("alice")
    )

    async def published() -> list[dict[str, Any]]:
        stream = events_stream(api.runtime.settings.lock_domain)
        entries = await api.runtime.redis.xrange(stream)
        return [
            {"type": fields["type"], **json.loads(fields["e"])["data"]}
            for _, fields in entries
            if fields["subject"] == f"agent:{agent['id']}"
        ]

    await publish_changes(api.runtime)
    await publish_changes(api.runtime)  # no change, nothing more
    # (The server's own watch may have seen the agent offline before the lease opened.)
    events = [(e["type"], e["status"], e["previous"]) for e in await published()]
    assert events[-1] in {("agent:health", "online", None), ("agent:health", "online", "offline")}
    assert [e for e in events if e[1] == "online"] == events[-1:]
    await api.client.delete(f"/api/v1/leases/{opened.json()['id']}", headers=api.as_("alice"))
    await publish_changes(api.runtime)
    events = [(e["type"], e["status"], e["previous"]) for e in await published()]
    assert events[-1] == ("agent:health", "offline", "online")


# -- apply locks over HTTP leases -------------------------------------------------------


async def test_a_lease_can_hold_apply_locks_while_it_lives(api: Api) -> None:
    c = api.client
    agent = await create(api)
    token = await agent_token(api, agent["id"])
    body = {"resources": {"db": "exclusive"}, "task": "migrate-1", "lease_seconds": 30}
    opened = await c.post("/api/v1/leases", json=body, headers=token)
    assert opened.status_code == 201, opened.text
    locks = opened.json()["locks"]
    assert locks["task"] == "migrate-1"
    assert locks["resources"] == {"db": "exclusive"}
    assert locks["fence"] > 0
    held = await api.runtime.locks.inspect_resource("db")
    assert [h.task for h in held.holders] == ["migrate-1"]
    health = await health_of(api, agent["id"])
    assert health["active_tasks"] == 1

    busy = await c.post("/api/v1/leases", json={"resources": {"db": "shared"}}, headers=token)
    problem(busy, 409, "lock_timeout")  # tried once; and no lease was left open
    assert (await health_of(api, agent["id"]))["live_leases"] == 1

    beat = await c.post(f"/api/v1/leases/{opened.json()['id']}/heartbeat", headers=token)
    assert beat.json()["locks"]["fence"] == locks["fence"]
    closed = await c.delete(f"/api/v1/leases/{opened.json()['id']}", headers=token)
    assert closed.status_code == 204
    assert (await api.runtime.locks.inspect_resource("db")).holders == []


async def test_locks_of_a_lapsed_lease_are_released(api: Api) -> None:
    agent = await create(api)
    body = {"agent_id": agent["id"], "resources": {"cache": "shared"}, "lease_seconds": 1}
    opened = await api.client.post("/api/v1/leases", json=body, headers=api.as_("alice"))
    assert opened.status_code == 201, opened.text
    assert len((await api.runtime.locks.inspect_resource("cache")).holders) == 1
    await asyncio.sleep(2)  # no heartbeat: the lease lapses, the watcher releases
    assert (await api.runtime.locks.inspect_resource("cache")).holders == []


async def test_a_force_released_lock_is_reported_on_the_next_heartbeat(api: Api) -> None:
    agent = await create(api)
    token = await agent_token(api, agent["id"])
    opened = await api.client.post(
        "/api/v1/leases", json={"resources": {"queue": "exclusive"}}, headers=token
    )
    assert opened.status_code == 201, opened.text
    await api.runtime.locks.force_release("queue", "stuck migration")
    lease_id = opened.json()["id"]
    for _ in range(50):  # the holder learns at its lock session's next heartbeat
        beat = await api.client.post(f"/api/v1/leases/{lease_id}/heartbeat", headers=token)
        if beat.status_code != 200:
            break
        await asyncio.sleep(0.2)
    assert "stuck migration" in problem(beat, 409, "lock_lost")["detail"]
    gone = await api.client.post(f"/api/v1/leases/{lease_id}/heartbeat", headers=token)
    problem(gone, 404, "not_found")


async def test_bad_lock_requests_are_refused_before_anything_is_held(api: Api) -> None:
    agent = await create(api)
    token = await agent_token(api, agent["id"])
    bad_name = await api.client.post(
        "/api/v1/leases", json={"resources": {"has space": "exclusive"}}, headers=token
    )
    problem(bad_name, 422, "validation_failed")
    bad_mode = await api.client.post(
        "/api/v1/leases", json={"resources": {"db": "sometimes"}}, headers=token
    )
    problem(bad_mode, 422, "validation_failed")
    assert (await health_of(api, agent["id"]))["live_leases"] == 0


async def test_waiting_for_locks_holds_no_database_transaction(api: Api) -> None:
    agent = await create(api)
    token = await agent_token(api, agent["id"])
    held = await api.client.post(
        "/api/v1/leases", json={"resources": {"db": "exclusive"}}, headers=token
    )
    assert held.status_code == 201, held.text
    waiting = asyncio.ensure_future(
        api.client.post(
            "/api/v1/leases",
            json={"resources": {"db": "exclusive"}, "wait_seconds": 5},
            headers=token,
        )
    )
    await asyncio.sleep(0.5)
    # A write while the second lease waits (SQLite has one writer: it would block).
    other = await asyncio.wait_for(
        api.client.post(AGENTS, json=agent_body("writer-bot"), headers=api.as_("bob")), 3
    )
    assert other.status_code == 201, other.text
    assert not waiting.done()
    await api.client.delete(f"/api/v1/leases/{held.json()['id']}", headers=token)
    granted = await asyncio.wait_for(waiting, 5)
    assert granted.status_code == 201, granted.text
    assert granted.json()["locks"]["fence"] > held.json()["locks"]["fence"]


async def test_an_agent_creates_only_its_allowed_task_types(api: Api) -> None:
    narrow = await create(api, name="files-only", allowed_task_types=["files.write"])
    headers = await agent_token(api, narrow["id"])
    files = {"root": str(api.workspace), "changes": [{"path": "a", "action": "delete"}]}
    patch = {"repo": str(api.workspace), "branch": "main", "patch": "x", "message": "m"}
    draft = {"title": "t", "payload": patch}
    refused = await api.client.post(
        "/api/v1/tasks", json={"type": "git.patch", **draft}, headers=headers
    )
    body = problem(refused, 403, "forbidden")
    assert "allowed task types are files.write" in body["detail"]
    allowed = await api.client.post(
        "/api/v1/tasks",
        json={"type": "files.write", "title": "t", "payload": files},
        headers=headers,
    )
    assert allowed.status_code == 201, allowed.text

    anything = await create(api, name="any-type")  # no list: every type
    other = await api.client.post(
        "/api/v1/tasks",
        json={"type": "git.patch", **draft},
        headers=await agent_token(api, anything["id"]),
    )
    assert other.status_code == 201, other.text


async def test_an_agent_name_is_normalised_and_may_not_look_like_another(api: Api) -> None:
    first = await create(api, name="ｄｅｐｌｏｙｅｒ")  # fullwidth
    assert first["name"] == "deployer"
    for lookalike in ("dep1oyer", "dеployer", "Deployer"):  # 1 for l, Cyrillic е, case
        body = problem(
            await api.client.post(AGENTS, json=agent_body(lookalike), headers=api.as_("alice")),
            422,
            "validation_failed",
        )
        assert body["errors"][0]["path"] == "name"
        assert "looks like the existing agent 'deployer'" in body["errors"][0]["message"]
    other = await create(api, name="builder")
    renamed = await api.client.patch(
        f"{AGENTS}/{other['id']}",
        json={"name": "dep1oyer", "expected_version": 1},
        headers=api.as_("alice"),
    )
    assert problem(renamed, 422, "validation_failed")["errors"][0]["path"] == "name"
    # An agent keeps looking like itself: a change of its own name's case is its own.
    same = await api.client.patch(
        f"{AGENTS}/{first['id']}",
        json={"name": "Deployer", "expected_version": 1},
        headers=api.as_("alice"),
    )
    assert same.status_code == 200, same.text
