"""The agent pages in Chromium: the wizard (with refused input), the configuration panel
(a new version, diff, revert), the list/grid toggle, and a live card going offline when
its agent process dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import LiveServer

Login = Callable[[str], Page]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def make_agent(live_server: LiveServer, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "model": "gpt-4o", "tools": ["files.read"], **fields}
    with live_server.api("alice") as client:
        response = client.post("/agents", json=body)
        assert response.status_code == 201, response.text
        agent: dict[str, Any] = response.json()
        return agent


def test_create_through_the_wizard_refusing_bad_input(
    live_server: LiveServer, login: Login
) -> None:
    page = login("alice")
    page.goto("/agents/new")
    name = unique("wizard-bot")

    page.get_by_label("Name").fill("ab")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Name must be 3 to 100 characters")).to_be_visible()
    expect(page.get_by_role("group", name="1. Basic info")).to_be_visible()  # still on step 1

    page.get_by_label("Name").fill(name)
    page.get_by_label("Tags (comma-separated)").fill("e2e, wizard")
    page.get_by_role("button", name="Next").click()

    page.get_by_label("Model").select_option("gpt-4o")
    page.locator("#f-temperature").fill("3")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Temperature must be between 0 and 2")).to_be_visible()
    page.locator("#f-temperature").fill("1.5")
    expect(page.get_by_label("Temperature slider")).to_have_value("1.5")  # slider follows
    page.get_by_role("button", name="Next").click()

    tools = page.get_by_role("group", name="3. Tools")
    expect(tools).to_be_visible()
    expect(page.get_by_role("checkbox", name=re.compile("^Read files"))).to_be_checked()  # base
    expect(page.get_by_role("checkbox", name=re.compile("^Shell"))).not_to_be_checked()
    page.get_by_label("Search tools").fill("shell")
    expect(page.get_by_role("checkbox", name=re.compile("^Read files"))).to_be_hidden()
    page.get_by_role("checkbox", name=re.compile("^Shell")).check()
    page.get_by_label("Search tools").fill("")
    page.get_by_role("button", name="Next").click()

    page.get_by_label("Start from a preset").select_option(label="Careful reviewer")
    prompt = page.get_by_label("System prompt")
    expect(prompt).to_have_value(re.compile("^You review proposed changes"))
    count = len(prompt.input_value())
    expect(page.locator("#f-prompt-count")).to_have_text(str(count))

    page.get_by_role("button", name="Back").click()  # back and next keep what was entered
    page.get_by_role("button", name="Back").click()
    page.get_by_role("button", name="Back").click()
    expect(page.locator("#f-temperature")).to_have_value("1.5")
    for _ in range(3):
        page.get_by_role("button", name="Next").click()
    expect(prompt).to_have_value(re.compile("^You review proposed changes"))
    page.get_by_role("button", name="Next").click()

    review = page.locator("#review")
    expect(review).to_contain_text(name)
    expect(review).to_contain_text("1.5")
    expect(review).to_contain_text("shell")
    page.get_by_role("button", name="Create agent").click()

    page.wait_for_url(re.compile(r"/agents/[0-9a-f-]{36}$"))
    expect(page.get_by_role("status").filter(has_text=f"Created agent {name}")).to_be_visible()
    with live_server.api("vic") as client:
        (created,) = client.get("/agents", params={"q": name}).json()["items"]
    assert created["parameters"]["temperature"] == 1.5
    assert set(created["tools"]) >= {"files.read", "shell"}
    assert created["tags"] == ["e2e", "wizard"]


def test_a_refused_creation_shows_the_servers_reason(live_server: LiveServer, login: Login) -> None:
    taken = make_agent(live_server, unique("taken"))["name"]
    page = login("alice")
    page.goto("/agents/new")
    page.get_by_label("Name").fill(taken)
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Model").select_option("gpt-4o")
    for _ in range(3):
        page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Create agent").click()

    alert = page.get_by_role("alert").filter(has_text="The agent was not created")
    expect(alert).to_contain_text(f"an agent named '{taken}' already exists")
    expect(page.get_by_role("group", name="1. Basic info")).to_be_visible()  # its step
    expect(page.get_by_label("Name")).to_have_value(taken)  # entries kept
    expect(page.get_by_label("Model")).to_have_value("gpt-4o")


def test_edit_parameters_makes_a_version_then_revert(live_server: LiveServer, login: Login) -> None:
    agent = make_agent(live_server, unique("tuned"), parameters={"temperature": 0.7})
    page = login("alice")
    page.goto(f"/agents/{agent['id']}")
    page.locator("#f-temperature").fill("1.2")
    page.get_by_label("Comment for this version").fill("warmer")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_role("status").filter(has_text="Saved version 2.")).to_be_visible()
    versions = page.locator("tr[data-version]")
    expect(versions).to_have_count(2)
    expect(page.locator("tr[data-version='2']")).to_contain_text("warmer")

    page.locator("tr[data-version='2']").get_by_role("link", name="diff").click()
    change = page.locator("tr[data-field='parameters.temperature']")
    expect(change).to_contain_text("0.7")
    expect(change).to_contain_text("1.2")

    page.get_by_role("button", name="Revert to version 1").click()
    expect(page.get_by_role("status").filter(has_text="now version 3")).to_be_visible()
    expect(page.locator("#f-temperature")).to_have_value("0.7")
    expect(versions).to_have_count(3)


def test_out_of_range_edits_are_refused_in_the_panel(live_server: LiveServer, login: Login) -> None:
    agent = make_agent(live_server, unique("guarded"))
    page = login("alice")
    page.goto(f"/agents/{agent['id']}")
    page.locator("#f-top_p").fill("1.5")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_text("Top p must be between 0 and 1")).to_be_visible()
    with live_server.api("vic") as client:
        assert client.get(f"/agents/{agent['id']}").json()["config_version"] == 1


def test_grid_and_list_toggle_is_remembered(live_server: LiveServer, login: Login) -> None:
    make_agent(live_server, unique("toggled"))
    page = login("vic")
    page.goto("/agents")
    cards = page.locator("#agent-cards")
    expect(cards).to_have_class(re.compile(r"\bview-grid\b"))
    page.get_by_role("button", name="List").click()
    expect(cards).to_have_class(re.compile(r"\bview-list\b"))
    expect(page.get_by_role("button", name="List")).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(cards).to_have_class(re.compile(r"\bview-list\b"))
    page.get_by_role("button", name="Grid").click()
    page.reload()
    expect(cards).to_have_class(re.compile(r"\bview-grid\b"))


def test_search_and_filters(live_server: LiveServer, login: Login) -> None:
    tag = unique("tag")
    mine = make_agent(live_server, unique("findme"), tags=[tag])
    make_agent(live_server, unique("other"))
    page = login("vic")
    page.goto("/agents")
    page.get_by_label("Tag").select_option(tag)
    page.get_by_role("button", name="Apply").click()
    cards = page.locator("[data-agent-id]")
    expect(cards).to_have_count(1)
    expect(cards).to_contain_text(mine["name"])
    page.get_by_label("Tag").select_option("")
    page.get_by_role("searchbox", name="Search").fill("no-such-agent-anywhere")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("No agent matches these filters.")).to_be_visible()


@pytest.fixture
def agent_process(live_server: LiveServer) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """``start(token)``: ``ade agents run`` holding a 2 s lease, killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(token: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "ADE_AGENT_TOKEN": token}
        command = [sys.executable, "-m", "community_ade", "agents", "run"]
        process = subprocess.Popen(
            [*command, "--server", live_server.url, "--lease-seconds", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def test_a_dead_agent_process_turns_its_card_offline_within_the_lease(
    live_server: LiveServer, login: Login, agent_process: Callable[[str], Any]
) -> None:
    name = unique("worker")
    agent = make_agent(live_server, name)
    with live_server.api("alice") as client:
        issued = client.post(f"/agents/{agent['id']}/tokens", json={"name": "e2e"})
        assert issued.status_code == 201, issued.text
    page = login("vic")
    page.goto(f"/agents?q={name}")
    status = page.locator(f"[data-agent-id='{agent['id']}'] [data-live='agent-status']")
    expect(status).to_have_text("offline")

    process = agent_process(issued.json()["token"])
    expect(status).to_have_text("online", timeout=15_000)  # live, without a reload
    process.send_signal(signal.SIGKILL)  # dies without closing its lease
    process.wait(timeout=10)
    # The 2 s lease lapses; the card follows within the health interval (5 s).
    expect(status).to_have_text("offline", timeout=15_000)


def test_tokens_are_shown_once_and_revoked(live_server: LiveServer, login: Login) -> None:
    agent = make_agent(live_server, unique("keyed"))
    page = login("alice")
    page.goto(f"/agents/{agent['id']}")
    page.get_by_label("Token name").fill("worker-1")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").inner_text()
    with httpx.Client(base_url=f"{live_server.url}/api/v1") as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get(f"/agents/{agent['id']}", headers=headers).status_code == 200
        page.goto(f"/agents/{agent['id']}")
        expect(page.locator("#new-token")).to_have_count(0)  # never shown again
        page.get_by_role("button", name="Revoke token worker-1").click()
        expect(page.get_by_role("status").filter(has_text="Revoked token worker-1")).to_be_visible()
        assert client.get(f"/agents/{agent['id']}", headers=headers).status_code == 401


def test_a_new_agent_appears_in_the_list_live(live_server: LiveServer, login: Login) -> None:
    page = login("vic")
    page.goto("/agents")
    expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
    name = unique("arrives")
    agent = make_agent(live_server, name)
    card = page.locator(f"[data-agent-id='{agent['id']}']")
    expect(card).to_contain_text(name, timeout=10_000)  # over the WebSocket, no reload
