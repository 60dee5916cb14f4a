"""Slack approvals end to end on SQLite and PostgreSQL: the real ``slack_sdk`` client
against a local recorder of Slack's Web API, and interactivity requests signed as Slack
signs them. The poster is the one the app runs in the background."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import Api
from slackrec import Call, SlackRecorder, button_click, signed
from sqlalchemy import func, select

from community_ade.auth import service as auth
from community_ade.integrations.slack.blocks import APPROVE, REJECT, REQUEST_CHANGES
from community_ade.storage.models import PolicyVersion, Review

SLACK = "/api/v1/integrations/slack"
INTERACT = SLACK + "/interactivity"
TOKEN = "xoxb-1234567890-test-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0REVIEWS"


@pytest.fixture
async def recorder() -> AsyncIterator[SlackRecorder]:
    rec = SlackRecorder(members={"UCAROL": "carol@example.com"})
    await rec.start()
    yield rec
    await rec.stop()


@pytest.fixture
def api_settings(recorder: SlackRecorder) -> dict[str, Any]:
    return {"slack_api_url": recorder.url, "public_url": "https://ade.example.com"}


async def configured(api: Api) -> None:
    """Slack set up; only db-owners (carol) may approve configuration changes; carol is
    matched by e-mail, alice, bob and vic by explicit links."""
    c = api.client
    r = await c.put(
        SLACK,
        json={"bot_token": TOKEN, "signing_secret": SECRET, "default_channel": CHANNEL},
        headers=api.as_("admin"),
    )
    assert r.status_code == 200, r.text
    assert TOKEN not in r.text
    assert SECRET not in r.text
    links = (("admin", "UADMIN"), ("alice", "UALICE"), ("bob", "UBOB"), ("vic", "UVIC"))
    for name, slack_id in links:
        r = await c.put(
            f"{SLACK}/users/{name}", json={"slack_user_id": slack_id}, headers=api.as_("admin")
        )
        assert r.status_code == 200, r.text
    async with api.runtime.sessions.begin() as session:
        await auth.set_email(session, uuid.UUID(api.ids["carol"]), "carol@example.com")
        session.add(
            PolicyVersion(
                version=1,
                document={
                    "rules": [
                        {
                            "name": "owners",
                            "task_types": ["files.*"],
                            "groups": [{"group": "db-owners"}],
                        }
                    ]
                },
            )
        )


async def submitted(api: Api, who: str = "alice") -> tuple[str, str]:
    c = api.client
    body = {
        "type": "files.write",
        "title": "turn on debug",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
        },
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }
    task_id = (await c.post("/api/v1/tasks", json=body, headers=api.as_(who))).json()["id"]
    r = await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_(who))
    assert r.status_code == 200, r.text
    return task_id, r.json()["preview_digest"]


def buttons(call: Call) -> dict[str, str]:
    """action_id → value of the message's buttons (none once decided)."""
    blocks = call.params["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return {
        e["action_id"]: e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]
    }


def text_of(call: Call) -> str:
    blocks = call.params["blocks"]
    return blocks if isinstance(blocks, str) else json.dumps(blocks)


async def click(
    api: Api, user: str, action_id: str, value: str, ts: str, *, action_ts: str, **headers: str
) -> Any:
    payload = button_click(
        user, action_id, value, channel=CHANNEL, message_ts=ts, action_ts=action_ts
    )
    body, signed_headers = signed(SECRET, payload)
    return await api.client.post(INTERACT, content=body, headers=signed_headers | headers)


async def ephemeral_for(recorder: SlackRecorder, user: str, n: int) -> str:
    calls = [
        c for c in await recorder.wait_for("chat.postEphemeral", n) if c.params["user"] == user
    ]
    return str(calls[-1].params["text"])


async def reviews_count(api: Api) -> int:
    async with api.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Review)) or 0)


async def task_state(api: Api, task_id: str) -> str:
    r = await api.client.get(f"/api/v1/tasks/{task_id}", headers=api.as_("vic"))
    return str(r.json()["state"])


async def test_review_request_posted_then_refusals_then_approve_by_button(
    api: Api, recorder: SlackRecorder
) -> None:
    await configured(api)
    task_id, digest = await submitted(api, "bob")
    [posted] = await recorder.wait_for("chat.postMessage")
    assert posted.token == TOKEN
    assert posted.params["channel"] == CHANNEL
    shown = text_of(posted)
    for expected in ("turn on debug", "bob", "db-owners #1", "carol", "debug = true"):
        assert expected in shown
    assert f"https://ade.example.com/approvals/{task_id}" in shown
    values = buttons(posted)
    assert set(values) == {APPROVE, REJECT, REQUEST_CHANGES}
    assert json.loads(values[APPROVE]) == {"task": task_id, "digest": digest}
    ts = posted.answer["ts"]

    refusals = [
        ("UBOB", values[APPROVE], "you submitted it"),
        ("UADMIN", values[APPROVE], "not eligible"),
        ("UALICE", values[APPROVE], "may not review"),
        ("UCAROL", json.dumps({"task": task_id, "digest": "0" * 64}), "updated since"),
        ("UNOBODY", values[APPROVE], "not linked"),
    ]
    for n, (user, value, said) in enumerate(refusals, start=1):
        r = await click(api, user, APPROVE, value, ts, action_ts=f"1.{n}")
        assert r.status_code == 200, r.text
        assert said in await ephemeral_for(recorder, user, n)
    assert await reviews_count(api) == 0
    assert await task_state(api, task_id) == "SUBMITTED"

    r = await click(api, "UCAROL", APPROVE, values[APPROVE], ts, action_ts="2.0")
    assert r.status_code == 200
    assert "You approved" in await ephemeral_for(recorder, "UCAROL", len(refusals) + 1)
    assert await task_state(api, task_id) == "APPROVED"
    updates = await recorder.wait_for("chat.update")
    final = updates[-1]
    assert (final.params["channel"], final.params["ts"]) == (CHANNEL, posted.answer["ts"])
    assert buttons(final) == {}
    assert "Approved" in text_of(final)
    assert "carol via Slack" in text_of(final)
    assert await api.logged_surfaces(task_id) == ["slack"]

    # Slack retries the same interaction: answered as before, decided once.
    r = await click(
        api,
        "UCAROL",
        APPROVE,
        values[APPROVE],
        ts,
        action_ts="2.0",
        **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    assert r.status_code == 200
    assert "You approved" in await ephemeral_for(recorder, "UCAROL", len(refusals) + 2)
    assert await reviews_count(api) == 1
    # A second click after the decision is the engine's "already decided".
    r = await click(api, "UCAROL", REJECT, values[REJECT], ts, action_ts="3.0")
    assert "already decided" in await ephemeral_for(recorder, "UCAROL", len(refusals) + 3)
    assert await reviews_count(api) == 1


async def test_bad_signature_or_old_timestamp_is_401_and_changes_nothing(
    api: Api, recorder: SlackRecorder
) -> None:
    await configured(api)
    task_id, _ = await submitted(api)
    [posted] = await recorder.wait_for("chat.postMessage")
    value = buttons(posted)[APPROVE]
    payload = button_click("UCAROL", APPROVE, value, channel=CHANNEL, message_ts="1", action_ts="1")
    body, headers = signed("another-secret-entirely", payload)
    old_body, old_headers = signed(SECRET, payload, timestamp=int(time.time()) - 400)
    tampered_body, tampered_headers = signed(SECRET, payload)
    for content, hdrs in (
        (body, headers),
        (old_body, old_headers),
        (tampered_body.replace(b"UCAROL", b"UCAROM"), tampered_headers),
        (body, {"Content-Type": "application/x-www-form-urlencoded"}),
        (body, headers | {"X-Slack-Request-Timestamp": "not-a-number"}),
    ):
        r = await api.client.post(INTERACT, content=content, headers=hdrs)
        assert r.status_code == 401, r.text
        assert r.json()["type"] == "unauthenticated"
    assert await reviews_count(api) == 0
    assert await task_state(api, task_id) == "SUBMITTED"
    assert recorder.named("chat.postEphemeral") == []
    assert recorder.named("users.info") == []


async def test_a_decision_on_the_api_updates_the_message(api: Api, recorder: SlackRecorder) -> None:
    await configured(api)
    task_id, digest = await submitted(api)
    await recorder.wait_for("chat.postMessage")
    r = await api.client.post(
        f"/api/v1/approvals/{task_id}/reject",
        json={"digest": digest, "comment": "not now"},
        headers=api.as_("carol"),
    )
    assert r.status_code == 200, r.text
    [update] = await recorder.wait_for("chat.update")
    assert buttons(update) == {}
    assert "Rejected" in text_of(update)
    assert "by carol via API" in text_of(update)


async def test_request_changes_opens_a_modal_whose_submission_decides(
    api: Api, recorder: SlackRecorder
) -> None:
    await configured(api)
    task_id, _ = await submitted(api)
    [posted] = await recorder.wait_for("chat.postMessage")
    value = buttons(posted)[REQUEST_CHANGES]
    r = await click(api, "UCAROL", REQUEST_CHANGES, value, "1", action_ts="expired")
    assert r.status_code == 200
    assert "Could not open the form" in await ephemeral_for(recorder, "UCAROL", 1)
    r = await click(api, "UCAROL", REQUEST_CHANGES, value, "1", action_ts="5.0")
    assert r.status_code == 200
    [opened] = recorder.named("views.open")[1:]
    assert opened.params["trigger_id"] == "trigger-5.0"
    view = opened.params["view"]
    view = json.loads(view) if isinstance(view, str) else view

    def submission(comment: str) -> dict[str, Any]:
        return {
            "type": "view_submission",
            "user": {"id": "UCAROL"},
            "view": {
                "id": "V0MODAL",
                "hash": f"h-{len(comment)}",
                "callback_id": view["callback_id"],
                "private_metadata": view["private_metadata"],
                "state": {"values": {"comment": {"comment_input": {"value": comment}}}},
            },
        }

    body, headers = signed(SECRET, submission("   "))
    r = await api.client.post(INTERACT, content=body, headers=headers)
    assert r.json()["response_action"] == "errors"
    assert await task_state(api, task_id) == "SUBMITTED"
    body, headers = signed(SECRET, submission("split the change"))
    r = await api.client.post(INTERACT, content=body, headers=headers)
    assert r.json() == {"response_action": "clear"}
    assert await task_state(api, task_id) == "DRAFT"
    assert await api.logged_surfaces(task_id, "approval:changes_requested") == ["slack"]
    [update] = await recorder.wait_for("chat.update")
    assert "Changes requested" in text_of(update)
    assert "split the change" in text_of(update)


async def test_secrets_are_never_returned_and_only_admins_configure(
    api: Api, recorder: SlackRecorder
) -> None:
    await configured(api)
    r = await api.client.get(SLACK, headers=api.as_("admin"))
    body = r.json()
    assert body["configured"] is True
    assert body["default_channel"] == CHANNEL
    assert {u["username"] for u in body["users"]} == {"admin", "alice", "bob", "vic"}
    assert TOKEN not in r.text
    assert SECRET not in r.text
    r = await api.client.get(SLACK, headers=api.as_("bob"))
    assert r.status_code == 403
    r = await api.client.put(SLACK, json={"bot_token": "not-a-token"}, headers=api.as_("admin"))
    assert r.status_code == 422
