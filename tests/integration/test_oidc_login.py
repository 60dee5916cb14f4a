"""Sign-in with a real OpenID provider (npm ``oidc-provider``, started by the test):
first login creates the user with mapped role and groups, a group change at the provider
is synced at the next login, step-up sends a stale login back through the provider,
logout ends the session, and another issuer's answer is refused.

The person's browser is ``oidc_idp.Browser``: plain HTTP, cookies per site, the
provider's real login form submitted."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import Api
from joserfc.errors import JoseError
from oidc_idp import CLIENT_ID, CLIENT_SECRET, Browser, Provider, run_provider
from sqlalchemy import select

from community_ade.audit import log as audit
from community_ade.auth import service as auth
from community_ade.dashboard.views.oidc import client_of
from community_ade.storage.models import Review, User

CALLBACK = "http://ade/auth/oidc/callback"
DANA = {
    "name": "Dana Scully",
    "preferred_username": "Dana",
    "email": "dana@example.com",
    "groups": ["dba", "ade-reviewers"],
}
FRESH_SECONDS = 5


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    with run_provider(tmp_path, CALLBACK, {"dana": DANA}) as idp:
        yield idp


@pytest.fixture
def api_settings(provider: Provider) -> dict[str, Any]:
    return {
        "oidc_issuer": provider.issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_scopes": "openid profile email groups",
        "oidc_group_map": {"dba": "db-owners", "release": "release-managers"},
        "oidc_role_map": {"ade-reviewers": "reviewer", "ade-admins": "admin"},
        "oidc_display_name": "Test IdP",
    }


@pytest.fixture
async def browser(api: Api, provider: Provider) -> AsyncIterator[Browser]:
    # Its own cookie jar on the app: the `api` client's stays free of sessions.
    app = httpx.AsyncClient(transport=api.client._transport, base_url="http://ade")
    person = Browser(app, provider)
    yield person
    await person.aclose()
    await app.aclose()


async def _user(api: Api, name: str) -> tuple[User, frozenset[str]]:
    async with api.runtime.sessions() as session:
        user = await auth.get_user_by_name(session, name)
        return user, await auth.groups_of(session, user.id)


async def _events(api: Api, type: str) -> list[dict[str, Any]]:
    """The data of the audit events of ``type``, oldest first."""
    async with api.runtime.sessions() as session:
        return [e.data for e in reversed(await audit.list_events(session, type=type))]


def _csrf(page: httpx.Response) -> str:
    match = re.search(r'data-csrf="([0-9a-f]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


async def test_first_login_creates_the_user_with_mapped_role_and_groups(
    api: Api, browser: Browser
) -> None:
    page = await browser.get("/login", login="dana")
    assert "Sign in with Test IdP" in page.text
    page = await browser.get("/auth/oidc/login?next=/tasks", login="dana")
    assert page.status_code == 200, page.text
    assert urlparse(str(page.url)).path == "/tasks"

    user, groups = await _user(api, "dana")  # the name case-folded, as every name here
    assert user.role == "reviewer"
    assert user.display_name == "Dana Scully"
    assert groups == {"db-owners"}  # "ade-reviewers" maps to a role only
    assert user.oidc_subject == "dana"
    assert user.oidc_issuer == browser.provider.issuer
    assert await _events(api, "auth:user_created")
    logins = await _events(api, "auth:login")
    assert logins[-1] == {"method": "oidc", "issuer": browser.provider.issuer}


async def test_group_change_at_the_provider_is_synced_at_the_next_login(
    api: Api, browser: Browser, provider: Provider
) -> None:
    await browser.get("/auth/oidc/login", login="dana")
    provider.set_accounts({"dana": {**DANA, "groups": ["ade-admins", "release", "x"]}})
    await browser.get("/auth/oidc/login", login="dana")

    user, groups = await _user(api, "dana")
    assert groups == {"release-managers"}  # created on the way; "x" is not mapped
    assert user.role == "admin"
    changes = await _events(api, "auth:groups_changed")
    assert changes[-1]["added"] == ["release-managers"]
    assert changes[-1]["removed"] == ["db-owners"]
    roles = await _events(api, "auth:role_changed")
    assert roles[-1]["from"] == "reviewer"
    assert roles[-1]["to"] == "admin"


async def test_logout_ends_the_session(browser: Browser) -> None:
    page = await browser.get("/auth/oidc/login?next=/tasks", login="dana")
    logout = await browser.app.post("/logout", data={"csrf_token": _csrf(page)})
    assert logout.status_code == 303
    again = await browser.app.get("/tasks")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/login")


async def _submitted_task(api: Api) -> tuple[str, str]:
    body = {
        "type": "files.write",
        "title": "turn on debug",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
        },
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }
    created = await api.client.post("/api/v1/tasks", json=body, headers=api.as_("alice"))
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    submitted = await api.client.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))
    assert submitted.status_code == 200, submitted.text
    return task_id, submitted.json()["preview_digest"]


async def test_step_up_sends_a_stale_login_through_the_provider_again(
    api: Api, browser: Browser
) -> None:
    rule = {
        "name": "fresh login for everything",
        "task_types": ["*"],
        "risk_min": 0,
        "groups": [{"group": "db-owners"}],
        "fresh_auth_seconds": FRESH_SECONDS,
    }
    stored = await api.client.put(
        "/api/v1/policies", json={"rules": [rule]}, headers=api.as_("admin")
    )
    assert stored.status_code == 200, stored.text
    await browser.get("/auth/oidc/login", login="dana")  # dana joins db-owners
    task_id, digest = await _submitted_task(api)

    # An API token carries no login: refused with a problem naming the age wanted.
    refused = await api.client.post(
        f"/api/v1/approvals/{task_id}/approve",
        json={"digest": digest},
        headers=api.as_("bob"),
    )
    assert refused.status_code == 401, refused.text
    assert refused.json()["type"] == "fresh_auth_required"
    assert refused.json()["max_age"] == FRESH_SECONDS
    assert "insufficient_user_authentication" in refused.headers["www-authenticate"]

    await asyncio.sleep(FRESH_SECONDS + 1.5)  # dana's login is now too old
    page = await browser.app.get(f"/tasks/{task_id}")
    decision = {"csrf_token": _csrf(page), "action": "approve", "digest": digest}
    sent = await browser.app.post(f"/tasks/{task_id}/decide", data=decision)
    assert sent.status_code == 303
    assert sent.headers["location"] == (
        f"/auth/oidc/login?next=/tasks/{task_id}&max_age={FRESH_SECONDS}"
    )
    async with api.runtime.sessions() as session:
        assert not list(
            await session.scalars(select(Review).where(Review.task_id == uuid.UUID(task_id)))
        )

    # Through the provider again (it asks for the password again: prompt=login), back
    # to the decision form, and this time the decision is recorded.
    page = await browser.follow(sent, login="dana")
    assert urlparse(str(page.url)).path == f"/tasks/{task_id}", page.text
    decision["csrf_token"] = _csrf(page)  # a new session, a new CSRF token
    done = await browser.app.post(f"/tasks/{task_id}/decide", data=decision)
    assert done.status_code == 303
    assert done.headers["location"] == f"/tasks/{task_id}"
    async with api.runtime.sessions() as session:
        votes = list(
            await session.scalars(select(Review).where(Review.task_id == uuid.UUID(task_id)))
        )
    dana, _ = await _user(api, "dana")
    assert [(v.actor_id, v.decision) for v in votes] == [(dana.id, "approve")]


@pytest.fixture
def other_provider(tmp_path: Path) -> Iterator[Provider]:
    with run_provider(tmp_path, CALLBACK, {"dana": DANA}) as idp:
        yield idp


def _flow(browser: Browser) -> dict[str, Any]:
    """What the app keeps in the browser between the redirect and the callback."""
    sealed = browser.app.cookies.get("ade_oidc", path="/auth/oidc")
    assert sealed is not None
    flow: dict[str, Any] = json.loads(base64.urlsafe_b64decode(sealed.rpartition(".")[0]))
    return next(iter(flow["session"].values()))["data"]  # type: ignore[no-any-return]


async def test_an_answer_from_another_issuer_is_refused(
    api: Api, browser: Browser, provider: Provider, other_provider: Provider
) -> None:
    # The app sends dana to its provider; the answer comes from another one instead.
    start = await browser.app.get("/auth/oidc/login")
    authorize = start.headers["location"]
    assert authorize.startswith(provider.issuer)
    elsewhere = await browser.idp.get(authorize.replace(provider.issuer, other_provider.issuer))
    back = await browser.follow_provider_only(elsewhere, "dana", other_provider.issuer)
    code = parse_qs(urlparse(back).query)["code"][0]

    # Its ID token (fetched with the flow's PKCE verifier) fails the app's validation...
    flow = _flow(browser)
    token = await browser.idp.post(
        f"{other_provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": flow["code_verifier"],
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert token.status_code == 200, token.text
    assert "id_token" in token.json()
    client = client_of(_app_request(api))
    # Signed with a key the app's provider never published.
    with pytest.raises(JoseError):
        await client.parse_id_token(token.json(), nonce=flow["nonce"])

    # ...and the callback carrying its code signs nobody in.
    page = await browser.app.get(back)
    assert page.status_code == 401, page.text
    async with api.runtime.sessions() as session:
        assert await session.scalar(select(User).where(User.username == "dana")) is None


class _AppRequest:
    def __init__(self, app: Any) -> None:
        self.app = app


def _app_request(api: Api) -> Any:
    """What ``client_of`` reads of a request: the app (with its settings)."""
    transport = api.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return _AppRequest(transport.app)
