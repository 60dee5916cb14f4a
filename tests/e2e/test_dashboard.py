"""The review dashboard in a real browser against the live server (issue 5's list)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from community_ade.infra.redis_client import open_redis
from community_ade.locks import LockConfig, LockManager
from community_ade.locks.model import Mode
from e2e.conftest import LiveServer

pytestmark = pytest.mark.slow

Login = Callable[[str], Page]
# The README's screenshots are refreshed on purpose (`make screenshots`); other runs take
# them too, into test-artifacts/, so a test run leaves the work tree clean.
ROOT = Path(__file__).resolve().parents[2]
SHOTS = (
    ROOT / "docs" / "img"
    if os.environ.get("ADE_UPDATE_SCREENSHOTS") == "1"
    else ROOT / "test-artifacts" / "screenshots"
)
AFTER_APPROVAL = re.compile("APPROVED|APPLYING|COMPLETED")


def row(page: Page, task_id: str) -> Locator:
    return page.locator(f'[data-live-queue] tr[data-task-id="{task_id}"]')


def state_of(page: Page) -> Locator:
    return page.locator("[data-task-detail] .actions [data-live=state]").first


def test_readme_screenshots(live_server: LiveServer, login: Login) -> None:
    """Takes queue.png and detail.png (the README shows them; see SHOTS)."""
    samples = [  # title, lines, resource type, scope: low, medium and high risks
        ("rotate the payments API key everywhere", 60, "secret", "global"),
        ("add an index on orders.created_at", 20, "database", "namespace"),
        ("scale the checkout service to 6 replicas", 3, "service", "cluster"),
        ("tune the CDN cache TTL", 1, "configuration", "instance"),
    ]
    for title, lines, kind, scope in samples:
        content = "".join(f"setting_{n}: {n}\n" for n in range(lines))
        resource = {"type": kind, "id": kind, "scope": scope, "actions": ["write"]}
        live_server.submit_task(title, content, resources=[resource])
    detail_id, _ = live_server.submit_task(
        "raise the worker pool and log at debug",
        "workers: 16\nlog_level: debug\nqueue: orders\nretry: 3\n",
        path="worker.yaml",
        resources=[{"type": "service", "id": "worker", "actions": ["write"]}],
    )
    page = login("bob")
    page.goto("/?mine=1&sort=risk&order=desc")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "queue.png")
    page.goto(f"/tasks/{detail_id}")
    page.screenshot(path=SHOTS / "detail.png", full_page=True)
    assert (SHOTS / "queue.png").stat().st_size > 10_000


def test_login_logout_and_the_session_ends(live_server: LiveServer, login: Login) -> None:
    page = login("bob")
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    expect(page.locator(".who")).to_contain_text("bob")
    cookie = next(c for c in page.context.cookies() if c["name"] == "ade_session")
    assert cookie["httpOnly"]
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    # The token behind the old cookie is revoked: replaying it leads to the login page.
    replay = httpx.get(
        f"{live_server.url}/", cookies={"ade_session": cookie["value"]}, follow_redirects=False
    )
    assert replay.status_code == 303
    assert replay.headers["location"].startswith("/login")


def test_a_wrong_password_is_refused(live_server: LiveServer, login: Login) -> None:
    page = login("carol")
    context = page.context.browser.new_context(base_url=live_server.url)  # type: ignore[union-attr]
    try:
        stranger = context.new_page()
        stranger.goto("/tasks")
        expect(stranger).to_have_url(re.compile(r"/login\?next=/tasks"))
        stranger.get_by_label("Username").fill("carol")
        stranger.get_by_label("Password").fill("not her password")
        stranger.get_by_role("button", name="Log in").click()
        expect(stranger.get_by_role("alert")).to_contain_text("invalid username or password")
    finally:
        context.close()


def test_approve_one_from_the_detail_page(live_server: LiveServer, login: Login) -> None:
    task_id, _ = live_server.submit_task("raise the cache size", "cache_mb: 512\n")
    page = login("bob")
    expect(row(page, task_id)).to_contain_text("waiting on you")
    row(page, task_id).get_by_role("link").click()
    expect(page.get_by_role("heading", name="raise the cache size")).to_be_visible()
    expect(page.locator("pre.diff .gi", has_text="+cache_mb: 512")).to_be_visible()  # highlighted
    expect(page.locator("#req-title")).to_be_visible()
    expect(page.get_by_text("any reviewer #1: open")).to_be_visible()
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("You approved “raise the cache size”")
    expect(state_of(page)).to_have_text(AFTER_APPROVAL)
    expect(page.get_by_text("any reviewer #1: bob")).to_be_visible()
    assert AFTER_APPROVAL.fullmatch(live_server.task(task_id)["state"])


def test_batch_approve_shows_a_stale_preview_per_item(
    live_server: LiveServer, login: Login
) -> None:
    tasks = [
        live_server.submit_task(f"batch item {n}", f"item: {n}\n", path=f"batch-{n}.yaml")
        for n in range(3)
    ]
    page = login("bob")
    page.goto("/?mine=1")
    for task_id, _ in tasks:
        expect(row(page, task_id)).to_be_visible()
    # While bob looks at the queue, the second task is sent back and resubmitted changed.
    stale_id, stale_digest = tasks[1]
    with live_server.api("carol") as carol:
        sent_back = carol.post(
            f"/approvals/{stale_id}/request-changes", json={"digest": stale_digest}
        )
        assert sent_back.status_code == 200, sent_back.text
    with live_server.api("alice") as alice:
        payload = live_server.task(stale_id)["payload"]
        payload["changes"][0]["content"] = "item: 1 (edited)\n"
        assert alice.patch(f"/tasks/{stale_id}", json={"payload": payload}).status_code == 200
        assert alice.post(f"/tasks/{stale_id}/submit").status_code == 200
    for task_id, _ in tasks:
        row(page, task_id).locator("input[name=task_ids]").check()
    expect(page.locator("[data-selected-count]")).to_have_text("3 selected")
    page.get_by_role("button", name="Approve selected").click()
    results = page.locator("#batch-results")
    expect(results).to_be_visible()
    for task_id, _ in tasks:
        expected = "stale_preview" if task_id == stale_id else "ok"
        item = results.locator(f'tr[data-task-id="{task_id}"]')
        expect(item).to_have_attribute("data-result", expected)
    expect(results.locator(f'tr[data-task-id="{stale_id}"]')).to_contain_text("stale preview")
    assert live_server.task(stale_id)["state"] == "SUBMITTED"  # nothing half-applied
    for task_id, _ in (tasks[0], tasks[2]):
        assert AFTER_APPROVAL.fullmatch(live_server.task(task_id)["state"])


def test_reject_with_a_comment(live_server: LiveServer, login: Login) -> None:
    task_id, _ = live_server.submit_task("drop the audit table", "tables: []\n")
    page = login("carol")
    page.goto(f"/tasks/{task_id}")
    page.get_by_label("Comment").fill("we need that table for compliance")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator(".flash")).to_contain_text("You rejected")
    expect(state_of(page)).to_have_text("REJECTED")
    expect(page.locator("#history-title + ol")).to_contain_text("we need that table for compliance")


def test_a_stale_preview_is_refused_on_the_detail_page(
    live_server: LiveServer, login: Login
) -> None:
    task_id, digest = live_server.submit_task("rotate the logs daily", "rotate: daily\n")
    page = login("bob")
    page.goto(f"/tasks/{task_id}")
    with live_server.api("carol") as carol:
        carol.post(f"/approvals/{task_id}/request-changes", json={"digest": digest})
    with live_server.api("alice") as alice:
        payload = live_server.task(task_id)["payload"]
        payload["changes"][0]["content"] = "rotate: hourly\n"
        alice.patch(f"/tasks/{task_id}", json={"payload": payload})
        alice.post(f"/tasks/{task_id}/submit")
    page.get_by_role("button", name="Approve", exact=True).click()
    error = page.locator("#decision-error")
    expect(error).to_have_attribute("data-error", "stale_preview")
    expect(error).to_contain_text("stale preview")
    expect(page.locator("pre.diff")).to_contain_text("rotate: hourly")  # the current one
    assert live_server.task(task_id)["state"] == "SUBMITTED"


def test_another_reviewers_decision_appears_live(live_server: LiveServer, login: Login) -> None:
    """Two browser contexts: carol watches the queue while bob approves in his."""
    task_id, _ = live_server.submit_task(
        "open port 8443", "port: 8443\n", resources=[{"type": "network", "id": "edge"}]
    )
    watcher = login("carol")
    expect(row(watcher, task_id)).to_be_visible()
    expect(watcher.locator("#live-status")).to_have_text("live")
    reviewer = login("bob")
    reviewer.goto(f"/tasks/{task_id}")
    reviewer.get_by_role("button", name="Approve", exact=True).click()
    expect(reviewer.locator(".flash")).to_contain_text("You approved")
    expect(row(watcher, task_id).locator("[data-live=state]")).to_have_text(
        AFTER_APPROVAL, timeout=2_000
    )
    expect(watcher.locator("#toasts")).to_contain_text(
        "bob approved “open port 8443”", timeout=2_000
    )


def test_the_task_page_follows_a_decision_live(live_server: LiveServer, login: Login) -> None:
    task_id, digest = live_server.submit_task("trim the access log", "access_log: short\n")
    watcher = login("carol")
    watcher.goto(f"/tasks/{task_id}")
    expect(watcher.locator("#live-status")).to_have_text("live")
    watcher.get_by_label("Comment").fill("half-typed thoughts")
    with live_server.api("bob") as bob:
        assert bob.post(f"/approvals/{task_id}/approve", json={"digest": digest}).is_success
    expect(state_of(watcher)).to_have_text(AFTER_APPROVAL, timeout=2_000)
    expect(watcher.locator("#requirements-section")).to_contain_text(
        "any reviewer #1: bob", timeout=2_000
    )
    expect(watcher.locator("#reviews-section")).to_contain_text("bob approve")
    expect(watcher.get_by_label("Comment")).to_have_value("half-typed thoughts")  # untouched


def test_a_new_task_appears_in_the_queue_live(live_server: LiveServer, login: Login) -> None:
    watcher = login("bob")
    expect(watcher.locator("#live-status")).to_have_text("live")
    task_id, _ = live_server.submit_task("bump the base image", "image: debian:13\n")
    expect(row(watcher, task_id)).to_contain_text("bump the base image", timeout=2_000)


def test_keyboard_only_approval(live_server: LiveServer, login: Login) -> None:
    task_id, _ = live_server.submit_task("enable gzip", "gzip: on\n")
    page = login("bob")
    page.goto(f"/tasks/{task_id}")
    for _ in range(80):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        if focused == "Approve":
            break
    else:
        pytest.fail("Tab never reached the Approve button")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused button shows no focus ring"
    page.keyboard.press("Enter")
    expect(page.locator(".flash")).to_contain_text("You approved “enable gzip”")


def test_queue_shortcuts_approve_the_current_row(live_server: LiveServer, login: Login) -> None:
    task_id, _ = live_server.submit_task("zzz keyboard queue item", "k: 1\n")
    page = login("bob")
    page.goto("/?mine=1&sort=submitted&order=desc")
    expect(row(page, task_id)).to_be_visible()
    page.keyboard.press("j")  # the first row: the newest
    expect(row(page, task_id)).to_have_class(re.compile("current"))
    page.keyboard.press("a")
    expect(page.locator(f'#batch-results tr[data-task-id="{task_id}"]')).to_have_attribute(
        "data-result", "ok"
    )


def test_a_request_without_the_csrf_token_is_refused(live_server: LiveServer, login: Login) -> None:
    task_id, digest = live_server.submit_task("csrf target", "x: 1\n")
    page = login("bob")
    form = {"action": "approve", "digest": digest}
    forged = page.request.post(f"/tasks/{task_id}/decide", form=form)
    assert forged.status == 403
    assert "CSRF" in forged.text()
    wrong = page.request.post(f"/tasks/{task_id}/decide", form={**form, "csrf_token": "0" * 64})
    assert wrong.status == 403
    assert live_server.task(task_id)["state"] == "SUBMITTED"


def test_a_viewer_sees_no_decisions_and_cannot_forge_one(
    live_server: LiveServer, login: Login
) -> None:
    task_id, digest = live_server.submit_task("viewer target", "v: 1\n")
    page = login("vic")
    expect(row(page, task_id)).to_be_visible()
    expect(page.get_by_role("button", name="Approve selected")).to_have_count(0)
    expect(row(page, task_id).locator("input[type=checkbox]")).to_have_count(0)
    page.goto(f"/tasks/{task_id}")
    expect(page.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Locks")).to_be_visible()
    csrf = page.locator("body").get_attribute("data-csrf")
    forged = page.request.post(
        f"/tasks/{task_id}/decide",
        form={"action": "approve", "digest": digest, "csrf_token": csrf or ""},
    )
    assert forged.status == 403
    assert live_server.task(task_id)["state"] == "SUBMITTED"


def _hold_lock(live_server: LiveServer, resource: str) -> None:
    """A grant held by an agent session, left to its 30 s lease (the process 'went away')."""

    async def hold() -> None:
        client = await open_redis(live_server.redis_url)
        manager = LockManager(client, LockConfig(), domain=live_server.domain)
        try:
            await manager.acquire("e2e-task", "e2e-agent", {resource: Mode.EXCLUSIVE}, timeout=5)
        finally:
            await manager.close()
            await client.aclose()

    # Playwright's sync API runs an event loop in this thread: use another one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, hold()).result(timeout=30)


def test_an_admin_force_releases_a_lock(live_server: LiveServer, login: Login) -> None:
    _hold_lock(live_server, "db:orders")
    reviewer = login("bob")
    reviewer.goto("/locks")
    expect(reviewer.locator('tr[data-resource="db:orders"]')).to_be_visible()
    expect(reviewer.get_by_role("button", name="Force release")).to_have_count(0)
    page = login("admin")
    page.goto("/locks")
    lock_row = page.locator('tr[data-resource="db:orders"]')
    expect(lock_row).to_contain_text("e2e-agent")
    lock_row.get_by_placeholder("reason (audited)").fill("agent crashed, unblock the migration")
    lock_row.get_by_role("button", name="Force release").click()
    expect(page.locator(".flash")).to_contain_text("Force-released db:orders: 1 grant ended")
    page.goto("/audit?type=lock:force_released")
    expect(page.locator("table")).to_contain_text("agent crashed, unblock the migration")


def test_policies_delegations_and_audit_pages(live_server: LiveServer, login: Login) -> None:
    page = login("admin")
    page.goto("/policies")
    page.get_by_label("Policy document (JSON)").fill(
        '{"rules": [{"name": "bad", "risk_min": 300}]}'
    )
    page.get_by_role("button", name=re.compile("Save as version")).click()
    expect(page.locator("#policy-error")).to_contain_text("risk_min")
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluation")).to_contain_text("Eligible reviewers")
    page.goto("/delegations")
    page.get_by_label("Count the approvals of").select_option("carol")
    page.get_by_role("button", name="Create delegation").click()
    expect(page.locator(".flash")).to_contain_text("carol's approvals now also count as yours")
    page.get_by_role("button", name="Revoke").first.click()
    expect(page.locator(".flash")).to_contain_text("Delegation revoked")
    page.goto("/audit")
    expect(page.locator("#chain-status")).to_have_attribute("data-ok", "true")
    expect(page.locator("table")).to_contain_text("delegation:revoked")
