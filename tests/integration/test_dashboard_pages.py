"""Every dashboard page and action, role by role, over the app (no browser): who is sent
to the login page, who gets a page, who is refused; CSRF on every POST; malformed input
is a 4xx page, never a 500 or a traceback."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROLES, Api
from fastapi import FastAPI

from community_ade import dashboard
from community_ade.dashboard import web
from community_ade.dashboard.security import csrf_token, load_secret

PAGES = ["/", "/tasks", "/delegations", "/policies", "/audit", "/locks"]
REVIEWERS = {"bob", "carol", "admin"}


async def submitted(
    api: Api, title: str = "turn on debug", resources: list[dict[str, Any]] | None = None
) -> tuple[str, str]:
    body = {
        "type": "files.write",
        "title": title,
        "payload": {
            "root": str(api.workspace),
            "changes": [
                {"path": f"{uuid.uuid4().hex[:8]}.conf", "action": "write", "content": "x\n"}
            ],
        },
        "resources": resources or [],
    }
    c = api.client
    task_id = (await c.post("/api/v1/tasks", json=body, headers=api.as_("alice"))).json()["id"]
    digest = (await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))).json()[
        "preview_digest"
    ]
    return task_id, digest


class Visitor:
    """A logged-in browser, by cookie: a dashboard session is an API token."""

    def __init__(self, api: Api, who: str) -> None:
        self.client = api.client
        self.cookies = {"Cookie": f"ade_session={api.tokens[who]}"}
        secret = load_secret(api.runtime.settings)
        self.csrf = csrf_token(secret, "session", api.tokens[who])

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path, headers=self.cookies)

    async def post(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        form = {**data, "csrf_token": self.csrf} if csrf else data
        return await self.client.post(path, data=form, headers=self.cookies)


def is_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"  # no clickjacked decisions
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path", PAGES)
async def test_without_a_session_every_page_leads_to_the_login(api: Api, path: str) -> None:
    response = await api.client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"
    stale = await api.client.get(path, headers={"Cookie": "ade_session=ade_u0000000_nonsense"})
    assert stale.status_code == 303


@pytest.mark.parametrize("who", list(ROLES))
async def test_every_role_reads_every_page(api: Api, who: str) -> None:
    task_id, _ = await submitted(api)
    visitor = Visitor(api, who)
    for path in [*PAGES, f"/tasks/{task_id}", f"/approvals/{task_id}", f"/queue/row/{task_id}"]:
        is_page(await visitor.get(path), 200)
    detail = (await visitor.get(f"/tasks/{task_id}")).text
    assert ('value="approve"' in detail) == (who in REVIEWERS)


@pytest.mark.parametrize("who", list(ROLES))
async def test_decisions_need_the_review_permission(api: Api, who: str) -> None:
    visitor = Visitor(api, who)
    task_id, digest = await submitted(api)
    decided = await visitor.post(
        f"/tasks/{task_id}/decide", {"action": "approve", "digest": digest}
    )
    if who in REVIEWERS:
        assert decided.status_code == 303
        assert decided.headers["location"] == f"/tasks/{task_id}"
        assert await api.logged_surfaces(task_id) == ["dashboard"]
    else:
        is_page(decided, 403)
    other, other_digest = await submitted(api)
    batch = await visitor.post(
        "/queue/batch", {"action": "approve", "task_ids": other, f"digest_{other}": other_digest}
    )
    if who in REVIEWERS:
        is_page(batch, 200)
        assert re.search(rf'data-result="ok" data-task-id="{other}"', batch.text)
        assert await api.logged_surfaces(other) == ["dashboard"]
    else:
        is_page(batch, 403)


@pytest.mark.parametrize("who", list(ROLES))
async def test_policy_and_delegation_writes_by_role(api: Api, who: str) -> None:
    visitor = Visitor(api, who)
    policy = await visitor.post("/policies", {"document": '{"rules": []}'})
    if who == "admin":
        assert policy.status_code == 303
    else:
        is_page(policy, 403)
    delegate = "carol" if who != "carol" else "bob"
    delegation = await visitor.post(
        "/delegations", {"delegate": delegate, "valid_until": "2099-01-01T00:00"}
    )
    if who in REVIEWERS:
        assert delegation.status_code == 303
    else:
        is_page(delegation, 403)
    evaluated = await visitor.post(
        "/policies/evaluate", {"type": "files.write", "lines_changed": "3", "id_0": ""}
    )
    is_page(evaluated, 200)


@pytest.mark.parametrize("who", list(ROLES))
async def test_only_admins_force_release(api: Api, who: str) -> None:
    form = {"resource": "db:nothing-held", "reason": "test", "domain": api.runtime.locks.domain}
    response = await Visitor(api, who).post("/locks/force-release", form)
    if who == "admin":  # allowed, but nothing holds it
        is_page(response, 404)
        assert "no grant holds" in response.text
    else:
        is_page(response, 403)


@pytest.mark.parametrize(
    "path",
    [
        "/logout",
        "/locks/force-release",
        "/queue/batch",
        "/policies",
        "/delegations",
        "/policies/evaluate",
    ],
)
async def test_a_post_without_the_csrf_token_is_refused(api: Api, path: str) -> None:
    visitor = Visitor(api, "admin")
    response = await visitor.post(path, {"document": "{}"}, csrf=False)
    is_page(response, 403)
    assert "CSRF" in response.text
    header = await api.client.post(
        path, data={}, headers={**visitor.cookies, "X-CSRF-Token": "f" * 64}
    )
    is_page(header, 403)
    assert (await visitor.get("/")).status_code == 200  # still logged in: logout was refused


async def test_bad_input_is_a_clear_page(api: Api) -> None:
    visitor = Visitor(api, "bob")
    task_id, digest = await submitted(api)
    cases: list[tuple[str, str, dict[str, Any] | None, int, str]] = [
        ("GET", f"/tasks/{uuid.uuid4()}", None, 404, "no task"),
        ("GET", "/tasks/not-a-uuid", None, 422, "task_id"),
        ("GET", "/?state=NOPE", None, 422, "state"),
        ("GET", "/?page=0", None, 422, "page"),
        ("GET", "/audit?before=-1", None, 422, "before"),
        ("POST", "/queue/batch", {"action": "approve"}, 422, "select at least one task"),
        (
            "POST",
            "/queue/batch",
            {"action": "merge", "task_ids": task_id},
            422,
            "approve or reject",
        ),
        ("POST", "/queue/batch", {"action": "approve", "task_ids": "x"}, 422, "not a task id"),
        (
            "POST",
            f"/tasks/{task_id}/decide",
            {"action": "approve", "digest": "0" * 64},
            409,
            "stale preview",
        ),
        ("POST", f"/tasks/{task_id}/decide", {"action": "delegate", "digest": digest}, 422, "whom"),
        (
            "POST",
            f"/tasks/{task_id}/decide",
            {"action": "explode", "digest": digest},
            422,
            "action",
        ),
        (
            "POST",
            "/delegations",
            {"delegate": "nobody", "valid_until": "2099-01-01T00:00"},
            422,
            "no user",
        ),
        (
            "POST",
            "/delegations",
            {"delegate": "carol", "valid_until": "tomorrow"},
            422,
            "not a date",
        ),
        ("POST", "/policies/evaluate", {"type": "nope.nothing"}, 422, "nope.nothing"),
        (
            "POST",
            "/locks/force-release",
            {"resource": "r", "reason": "x", "domain": "a b"},
            422,
            "domain",
        ),
        ("GET", "/locks?domain=a%20b", None, 422, "domain"),
        (
            "POST",
            "/policies/evaluate",
            {"type": "files.write", "id_0": "db", "type_0": "moon"},
            422,
            "moon",
        ),
    ]
    for method, path, data, status, text in cases:
        if method == "GET":
            response = await visitor.get(path)
        else:
            response = await visitor.post(path, data or {})
        is_page(response, status)
        assert text in response.text, (path, data, response.text[-1500:])
    admin = Visitor(api, "admin")
    refused = await admin.post(
        "/policies", {"document": '{"rules": [{"name": "x", "risk_min": 300}]}'}
    )
    is_page(refused, 422)
    assert "risk_min" in refused.text
    not_json = await admin.post("/policies", {"document": "{"})
    is_page(not_json, 422)
    assert "not JSON" in not_json.text


async def test_the_queue_filters_and_sorts(api: Api) -> None:
    risky = {"type": "secret", "id": "vault", "scope": "global", "actions": ["write"]}
    high, _ = await submitted(api, "rotate every key", [risky])
    low, _ = await submitted(api, "fix a typo")
    bob = Visitor(api, "bob")

    async def listed(query: str, who: Visitor = bob) -> list[str]:
        page = await who.get(f"/?{query}")
        is_page(page, 200)
        return [t for t in (high, low) if f'data-task-id="{t}"' in page.text]

    assert await listed("") == [high, low]
    assert await listed("risk=medium") == [high]  # 63: a one-line secret change
    assert await listed("risk=high") == []
    assert await listed("risk=low") == [low]
    assert await listed("submitter=alice&type=files.write") == [high, low]
    assert await listed("submitter=bob") == []
    assert await listed("type=git.patch") == []
    assert await listed("agent=no-such-agent") == []
    assert await listed("state=APPROVED") == []
    assert await listed("mine=1") == [high, low]
    assert await listed("mine=1", Visitor(api, "vic")) == []  # a viewer decides nothing
    by_risk = (await bob.get("/?sort=risk&order=desc")).text
    assert by_risk.index(f'data-task-id="{high}"') < by_risk.index(f'data-task-id="{low}"')
    by_risk = (await bob.get("/?sort=risk&order=asc")).text
    assert by_risk.index(f'data-task-id="{low}"') < by_risk.index(f'data-task-id="{high}"')


async def test_a_missing_htmx_is_said_on_every_page(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(web, "HTMX_FILE", tmp_path / "htmx.min.js")
    page = await Visitor(api, "bob").get("/")
    is_page(page, 200)
    assert "The htmx script is not installed" in page.text
    assert "/static/vendor/htmx.min.js" not in page.text.split("<body")[0]  # no broken <script>
    with caplog.at_level(logging.ERROR):
        dashboard.install(FastAPI())
    assert "htmx.min.js is missing: run `make venv`" in caplog.text


async def test_toast_sentences(api: Api) -> None:
    task_id, _ = await submitted(api, "raise the limit")
    visitor = Visitor(api, "vic")

    async def said(**query: str) -> str:
        response = await visitor.get(
            "/live/describe?" + "&".join(f"{k}={v}" for k, v in query.items())
        )
        assert response.status_code == 200
        return response.text

    bob = api.ids["bob"]
    subject = f"task:{task_id}"
    assert await said(type="approval:decision", actor=bob, subject=subject, decision="approve") == (
        "bob approved “raise the limit”"
    )
    assert await said(type="approval:decision", actor=bob, subject=subject, decision="reject") == (
        "bob rejected “raise the limit”"
    )
    assert await said(type="task:failed", subject=subject) == "“raise the limit” failed to apply"
    assert await said(type="task:completed", subject=f"task:{uuid.uuid4()}") == "a task was applied"
    assert await said(type="approval:approved", subject="task:not-a-uuid") == "a task is approved"


async def test_agents_are_shown_by_name_not_id(api: Api) -> None:
    """A task an agent proposed, the agent's audit events and a lease toast name it."""
    made = await api.client.post(
        "/api/v1/agents", json={"name": "named-bot", "model": "gpt-4o"}, headers=api.as_("alice")
    )
    agent = made.json()
    issued = await api.client.post(
        f"/api/v1/agents/{agent['id']}/tokens", json={"name": "t"}, headers=api.as_("alice")
    )
    headers = {"Authorization": f"Bearer {issued.json()['token']}"}
    body = {
        "type": "files.write",
        "title": "agent change",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "x.conf", "action": "write", "content": "x\n"}],
        },
    }
    made = await api.client.post("/api/v1/tasks", json=body, headers=headers)
    assert made.status_code == 201, made.text
    visitor = Visitor(api, "vic")
    tasks = await visitor.get("/tasks?state=any")
    is_page(tasks, 200)
    assert "through agent named-bot" in tasks.text
    audit = await visitor.get(f"/audit?subject=agent:{agent['id']}")
    is_page(audit, 200)
    assert f'agent <a href="/agents/{agent["id"]}">named-bot</a>' in audit.text
    told = await visitor.get(f"/live/describe?type=agent:online&subject=agent:{agent['id']}")
    assert told.text == "agent:online: agent named-bot by someone"
