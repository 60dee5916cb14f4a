"""Outbound webhooks against real local HTTP receivers (who may manage them is the
authorization matrix's): signatures that verify with the ``standardwebhooks`` library,
receipts attached to decisions, a receiver that is down and then up getting every event
once per ``webhook-id``, 410 Gone, the allowlist, secret rotation, the delivery log and
redelivery, one slow endpoint not holding back another, and competing senders sending
each event once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Api
from standardwebhooks import Webhook, WebhookVerificationError
from webhook_receiver import Received, Receiver

from community_ade.audit import notes
from community_ade.audit.receipts import check_receipt
from community_ade.infra.aio import cancel_and_wait
from community_ade.webhooks.delivery import run_webhooks

URL = "/api/v1/webhooks"
FAST = [0.0, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def other() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def api_settings(hooks: Receiver, other: Receiver) -> dict[str, Any]:
    return {
        "http_allowlist": [hooks.url, other.url],
        "webhook_retry_schedule": FAST,
        "webhook_poll_seconds": 0.1,
        "events_poll_seconds": 0.05,
    }


async def subscribe(api: Api, url: str, *types: str) -> dict[str, Any]:
    made = await api.client.post(
        URL, json={"url": url, "event_types": list(types)}, headers=api.as_("admin")
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def new_task(api: Api, title: str = "turn on debug") -> str:
    body = {
        "type": "files.write",
        "title": title,
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
        },
    }
    created = await api.client.post("/api/v1/tasks", json=body, headers=api.as_("alice"))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def deliveries(api: Api, sub_id: str, status: str, count: int) -> list[dict[str, Any]]:
    """The subscription's deliveries in ``status``, once there are ``count`` of them (the
    receiver may see an answer before its result is stored)."""
    for _ in range(200):
        page = await api.client.get(
            f"{URL}/{sub_id}/deliveries?status={status}", headers=api.as_("admin")
        )
        if page.json()["total"] >= count:
            items: list[dict[str, Any]] = page.json()["items"]
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} {status} deliveries: {page.json()}")


def parsed(received: Received) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(received.body)
    return body


async def test_events_arrive_signed_with_receipts_and_only_those_subscribed(
    api: Api, hooks: Receiver
) -> None:
    sub = await subscribe(api, hooks.url, "task:*", "approval:*")
    secret = sub["secret"]
    assert secret.startswith("whsec_")
    task_id = await new_task(api)
    submitted = await api.client.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))
    digest = submitted.json()["preview_digest"]
    decided = await api.client.post(
        f"/api/v1/approvals/{task_id}/approve", json={"digest": digest}, headers=api.as_("bob")
    )
    assert decided.status_code == 200, decided.text
    # Deliveries run side by side (not in order): wait for each one.
    wanted = {"task:created", "task:submitted", "approval:approved"}
    got = await hooks.wait_for(lambda got: wanted <= {parsed(r)["type"] for r in got})
    for received in got:
        Webhook(secret).verify(received.body, received.headers)  # raises if not
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(received.body + b" ", received.headers)
    types = [parsed(r)["type"] for r in got]
    assert "task:created" in types
    assert "task:submitted" in types
    assert all(t.split(":")[0] in {"task", "approval"} for t in types), types
    event = next(parsed(r) for r in got if parsed(r)["type"] == "approval:approved")
    assert event["data"]["subject"] == f"task:{task_id}"
    assert isinstance(event["data"]["seq"], int)
    # The decision carries its transparency receipt, which checks offline.
    vkey = (await api.client.get("/.well-known/ade-audit-key")).text.strip()
    checkpoint = check_receipt(event["receipt"], notes.Verifier.parse(vkey))
    assert checkpoint.size >= event["data"]["audit_seq"]
    assert event["receipt"]["entry"]["seq"] == event["data"]["audit_seq"]
    created = next(parsed(r) for r in got if parsed(r)["type"] == "task:created")
    assert "receipt" not in created  # no receipt is offered for a draft
    # The secret is shown once: never again.
    shown = await api.client.get(f"{URL}/{sub['id']}", headers=api.as_("admin"))
    assert "secret" not in shown.json()
    assert secret not in shown.text


async def test_a_receiver_down_then_up_gets_every_event_once_per_webhook_id(
    api: Api, hooks: Receiver
) -> None:
    sub = await subscribe(api, hooks.url, "task:created")
    hooks.status = 503
    tasks = [await new_task(api, f"task {n}") for n in range(5)]
    await hooks.wait_for(lambda got: len({r.headers["webhook-id"] for r in got}) == 5)
    await hooks.wait_for(lambda got: len(got) >= 10)  # retried while down
    hooks.status = 200
    accepted = await hooks.wait_for(lambda got: len([r for r in got if r.status == 200]) == 5)
    accepted = [r for r in accepted if r.status == 200]
    ids = Counter(r.headers["webhook-id"] for r in accepted)
    assert set(ids.values()) == {1}
    assert sorted(parsed(r)["data"]["subject"] for r in accepted) == sorted(
        f"task:{t}" for t in tasks
    )
    # The same id and the same bytes on every attempt of one event.
    for received in hooks.got():
        first = next(
            r for r in hooks.got() if r.headers["webhook-id"] == received.headers["webhook-id"]
        )
        assert received.body == first.body
    # The delivery log: every attempt, its status and an excerpt of the answer.
    done = await deliveries(api, sub["id"], "succeeded", 5)
    assert len(done) == 5
    one = done[0]
    assert one["attempts"] >= 2
    detail = await api.client.get(
        f"/api/v1/webhook-deliveries/{one['id']}", headers=api.as_("admin")
    )
    attempts = detail.json()["attempt_log"]
    assert [a["status_code"] for a in attempts][-1] == 200
    assert {a["status_code"] for a in attempts[:-1]} == {503}
    assert attempts[0]["response_excerpt"] == "answered 503"
    assert detail.json()["payload"]["type"] == "task:created"
    # Nothing is failing any more.
    again = await api.client.get(f"{URL}/{sub['id']}", headers=api.as_("admin"))
    assert again.json()["failing_since"] is None


async def test_manual_redelivery_sends_the_same_id_and_body(api: Api, hooks: Receiver) -> None:
    sub = await subscribe(api, hooks.url, "task:created")
    await new_task(api)
    [first] = await hooks.wait_for(lambda got: len(got) == 1)
    [done] = await deliveries(api, sub["id"], "succeeded", 1)
    delivery_id = done["id"]
    assert delivery_id == first.headers["webhook-id"]
    again = await api.client.post(
        f"/api/v1/webhook-deliveries/{delivery_id}/redeliver", headers=api.as_("admin")
    )
    assert again.status_code == 202, again.text
    _, second = await hooks.wait_for(lambda got: len(got) == 2)
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body
    missing = await api.client.post(
        f"/api/v1/webhook-deliveries/msg_{'0' * 32}/redeliver", headers=api.as_("admin")
    )
    assert missing.status_code == 404


async def test_410_gone_disables_the_endpoint_and_tells_the_admins(
    api: Api, hooks: Receiver
) -> None:
    sub = await subscribe(api, hooks.url, "task:created")
    hooks.status = 410
    await new_task(api)
    await hooks.wait_for(lambda got: len(got) == 1)
    shown: dict[str, Any] = {}
    for _ in range(100):
        shown = (await api.client.get(f"{URL}/{sub['id']}", headers=api.as_("admin"))).json()
        if not shown["enabled"]:
            break
        await asyncio.sleep(0.05)
    assert shown["enabled"] is False
    assert shown["disabled_reason"] == "the endpoint answered 410 Gone"
    audit = await api.client.get("/api/v1/audit?type=webhook:disabled", headers=api.as_("admin"))
    [event] = audit.json()["items"]
    assert event["subject"] == f"webhook:{sub['id']}"
    # Disabled: new events are not sent (nor queued); enabling again resumes.
    await new_task(api)
    hooks.status = 200
    enabled = await api.client.patch(
        f"{URL}/{sub['id']}", json={"enabled": True}, headers=api.as_("admin")
    )
    assert enabled.json()["enabled"] is True
    assert enabled.json()["disabled_reason"] is None
    third = await new_task(api)
    got = await hooks.wait_for(lambda got: any(r.status == 200 for r in got))
    assert [parsed(r)["data"]["subject"] for r in got if r.status == 200] == [f"task:{third}"]


async def test_a_url_outside_the_allowlist_is_a_422_naming_the_setting(api: Api) -> None:
    for url in ("https://example.com/hooks", "http://127.0.0.1:1/hooks", "ftp://x/y"):
        refused = await api.client.post(
            URL, json={"url": url, "event_types": ["*"]}, headers=api.as_("admin")
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert "ADE_HTTP_ALLOWLIST" in refused.text or "http" in refused.text
    outside = await api.client.post(
        URL,
        json={"url": "https://example.com/hooks", "event_types": ["*"]},
        headers=api.as_("admin"),
    )
    assert "ADE_HTTP_ALLOWLIST" in outside.json()["detail"]
    bad_filter = await api.client.post(
        URL,
        json={"url": "https://example.com/hooks", "event_types": ["TASK *"]},
        headers=api.as_("admin"),
    )
    assert bad_filter.status_code == 422
    listed = await api.client.get(URL, headers=api.as_("admin"))
    assert listed.json()["total"] == 0


async def test_a_rotated_secret_overlaps_then_only_the_new_one_signs(
    api: Api, hooks: Receiver
) -> None:
    sub = await subscribe(api, hooks.url, "task:created")
    old = sub["secret"]
    rotated = await api.client.post(
        f"{URL}/{sub['id']}/rotate-secret", json={"overlap_hours": 1}, headers=api.as_("admin")
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old
    assert rotated.json()["previous_secret_until"] is not None
    await new_task(api)
    [during] = await hooks.wait_for(lambda got: len(got) == 1)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)
    ended = await api.client.post(
        f"{URL}/{sub['id']}/rotate-secret", json={"overlap_hours": 0}, headers=api.as_("admin")
    )
    newest = ended.json()["secret"]
    await new_task(api)
    _, after = await hooks.wait_for(lambda got: len(got) == 2)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(newest).verify(after.body, after.headers)
    for stale in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(stale).verify(after.body, after.headers)


async def test_a_slow_endpoint_does_not_hold_back_another(
    api: Api, hooks: Receiver, other: Receiver
) -> None:
    hooks.delay = 3.0  # the slow one: every request takes 3 s
    await subscribe(api, hooks.url, "task:created")
    await subscribe(api, other.url, "task:created")
    for n in range(12):
        await new_task(api, f"task {n}")
    await other.wait_for(lambda got: len(got) == 12)
    # The slow endpoint is served too, a few at a time, while the other is done.
    assert len(hooks.got()) < 12


async def test_competing_senders_queue_and_send_each_event_once(api: Api, hooks: Receiver) -> None:
    """Two more delivery loops beside the app's own (as several `ade serve` and
    `ade worker` processes run them), on the same database and stream."""
    competitors = [asyncio.create_task(run_webhooks(api.runtime)) for _ in range(2)]
    try:
        sub = await subscribe(api, hooks.url, "task:created")
        for n in range(20):
            await new_task(api, f"task {n}")
        await deliveries(api, sub["id"], "succeeded", 20)
        await asyncio.sleep(1.0)  # time for a duplicate to show up, were there one
    finally:
        await cancel_and_wait(competitors)
    ids = Counter(r.headers["webhook-id"] for r in hooks.got())
    assert len(ids) == 20
    assert set(ids.values()) == {1}
    log = await api.client.get(f"{URL}/{sub['id']}/deliveries", headers=api.as_("admin"))
    assert log.json()["total"] == 20  # each event queued once
