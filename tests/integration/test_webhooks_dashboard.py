"""The dashboard's Webhooks page: admins only (others get 403, the nav hides it), the
secret shown once on the page that made it, a URL off the allowlist refused with the
setting's name, the system's reason for disabling shown as a notice, redelivery."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from conftest import Api
from integration.test_dashboard_pages import Visitor, is_page
from sqlalchemy import update

from community_ade.storage.models import WebhookDelivery, WebhookSubscription

HOOK = "http://127.0.0.1:9/hooks"


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"http_allowlist": [HOOK]}


async def test_only_admins_see_and_use_the_webhooks_page(api: Api) -> None:
    for who in ("alice", "bob", "vic"):
        visitor = Visitor(api, who)
        is_page(await visitor.get("/webhooks"), 403)
        assert 'href="/webhooks"' not in (await visitor.get("/tasks")).text
        refused = await visitor.post("/webhooks", {"url": HOOK, "event_types": "*"})
        is_page(refused, 403)
    admin = Visitor(api, "admin")
    assert 'href="/webhooks"' in (await admin.get("/tasks")).text
    is_page(await admin.get("/webhooks"), 200)


async def test_create_shows_the_secret_once_and_the_log_redelivers(api: Api) -> None:
    admin = Visitor(api, "admin")
    outside = await admin.post("/webhooks", {"url": "https://example.com/x", "event_types": "*"})
    is_page(outside, 422)
    assert "ADE_HTTP_ALLOWLIST" in outside.text
    made = await admin.post(
        "/webhooks", {"url": HOOK, "event_types": "task:*, approval:*", "description": "ci"}
    )
    is_page(made, 200)
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", made.text)
    assert secret is not None
    listed = await admin.get("/webhooks")
    assert HOOK in listed.text
    assert secret.group(0) not in listed.text
    hook_id = re.search(r'data-webhook="([0-9a-f-]{36})"', listed.text)
    assert hook_id is not None
    webhook_id = uuid.UUID(hook_id.group(1))

    delivery_id = f"msg_{uuid.uuid4().hex}"
    async with api.runtime.sessions.begin() as session:
        session.add(
            WebhookDelivery(
                id=delivery_id,
                subscription_id=webhook_id,
                event_seq=3,
                event_type="task:created",
                subject="task:x",
                payload="{}",
                status="failed",
                attempts=8,
            )
        )
        await session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == webhook_id)
            .values(enabled=False, disabled_reason="the endpoint answered 410 Gone")
        )
    notice = await admin.get("/webhooks")
    assert "the endpoint answered 410 Gone" in notice.text
    detail = await admin.get(f"/webhooks/{webhook_id}")
    is_page(detail, 200)
    assert delivery_id in detail.text
    assert secret.group(0) not in detail.text
    again = await admin.post(f"/webhook-deliveries/{delivery_id}/redeliver", {})
    assert again.status_code == 303
    async with api.runtime.sessions() as session:
        row = await session.get(WebhookDelivery, delivery_id)
        assert row is not None
        assert row.status == "pending"
    no_csrf = await admin.post(f"/webhooks/{webhook_id}/rotate", {}, csrf=False)
    is_page(no_csrf, 403)
    rotated = await admin.post(f"/webhooks/{webhook_id}/rotate", {"overlap_hours": "1"})
    is_page(rotated, 200)
    new = re.search(r"whsec_[A-Za-z0-9+/=]+", rotated.text)
    assert new is not None
    assert new.group(0) != secret.group(0)
    enabled = await admin.post(f"/webhooks/{webhook_id}/enabled", {"enabled": "true"})
    assert enabled.status_code == 303
    assert "410 Gone" not in (await admin.get("/webhooks")).text
