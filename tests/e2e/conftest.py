"""End-to-end fixtures: the real app served by uvicorn on a free port (real Redis, real
PostgreSQL), and Debian's Chromium driven by Python Playwright.

- ``live_server`` (session): a fresh database on ``ADE_TEST_DATABASE_URL``, people with
  passwords (and API tokens, to arrange tasks over HTTP), the app in a thread;
- ``browser`` (module) and ``login(who)`` (a logged-in page in a context of its own).
  A failed test leaves screenshots of its pages under ``test-artifacts/``.

Without a server (Redis, PostgreSQL) or without Chromium the tests skip on a laptop and
fail under ``CI=true``, like every other fixture here.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import (
    DEFAULT_DATABASE_URL,
    _fresh_postgres_database,
    _server_url,
    delete_domain_keys,
    unavailable,
)
from playwright.sync_api import Browser, Page, sync_playwright

from community_ade.api.app import create_app
from community_ade.auth import service as auth
from community_ade.infra.redis_client import open_redis
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage import db

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PEOPLE = {
    "admin": "admin",
    "alice": "submitter",
    "bob": "reviewer",
    "carol": "reviewer",
    "vic": "viewer",
}


def password_of(name: str) -> str:
    return f"{name}-e2e-password"


@dataclass
class LiveServer:
    url: str
    workspace: Path
    domain: str
    redis_url: str
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def api(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
            timeout=30,
        )

    def submit_task(
        self,
        title: str,
        content: str,
        *,
        who: str = "alice",
        path: str | None = None,
        resources: list[dict[str, Any]] | None = None,
    ) -> tuple[str, str]:
        """A files.write task, created and submitted: its id and preview digest. Each task
        writes its own file, so one task's apply never moves another's preconditions."""
        body = {
            "type": "files.write",
            "title": title,
            "payload": {
                "root": str(self.workspace),
                "changes": [
                    {
                        "path": path or f"{uuid.uuid4().hex[:8]}.yaml",
                        "action": "write",
                        "content": content,
                    }
                ],
            },
            "resources": resources or [],
        }
        with self.api(who) as client:
            created = client.post("/tasks", json=body)
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            submitted = client.post(f"/tasks/{task_id}/submit")
            assert submitted.status_code == 200, submitted.text
            return task_id, submitted.json()["preview_digest"]

    def task(self, task_id: str, who: str = "admin") -> dict[str, Any]:
        with self.api(who) as client:
            response = client.get(f"/tasks/{task_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body


def _database_server() -> str:
    return os.environ.get("ADE_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL


async def _prepare(settings: Settings, server: LiveServer) -> None:
    assert settings.database_url is not None
    engine = db.create_engine(settings.database_url)
    await db.upgrade(engine)
    await engine.dispose()
    async with Runtime.open(settings) as runtime, runtime.sessions.begin() as session:
        group = await auth.create_group(session, "sre")
        for name, role in PEOPLE.items():
            user = await auth.create_user(session, name, role, password=password_of(name))
            server.ids[name] = str(user.id)
            server.tokens[name], _ = await auth.create_token(session, name="e2e", user_id=user.id)
            if name == "carol":
                await auth.add_member(session, group.id, user.id)


async def _cleanup_redis(url: str, domain: str) -> None:
    client = await open_redis(url)
    try:
        await delete_domain_keys(client, domain)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    redis_url = _server_url()
    database_url, drop = asyncio.run(_fresh_postgres_database(_database_server()))
    data_dir = tmp_path_factory.mktemp("e2e")
    workspace = data_dir / "workspaces" / "e2e"
    workspace.mkdir(parents=True)
    domain = f"e2e-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        lock_domain=domain,
        workspace_roots=[data_dir / "workspaces"],
    )
    server = LiveServer(url="", workspace=workspace, domain=domain, redis_url=redis_url)
    asyncio.run(_prepare(settings, server))
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=uvicorn_server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the live server did not start", pytrace=False)
        time.sleep(0.05)
    port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)
        asyncio.run(drop())
        asyncio.run(_cleanup_redis(redis_url, domain))


# Per module, not per session: Playwright's sync API keeps an event loop running in this
# thread while it is started, and the async tests of other directories need it stopped.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


def log_in(page: Page, base_url: str, who: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Username").fill(who)
    page.get_by_label("Password").fill(password_of(who))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(rf"^{re.escape(base_url)}/(\?.*)?$"))


@pytest.fixture
def login(
    request: pytest.FixtureRequest, browser: Browser, live_server: LiveServer
) -> Iterator[Callable[[str], Page]]:
    """``login("bob")`` → a page of a fresh browser context, logged in as bob."""
    contexts = []
    pages: list[tuple[str, Page]] = []

    def open_as(who: str) -> Page:
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        log_in(page, live_server.url, who)
        pages.append((who, page))
        return page

    try:
        yield open_as
    finally:
        if request.node.stash.get(_FAILED, False):
            ARTIFACTS.mkdir(exist_ok=True)
            for i, (who, page) in enumerate(pages):
                page.screenshot(
                    path=ARTIFACTS / f"{request.node.name}-{i}-{who}.png", full_page=True
                )
        for context in contexts:
            context.close()
