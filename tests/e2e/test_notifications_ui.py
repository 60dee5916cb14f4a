"""'Waiting on me' in a real browser: the count in the page title follows the live
events, a new task waiting on the visitor raises a browser notification (Notification
API, permission granted in the context), the permission is asked only from a button,
and turning the dashboard channel off stops the notifications."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from e2e.conftest import LiveServer, log_in

pytestmark = pytest.mark.slow

# Records each notification the page raises and each permission request, then does
# them for real.
RECORD_NOTIFICATIONS = """
window.__notifications = [];
window.__permissionRequests = 0;
if ("Notification" in window) {
  const Real = window.Notification;
  const ask = Real.requestPermission.bind(Real);
  Real.requestPermission = (...args) => {
    window.__permissionRequests += 1;
    return ask(...args);
  };
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({ title, body: (options || {}).body, tag: (options || {}).tag });
    }
  };
}
"""
PREFS = "/users/me/notification-preferences"


@pytest.fixture
def contexts(browser: Browser, live_server: LiveServer) -> Iterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def open_page(
    browser: Browser, live_server: LiveServer, contexts: list[BrowserContext], *, granted: bool
) -> Page:
    context = browser.new_context(
        base_url=live_server.url, permissions=["notifications"] if granted else []
    )
    context.set_default_timeout(10_000)
    context.add_init_script(RECORD_NOTIFICATIONS)
    contexts.append(context)
    page = context.new_page()
    log_in(page, live_server.url, "bob")
    expect(page.locator("#live-status")).to_have_text("live")
    return page


def waiting(page: Page) -> int:
    count: int = page.request.get("/live/waiting").json()["count"]
    return count


def titled(count: int) -> re.Pattern[str]:
    return re.compile(rf"^\({count}\) Review queue" if count else r"^Review queue")


def test_the_title_counts_and_a_new_task_raises_a_notification(
    browser: Browser, live_server: LiveServer, contexts: list[BrowserContext]
) -> None:
    page = open_page(browser, live_server, contexts, granted=True)
    before = waiting(page)
    expect(page).to_have_title(titled(before))
    expect(page.locator("#allow-notifications")).to_be_hidden()  # already granted

    task_id, digest = live_server.submit_task("rotate the TLS keys", "tls: rotate\n")
    expect(page).to_have_title(titled(before + 1), timeout=5_000)
    page.wait_for_function("window.__notifications.length > 0")
    [note] = page.evaluate("window.__notifications")
    assert note == {
        "title": "A task waits on your review",
        "body": "rotate the TLS keys",
        "tag": f"ade-task-{task_id}",
    }

    # Decided elsewhere: the count goes down again, live.
    with live_server.api("carol") as carol:
        assert carol.post(f"/approvals/{task_id}/approve", json={"digest": digest}).is_success
    expect(page).to_have_title(titled(before), timeout=5_000)

    # A task bob submitted himself never waits on him: no notification, same count.
    live_server.submit_task("bob's own change", "own: true\n", who="bob")
    with live_server.api("alice") as alice:
        assert alice.get("/tasks").is_success
    page.wait_for_timeout(1_000)
    assert len(page.evaluate("window.__notifications")) == 1
    expect(page).to_have_title(titled(waiting(page)))


def test_the_dashboard_channel_off_means_no_notification(
    browser: Browser, live_server: LiveServer, contexts: list[BrowserContext]
) -> None:
    page = open_page(browser, live_server, contexts, granted=True)
    with live_server.api("bob") as bob:
        assert bob.put(PREFS, json={"channels": ["email"]}).is_success
        try:
            before = waiting(page)
            live_server.submit_task("grow the cache", "cache: 2g\n")
            expect(page).to_have_title(titled(before + 1), timeout=5_000)  # still counted
            page.wait_for_timeout(500)
            assert page.evaluate("window.__notifications") == []
        finally:
            assert bob.put(PREFS, json={}).is_success


def test_permission_is_never_asked_without_a_click(
    browser: Browser, live_server: LiveServer, contexts: list[BrowserContext]
) -> None:
    page = open_page(browser, live_server, contexts, granted=False)
    before = waiting(page)
    live_server.submit_task("shrink the pool", "pool: 4\n")
    expect(page).to_have_title(titled(before + 1), timeout=5_000)
    page.wait_for_timeout(500)
    assert page.evaluate("window.__notifications") == []  # not allowed: none raised
    assert page.evaluate("window.__permissionRequests") == 0  # and never asked unprompted
    allow = page.locator("#allow-notifications")
    if page.evaluate("Notification.permission") == "default":
        allow.click()  # a user gesture: the only way the page asks
        assert page.evaluate("window.__permissionRequests") == 1
    else:  # headless Chromium answers "denied" before anyone asks: nothing to offer
        expect(allow).to_be_hidden()
