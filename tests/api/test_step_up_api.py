"""Step-up over the API: a policy rule's ``fresh_auth_seconds`` is validated when stored
(422), and a decision on a task it matches needs a token carrying a login that fresh
(a dashboard session); other tokens get ``401 fresh_auth_required``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Api

from community_ade.auth import service as auth

RULE = {"name": "fresh", "task_types": ["*"], "risk_min": 0, "fresh_auth_seconds": 60}


@pytest.mark.parametrize("seconds", [0, -5, 30 * 86_400 + 1, "1 min", None])
async def test_a_bad_fresh_auth_is_refused_with_422(api: Api, seconds: Any) -> None:
    rule = {**RULE, "fresh_auth_seconds": seconds}
    stored = await api.client.put(
        "/api/v1/policies", json={"rules": [rule]}, headers=api.as_("admin")
    )
    if seconds is None:  # null: no step-up, a valid rule
        assert stored.status_code == 200, stored.text
        return
    assert stored.status_code == 422, stored.text
    assert stored.json()["type"] == "validation_failed"
    assert any("fresh_auth_seconds" in e["loc"] for e in stored.json()["errors"])


async def _submitted(api: Api) -> tuple[str, str]:
    body = {
        "type": "files.write",
        "title": "turn on debug",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
        },
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }
    created = await api.client.post("/api/v1/tasks", json=body, headers=api.as_("alice"))
    task_id = created.json()["id"]
    submitted = await api.client.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))
    assert submitted.json()["task"]["requirements"]["fresh_auth_seconds"] == 60
    return task_id, submitted.json()["preview_digest"]


async def _session_token(api: Api, who: str, age: timedelta) -> str:
    async with api.runtime.sessions.begin() as session:
        token, _ = await auth.create_token(
            session,
            name="dashboard session",
            user_id=uuid.UUID(api.ids[who]),
            auth_time=datetime.now(UTC) - age,
        )
    return token


async def test_only_a_fresh_login_decides(api: Api) -> None:
    stored = await api.client.put(
        "/api/v1/policies", json={"rules": [RULE]}, headers=api.as_("admin")
    )
    assert stored.status_code == 200, stored.text
    task_id, digest = await _submitted(api)
    url = f"/api/v1/approvals/{task_id}/approve"

    stale = await _session_token(api, "bob", timedelta(minutes=5))
    for token in (api.tokens["bob"], stale):  # an API token; a login 5 minutes old
        refused = await api.client.post(
            url, json={"digest": digest}, headers={"Authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 401, refused.text
        assert refused.json()["type"] == "fresh_auth_required"
        assert refused.json()["max_age"] == 60
    assert refused.json()["auth_time"] is not None  # the stale session's, named

    fresh = await _session_token(api, "bob", timedelta(seconds=5))
    done = await api.client.post(
        url, json={"digest": digest}, headers={"Authorization": f"Bearer {fresh}"}
    )
    assert done.status_code == 200, done.text
    # Still bob's token on every other route: the step-up concerns decisions only.
    listed = await api.client.get("/api/v1/tasks", headers=api.as_("bob"))
    assert listed.status_code == 200
