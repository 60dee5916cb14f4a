"""Scope-limited API tokens over the API: refused with 403 naming the missing scope at
the one permission check, never wider than the token that made them, expiring, and
existing (unscoped) tokens keeping their holder's rights."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import Api

from community_ade.auth import service as auth

TASKS = "/api/v1/tasks"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _token(api: Api, who: str, **body: Any) -> dict[str, Any]:
    made = await api.client.post(
        "/api/v1/tokens", json={"name": "script", **body}, headers=api.as_(who)
    )
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


def _task(api: Api) -> dict[str, Any]:
    return {
        "type": "files.write",
        "title": "turn on debug",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
        },
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }


async def test_a_read_token_reads_and_is_refused_the_rest_naming_the_scope(api: Api) -> None:
    token = await _token(api, "bob", scopes=["read"])
    assert token["scopes"] == ["read"]
    assert (await api.client.get(TASKS, headers=bearer(token["token"]))).status_code == 200

    refused = await api.client.post(TASKS, json=_task(api), headers=bearer(token["token"]))
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["type"] == "forbidden"
    assert problem["missing_scope"] == "submit"
    assert problem["scopes"] == ["read"]
    assert "lacks the scope 'submit'" in problem["detail"]
    # Bob's unscoped token (made before scopes, as every existing one) still may.
    allowed = await api.client.post(TASKS, json=_task(api), headers=api.as_("bob"))
    assert allowed.status_code == 201, allowed.text


async def test_a_review_scope_lets_a_reviewer_decide_but_not_submit(api: Api) -> None:
    created = await api.client.post(TASKS, json=_task(api), headers=api.as_("alice"))
    task_id = created.json()["id"]
    submitted = await api.client.post(f"{TASKS}/{task_id}/submit", headers=api.as_("alice"))
    digest = submitted.json()["preview_digest"]
    token = (await _token(api, "bob", scopes=["review", "read"]))["token"]

    approved = await api.client.post(
        f"/api/v1/approvals/{task_id}/approve", json={"digest": digest}, headers=bearer(token)
    )
    assert approved.status_code == 200, approved.text
    refused = await api.client.post(TASKS, json=_task(api), headers=bearer(token))
    assert refused.json()["missing_scope"] == "submit"


async def test_a_scope_beyond_the_role_grants_nothing(api: Api) -> None:
    token = (await _token(api, "vic", scopes=["admin", "read"]))["token"]
    refused = await api.client.put("/api/v1/policies", json={}, headers=bearer(token))
    assert refused.status_code == 403
    assert "missing_scope" not in refused.json()  # the role is what is missing
    assert refused.json()["permission"] == "policy_write"


async def test_a_limited_token_makes_no_wider_one(api: Api) -> None:
    limited = (await _token(api, "admin", scopes=["read"]))["token"]
    wider = await api.client.post(
        "/api/v1/tokens", json={"name": "x", "scopes": ["admin"]}, headers=bearer(limited)
    )
    assert wider.status_code == 403
    assert wider.json()["missing_scope"] == "admin"
    same = await api.client.post("/api/v1/tokens", json={"name": "x"}, headers=bearer(limited))
    assert same.status_code == 201
    assert same.json()["scopes"] == ["read"]  # its maker's limits, by default


async def test_tokens_are_listed_expire_and_are_revoked(api: Api) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    token = await _token(api, "carol", scopes=["read"], expires_at=soon.isoformat())
    listed = await api.client.get("/api/v1/tokens", headers=api.as_("carol"))
    mine = {t["id"]: t for t in listed.json()}
    assert mine[token["id"]]["scopes"] == ["read"]
    assert "token" not in mine[token["id"]]
    assert mine[token["id"]]["expires_at"] is not None

    # Another person's token is not there to revoke.
    theirs = await api.client.delete(f"/api/v1/tokens/{token['id']}", headers=api.as_("bob"))
    assert theirs.status_code == 404
    revoked = await api.client.delete(f"/api/v1/tokens/{token['id']}", headers=api.as_("carol"))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    dead = await api.client.get(TASKS, headers=bearer(token["token"]))
    assert dead.status_code == 401


async def test_an_expired_token_stops_working(api: Api) -> None:
    async with api.runtime.sessions.begin() as session:
        plaintext, row = await auth.create_token(
            session,
            name="short",
            user_id=uuid.UUID(api.ids["bob"]),
            expires_at=datetime.now(UTC) + timedelta(seconds=60),
            scopes=["read"],
        )
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert (await api.client.get(TASKS, headers=bearer(plaintext))).status_code == 401


async def test_bad_token_requests_are_refused_with_422(api: Api) -> None:
    for body in (
        {"name": "x", "scopes": ["write"]},
        {"name": "x", "scopes": []},
        {"name": "x", "expires_at": "2001-01-01T00:00:00Z"},
    ):
        refused = await api.client.post("/api/v1/tokens", json=body, headers=api.as_("bob"))
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["type"] == "validation_failed"


async def test_agents_have_no_personal_tokens_but_theirs_take_scopes(api: Api) -> None:
    agent = await api.client.post(
        "/api/v1/agents", json={"name": "scoped-bot", "model": "gpt-4o"}, headers=api.as_("alice")
    )
    agent_id = agent.json()["id"]
    made = await api.client.post(
        f"/api/v1/agents/{agent_id}/tokens",
        json={"name": "ro", "scopes": ["read"]},
        headers=api.as_("alice"),
    )
    assert made.status_code == 201, made.text
    agent_token = made.json()["token"]
    refused = await api.client.post(TASKS, json=_task(api), headers=bearer(agent_token))
    assert refused.json()["missing_scope"] == "submit"
    personal = await api.client.post(
        "/api/v1/tokens", json={"name": "x"}, headers=bearer(agent_token)
    )
    assert personal.status_code == 403
