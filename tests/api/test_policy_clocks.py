"""Policy documents with clock rules over HTTP: bad values are refused with a 422 naming
the field (and nothing is stored); a good one is stored and the evaluation shows the
clock rules a task would get; the approval view names the system's timeout decision."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from conftest import Api
from test_lifecycle_api import submitted

from community_ade.approvals.sweep import ClockSweep
from community_ade.storage.models import Task

RESOURCES = [{"type": "configuration", "id": "app", "actions": ["write"]}]


def document(**rule: Any) -> dict[str, Any]:
    return {"rules": [{"name": "config", "groups": [{"group": "db-owners"}], **rule}]}


def locations(body: dict[str, Any]) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in body.get("errors", [])]


@pytest.mark.parametrize(
    ("rule", "where"),
    [
        ({"reminders": [0.5, 1.0]}, "body.rules.0.reminders.1"),
        ({"reminders": [0]}, "body.rules.0.reminders.0"),
        ({"reminders": [0.9, 0.5]}, "body.rules.0.reminders"),
        ({"reminders": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}, "body.rules.0.reminders"),
        ({"on_review_timeout": {"action": "later"}}, "body.rules.0.on_review_timeout"),
        (
            {"on_review_timeout": {"action": "auto_approve"}},
            "body.rules.0.on_review_timeout.auto_approve.risk_below",
        ),
        (
            {"on_review_timeout": {"action": "auto_approve", "risk_below": 101}},
            "body.rules.0.on_review_timeout.auto_approve.risk_below",
        ),
        (
            {"on_review_timeout": {"action": "escalate", "review_ttl_seconds": 60}},
            "body.rules.0.on_review_timeout.escalate.group",
        ),
        (
            {"on_review_timeout": {"action": "escalate", "group": "db-owners"}},
            "body.rules.0.on_review_timeout.escalate.review_ttl_seconds",
        ),
        (
            {"on_review_timeout": {"action": "reject", "group": "db-owners"}},
            "body.rules.0.on_review_timeout.reject.group",
        ),
        ({"on_approval_timeout": "escalate"}, "body.rules.0.on_approval_timeout"),
    ],
)
async def test_a_bad_clock_rule_is_refused_naming_the_field(
    api: Api, rule: dict[str, Any], where: str
) -> None:
    r = await api.client.put("/api/v1/policies", json=document(**rule), headers=api.as_("admin"))
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "validation_failed"
    assert where in locations(r.json())
    assert (await api.client.get("/api/v1/policies", headers=api.as_("admin"))).json()[
        "version"
    ] == 0


async def test_escalation_to_a_group_that_does_not_exist_is_refused(api: Api) -> None:
    rule = {
        "on_review_timeout": {"action": "escalate", "group": "nobody", "review_ttl_seconds": 60}
    }
    r = await api.client.put("/api/v1/policies", json=document(**rule), headers=api.as_("admin"))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == "rules[0].on_review_timeout.group"
    assert "'nobody'" in body["detail"]
    assert (await api.client.get("/api/v1/policies", headers=api.as_("admin"))).json()[
        "version"
    ] == 0


async def test_the_evaluation_shows_the_clock_rules_a_task_would_get(api: Api) -> None:
    rule = {
        "reminders": [0.5, 0.9],
        "on_review_timeout": {
            "action": "escalate",
            "group": "db-owners",
            "review_ttl_seconds": 3600,
        },
        "on_approval_timeout": "re_review",
    }
    r = await api.client.put("/api/v1/policies", json=document(**rule), headers=api.as_("admin"))
    assert r.status_code == 200, r.text
    r = await api.client.post(
        "/api/v1/policies/evaluate",
        json={"type": "files.write", "resources": RESOURCES, "lines_changed": 1},
        headers=api.as_("alice"),
    )
    req = r.json()["requirements"]
    assert (req["reminders"], req["reminders_rule"]) == ([0.5, 0.9], "config")
    assert req["on_review_timeout"] == {
        "action": "escalate",
        "group": "db-owners",
        "review_ttl_seconds": 3600,
        "risk_below": None,
        "rule": "config",
    }
    assert req["on_approval_timeout"] == {"action": "re_review", "rule": "config"}
    assert req["escalated_to"] is None


async def test_the_approval_view_carries_the_system_decision_on_timeout(api: Api) -> None:
    rule = {"review_ttl_seconds": 60, "on_review_timeout": {"action": "reject"}}
    r = await api.client.put("/api/v1/policies", json=document(**rule), headers=api.as_("admin"))
    version = r.json()["version"]
    task_id, _ = await submitted(api)
    view = (await api.client.get(f"/api/v1/approvals/{task_id}", headers=api.as_("vic"))).json()
    assert view["timeout_decision"] is None
    assert view["task"]["requirements"]["on_review_timeout"]["action"] == "reject"
    async with api.runtime.sessions.begin() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        assert task.review_deadline is not None
        at = task.review_deadline + timedelta(seconds=1)
        await ClockSweep(session, now=lambda: at).run()
    view = (await api.client.get(f"/api/v1/approvals/{task_id}", headers=api.as_("vic"))).json()
    assert view["task"]["state"] == "REJECTED"
    decision = view["timeout_decision"]
    assert (decision["event"], decision["outcome"]) == ("approval:rejected", "reject")
    assert (decision["rule"], decision["policy_version"]) == ("config", version)
