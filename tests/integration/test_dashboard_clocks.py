"""The clocks on the dashboard's pages (no browser): the queue says what a timeout will do
and that a task was escalated; the approval view names the system's timeout decision
with its rule and policy version; the policy dry run shows the clock rules."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from conftest import Api
from test_dashboard_pages import Visitor, is_page, submitted

from community_ade.approvals.sweep import ClockSweep
from community_ade.storage.models import Task


async def put_policy(api: Api, **rule: Any) -> int:
    document = {"rules": [{"name": "config", "review_ttl_seconds": 600, **rule}]}
    r = await api.client.put("/api/v1/policies", json=document, headers=api.as_("admin"))
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


async def sweep_after_deadline(api: Api, task_id: str) -> None:
    async with api.runtime.sessions.begin() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        assert task.review_deadline is not None
        at: datetime = task.review_deadline + timedelta(seconds=1)
        await ClockSweep(session, now=lambda: at).run()


async def test_the_approval_view_names_the_system_decision_on_timeout(api: Api) -> None:
    version = await put_policy(api, on_review_timeout={"action": "reject"})
    task_id, _ = await submitted(api)
    bob = Visitor(api, "bob")
    queue = await bob.get("/")
    is_page(queue, 200)
    assert "on timeout: reject" in queue.text
    await sweep_after_deadline(api, task_id)
    page = await bob.get(f"/tasks/{task_id}")
    is_page(page, 200)
    assert 'data-clock-decision="reject"' in page.text
    assert "On timeout, the system chose: reject." in page.text
    assert f"rule config, policy version {version}" in page.text
    assert "On review timeout: reject (rule config)" in page.text


async def test_the_queue_shows_an_escalated_task(api: Api) -> None:
    await put_policy(
        api,
        reminders=[0.5],
        on_review_timeout={"action": "escalate", "group": "db-owners", "review_ttl_seconds": 3600},
    )
    task_id, _ = await submitted(api)
    carol = Visitor(api, "carol")
    before = (await carol.get("/")).text
    assert "on timeout: escalate to db-owners, 1 h more" in before
    await sweep_after_deadline(api, task_id)
    queue = await carol.get("/")
    is_page(queue, 200)
    assert "escalated to db-owners" in queue.text
    page = (await carol.get(f"/tasks/{task_id}")).text
    assert 'data-clock-decision="escalate"' in page
    assert "data-escalated>db-owners" in page
    assert "Reminders at 50 % of the review window (rule config)" in page


async def test_the_policy_dry_run_shows_the_clock_rules(api: Api) -> None:
    await put_policy(
        api,
        on_review_timeout={"action": "auto_approve", "risk_below": 30},
        on_approval_timeout="re_review",
    )
    admin = Visitor(api, "admin")
    form = {"type": "files.write", "lines_changed": "3", "type_0": "configuration"}
    form |= {"id_0": "app", "scope_0": "namespace", "actions_0": "write"}
    page = await admin.post("/policies/evaluate", form)
    is_page(page, 200)
    assert "On review timeout: auto-approve if risk &lt; 30 (rule config)" in page.text
    assert "On approval timeout: re-review (rule config)" in page.text
