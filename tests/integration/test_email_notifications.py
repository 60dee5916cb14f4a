"""E-mail approvals end to end, against a real SMTP server (aiosmtpd) and the app with
its e-mail loop running: the message reaches each eligible reviewer with both parts;
its link opens a page that decides nothing on GET; a POST by the right reviewer
decides through the review engine; a link used, expired, altered or opened by someone
else is refused; a stale digest is said clearly and consumes nothing."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Api
from smtputil import Received, SmtpServer
from sqlalchemy import select
from test_dashboard_pages import Visitor, is_page

from community_ade.auth import service as auth
from community_ade.dashboard.security import load_secret
from community_ade.notifications import email_links
from community_ade.storage.models import EmailLinkUse, EmailOutbox, Task, utcnow

HOSTILE_TITLE = 'raise <b>pool</b> & <script>alert("x")</script>'


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api_settings(smtp: SmtpServer) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_security": "none",
        "smtp_from": "Community ADE <ade@example.org>",
        "email_poll_seconds": 0.2,
        "public_url": "http://ade",
    }


async def _with_emails(api: Api) -> None:
    async with api.runtime.sessions.begin() as session:
        for who in ("bob", "carol", "alice"):
            await auth.set_email(session, uuid.UUID(api.ids[who]), f"{who}@example.org")


async def _submit(api: Api, title: str) -> tuple[str, str]:
    body = {
        "type": "files.write",
        "title": title,
        "payload": {
            "root": str(api.workspace),
            "changes": [
                {"path": f"{uuid.uuid4().hex[:8]}.conf", "action": "write", "content": "x\n"}
            ],
        },
        "resources": [],
    }
    c = api.client
    task_id = (await c.post("/api/v1/tasks", json=body, headers=api.as_("alice"))).json()["id"]
    submitted = await c.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))
    return task_id, submitted.json()["preview_digest"]


def _parts(received: Received) -> tuple[str, str]:
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None
    assert rich is not None
    return plain.get_content(), rich.get_content()


def _link_path(text: str) -> str:
    url = re.search(r"Decide \(you confirm on the page, logged in\): (\S+)", text)
    assert url is not None, text
    parts = urlsplit(url.group(1))
    assert f"{parts.scheme}://{parts.netloc}" == "http://ade"
    return f"{parts.path}?{parts.query}"


async def _state(api: Api, task_id: str) -> str:
    async with api.runtime.sessions() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        return task.state


async def test_each_eligible_reviewer_gets_a_message_whose_link_decides_once(
    api: Api, smtp: SmtpServer
) -> None:
    await _with_emails(api)
    task_id, digest = await _submit(api, HOSTILE_TITLE)

    # Every reviewer who may decide (bob, carol; admin has no address), never alice.
    received = await smtp.mailbox.wait_for(2)
    assert sorted(r for m in received for r in m.recipients) == [
        "bob@example.org",
        "carol@example.org",
    ]
    by_rcpt = {m.recipients[0]: m for m in received}
    bobs = by_rcpt["bob@example.org"]
    assert bobs.message["To"] == "bob <bob@example.org>"
    assert bobs.message["From"] == "Community ADE <ade@example.org>"
    assert bobs.message["Subject"].startswith("[ADE] Review: raise <b>pool</b>")
    assert bobs.message["Message-ID"]
    assert bobs.message["Auto-Submitted"] == "auto-generated"
    text, rich = _parts(bobs)
    assert HOSTILE_TITLE in text
    assert digest in text
    assert "<script>" not in rich  # escaped in HTML
    assert html.escape(HOSTILE_TITLE) in rich
    assert f"http://ade/approvals/{task_id}" in text
    link = _link_path(text)
    assert html.escape(f"http://ade{link}") in rich

    bob, carol = Visitor(api, "bob"), Visitor(api, "carol")
    # A prefetch (a mail scanner, or bob opening it) decides nothing.
    for _ in range(2):
        page = await bob.get(link)
        is_page(page, 200)
        assert "Approve" in page.text
        assert "&lt;script&gt;" in page.text
    assert await _state(api, task_id) == "SUBMITTED"
    # Not logged in: to the login page, and back here afterwards.
    anonymous = await api.client.get(link)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login?next=/email/decide")
    # Bob's link opened by carol, even logged in, is refused: GET and POST.
    is_page(await carol.get(link), 403)
    token = parse_qs(urlsplit(link).query)["t"][0]
    is_page(await carol.post("/email/decide", {"t": token, "action": "approve"}), 403)
    # Without the CSRF token nothing is decided either.
    is_page(await bob.post("/email/decide", {"t": token, "action": "approve"}, csrf=False), 403)
    assert await _state(api, task_id) == "SUBMITTED"

    decided = await bob.post("/email/decide", {"t": token, "action": "approve", "comment": "ok"})
    assert decided.status_code == 303
    assert decided.headers["location"] == f"/tasks/{task_id}"
    assert await _state(api, task_id) == "APPROVED"
    reviews = (await api.client.get(f"/api/v1/approvals/{task_id}", headers=api.as_("bob"))).json()
    assert [
        (r["actor_id"], r["decision"], r["digest"], r["comment"]) for r in reviews["reviews"]
    ] == [(api.ids["bob"], "approve", digest, "ok")]
    assert await api.logged_surfaces(task_id) == ["email"]
    assert "(e-mail)" in (await bob.get(f"/tasks/{task_id}")).text

    # Used: refused, on both methods.
    again = await bob.post("/email/decide", {"t": token, "action": "reject"})
    is_page(again, 403)
    assert "already used" in again.text
    is_page(await bob.get(link), 403)


async def test_expired_altered_and_stale_links_are_refused(api: Api, smtp: SmtpServer) -> None:
    await _with_emails(api)
    task_id, digest = await _submit(api, "turn on debug")
    await smtp.mailbox.wait_for(2)
    key = email_links.link_key(load_secret(api.runtime.settings))
    bob = Visitor(api, "bob")
    task = uuid.UUID(task_id)
    reviewer = uuid.UUID(api.ids["bob"])

    def token(link_digest: str, expires_in: timedelta) -> str:
        link = email_links.new_link(reviewer, task, link_digest, utcnow() + expires_in)
        return email_links.sign(key, link)

    expired = token(digest, timedelta(seconds=-1))
    page = await bob.get(f"/email/decide?t={expired}")
    is_page(page, 403)
    assert "expired" in page.text
    is_page(await bob.post("/email/decide", {"t": expired, "action": "approve"}), 403)

    good = token(digest, timedelta(hours=1))
    body, signature = good.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for altered in (f"{flipped}.{signature}", f"{body}.{signature[:-1]}x", "nonsense", "a.b"):
        page = await bob.get(f"/email/decide?t={altered}")
        is_page(page, 403)
        response = await bob.post("/email/decide", {"t": altered, "action": "approve"})
        is_page(response, 403)
    is_page(await bob.get(f"/email/decide?t={'x' * 600}"), 422)  # bounded before any work

    # A link for a preview that is no longer the task's: the page says so and offers
    # the current one; a POST is refused as stale and leaves the link unused.
    stale = token("0" * 64, timedelta(hours=1))
    page = await bob.get(f"/email/decide?t={stale}")
    is_page(page, 200)
    assert 'data-outcome="stale"' in page.text
    assert f'href="/approvals/{task_id}"' in page.text
    refused = await bob.post("/email/decide", {"t": stale, "action": "approve"})
    is_page(refused, 409)
    assert 'data-error="stale_preview"' in refused.text
    assert await _state(api, task_id) == "SUBMITTED"
    async with api.runtime.sessions() as session:
        assert (
            await session.get(EmailLinkUse, email_links.verify(key, stale, now=utcnow()).nonce)
            is None
        )
    # The same refusals as the API: alice may not decide her own task by a link either.
    alices = email_links.sign(
        key,
        email_links.new_link(
            uuid.UUID(api.ids["alice"]), task, digest, utcnow() + timedelta(hours=1)
        ),
    )
    is_page(
        await Visitor(api, "alice").post("/email/decide", {"t": alices, "action": "approve"}), 403
    )
    assert await _state(api, task_id) == "SUBMITTED"


async def test_the_outbox_records_what_was_sent(api: Api, smtp: SmtpServer) -> None:
    await _with_emails(api)
    task_id, _ = await _submit(api, "turn on debug")
    await smtp.mailbox.wait_for(2)
    query = select(EmailOutbox).where(EmailOutbox.task_id == uuid.UUID(task_id))
    for _attempt in range(100):  # the SMTP server accepted: the outcome commits next
        async with api.runtime.sessions() as session:
            rows = list(await session.scalars(query))
        if all(r.state == "sent" for r in rows):
            break
        await asyncio.sleep(0.1)
    assert sorted(r.state for r in rows) == ["sent", "sent"]
    assert all(r.kind == "requested" and r.attempts == 0 for r in rows)
    assert all(r.sent_at is not None for r in rows)
