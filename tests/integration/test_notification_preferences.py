"""A person's notification preferences over the API (``/api/v1/users/me/notification-
preferences``) and the dashboard (``/me``), and the "waiting on me" count the page title
shows: defaults, a whole replacement, clear 4xx answers for bad input, people only."""

from __future__ import annotations

import uuid

from conftest import Api
from test_dashboard_pages import Visitor, is_page, submitted

from community_ade.auth import service as auth

PATH = "/api/v1/users/me/notification-preferences"


async def test_defaults_then_a_whole_replacement(api: Api) -> None:
    c = api.client
    default = await c.get(PATH, headers=api.as_("bob"))
    assert default.status_code == 200
    assert default.json() == {
        "channels": ["email", "slack", "dashboard"],
        "timezone": "UTC",
        "quiet_hours": None,
        "delivery": "immediate",
        "digest_hour": 9,
    }
    chosen = {
        "channels": ["email"],
        "timezone": "Europe/Paris",
        "quiet_hours": {"start": "22:00:00", "end": "07:00:00"},
        "delivery": "daily",
        "digest_hour": 8,
    }
    saved = await c.put(PATH, json=chosen, headers=api.as_("bob"))
    assert saved.status_code == 200, saved.text
    assert (await c.get(PATH, headers=api.as_("bob"))).json() == chosen
    # One person's choice is theirs alone.
    assert (await c.get(PATH, headers=api.as_("carol"))).json()["delivery"] == "immediate"
    # Every role may choose; a viewer is told about nothing today, but may say how.
    assert (await c.put(PATH, json={}, headers=api.as_("vic"))).status_code == 200


async def test_bad_preferences_are_a_clear_422(api: Api) -> None:
    for body in (
        {"timezone": "Mars/Olympus"},
        {"channels": ["pager"]},
        {"quiet_hours": {"start": "08:00", "end": "08:00"}},
        {"digest_hour": 24},
        {"delivery": "weekly"},
        {"surprise": 1},
        {"timezone": "x" * 1000},
    ):
        answer = await api.client.put(PATH, json=body, headers=api.as_("bob"))
        assert answer.status_code == 422, body
        assert answer.headers["content-type"] == "application/problem+json"
    assert (await api.client.get(PATH)).status_code == 401


async def test_agents_have_no_notification_preferences(api: Api) -> None:
    async with api.runtime.sessions.begin() as session:
        agent = await auth.create_agent_identity(session, "deploy-bot", uuid.UUID(api.ids["alice"]))
        token, _ = await auth.create_token(session, name="bot", agent_id=agent.id)
    answer = await api.client.get(PATH, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403
    assert answer.json()["type"].endswith("forbidden")


async def test_the_me_page_saves_preferences(api: Api) -> None:
    bob = Visitor(api, "bob")
    is_page(await bob.get("/me"), 200)
    saved = await bob.post(
        "/me/notifications",
        {
            "channel": ["email", "dashboard"],
            "timezone": "Asia/Tokyo",
            "delivery": "hourly",
            "digest_hour": "9",
            "quiet_start": "23:00",
            "quiet_end": "06:30",
        },
    )
    assert saved.status_code == 303
    prefs = (await api.client.get(PATH, headers=api.as_("bob"))).json()
    assert prefs["channels"] == ["email", "dashboard"]
    assert prefs["quiet_hours"] == {"start": "23:00:00", "end": "06:30:00"}
    assert (prefs["timezone"], prefs["delivery"]) == ("Asia/Tokyo", "hourly")
    page = await bob.get("/me")
    assert 'value="Asia/Tokyo"' in page.text
    assert 'value="23:00"' in page.text
    # Half a quiet period, or an unknown zone: a clear page, nothing saved.
    half = await bob.post("/me/notifications", {"quiet_start": "23:00", "timezone": "UTC"})
    is_page(half, 422)
    unknown = await bob.post("/me/notifications", {"timezone": "Nowhere/Land"})
    is_page(unknown, 422)
    assert "unknown time zone" in unknown.text
    assert (await api.client.get(PATH, headers=api.as_("bob"))).json() == prefs
    # No CSRF token: refused.
    is_page(await bob.post("/me/notifications", {"timezone": "UTC"}, csrf=False), 403)


async def test_waiting_on_me_counts_what_the_visitor_may_still_decide(api: Api) -> None:
    bob, alice = Visitor(api, "bob"), Visitor(api, "alice")
    assert (await bob.get("/live/waiting")).json()["count"] == 0
    task_id, digest = await submitted(api)
    state = (await bob.get(f"/live/waiting?task={task_id}")).json()
    assert state == {
        "count": 1,
        "more": False,
        "notify": True,
        "task_waits": True,
        "task_title": "turn on debug",
    }
    # The submitter is never waited on for her own task.
    mine = (await alice.get(f"/live/waiting?task={task_id}")).json()
    assert (mine["count"], mine["task_waits"]) == (0, False)
    await api.client.put(PATH, json={"channels": ["email"]}, headers=api.as_("bob"))
    assert (await bob.get("/live/waiting")).json()["notify"] is False
    approved = await api.client.post(
        f"/api/v1/approvals/{task_id}/approve", json={"digest": digest}, headers=api.as_("bob")
    )
    assert approved.status_code == 200
    after = (await bob.get(f"/live/waiting?task={task_id}")).json()
    assert (after["count"], after["task_waits"]) == (0, False)
