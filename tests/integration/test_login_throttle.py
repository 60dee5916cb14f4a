"""Dashboard login throttling (per account and per client address, in Redis): backoff
with Retry-After, one audit event per lockout, a notice after the next good login, and
unknown usernames treated exactly like known ones."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import unquote

import httpx
from conftest import Api

from community_ade.audit import log as audit
from community_ade.auth import service as auth

PASSWORD = "a long enough passphrase"
FREE = 5  # ADE_LOGIN_FREE_FAILURES_PER_ACCOUNT's default


async def set_password(api: Api, who: str) -> None:
    async with api.runtime.sessions.begin() as session:
        user = await auth.get_user_by_name(session, who)
        await auth.set_password(session, user.id, PASSWORD)


async def log_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text[:500]
    form = {"username": username, "password": password, "csrf_token": match.group(1)}
    return await client.post("/login", data=form)


def client_from(api: Api, address: str) -> httpx.AsyncClient:
    app = api.client._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://ade")


async def throttled_events(api: Api) -> list[dict[str, object]]:
    async with api.runtime.sessions.begin() as session:
        events = await audit.list_events(session, type="auth:login_throttled", limit=100)
    return [e.data for e in events]


async def test_failures_lock_the_account_then_the_right_password_works(api: Api) -> None:
    await set_password(api, "alice")
    async with client_from(api, "10.0.0.1") as browser:
        for _ in range(FREE):
            assert (await log_in(browser, "alice", "wrong password!!")).status_code == 401
        locked = await log_in(browser, "alice", PASSWORD)  # even the right one must wait
        assert locked.status_code == 429
        assert locked.headers["retry-after"] == "1"
        assert "Too many failed logins" in locked.text
        assert [e["locked"] for e in await throttled_events(api)] == [["account"]]
        await asyncio.sleep(1.1)
        welcome = await log_in(browser, "alice", PASSWORD)
        assert welcome.status_code == 303
        notice = unquote(welcome.cookies["ade_flash"])
        assert f"{FREE} failed login attempt(s)" in notice
        # The good login forgot the account's failures: the next mistake is free again.
        browser.cookies.delete("ade_session")
        assert (await log_in(browser, "alice", "wrong password!!")).status_code == 401


async def test_the_lock_is_per_account_not_for_everyone(api: Api) -> None:
    await set_password(api, "alice")
    await set_password(api, "bob")
    async with client_from(api, "10.0.0.2") as attacker, client_from(api, "10.0.0.3") as other:
        for _ in range(FREE):
            await log_in(attacker, "alice", "wrong password!!")
        assert (await log_in(attacker, "alice", PASSWORD)).status_code == 429
        # From another address the account is locked too; another account is not.
        assert (await log_in(other, "alice", PASSWORD)).status_code == 429
        assert (await log_in(other, "bob", PASSWORD)).status_code == 303


async def test_an_address_guessing_many_accounts_is_throttled(api: Api) -> None:
    await set_password(api, "bob")
    free_per_address = api.runtime.settings.login_free_failures_per_address
    async with client_from(api, "10.0.0.4") as sprayer, client_from(api, "10.0.0.5") as bob:
        for i in range(free_per_address):
            assert (await log_in(sprayer, f"user{i}", "guess guess guess")).status_code == 401
        assert (await log_in(sprayer, "bob", PASSWORD)).status_code == 429
        assert (await log_in(bob, "bob", PASSWORD)).status_code == 303
    assert [e["locked"] for e in await throttled_events(api)] == [["address"]]


async def test_unknown_usernames_are_throttled_exactly_like_known_ones(api: Api) -> None:
    await set_password(api, "carol")

    async def attempts(username: str, address: str) -> list[tuple[int, str | None, str]]:
        seen = []
        async with client_from(api, address) as browser:
            for _ in range(FREE + 1):
                response = await log_in(browser, username, "wrong password!!")
                error = re.search(r'role="alert">([^<]*)<', response.text)
                seen.append(
                    (
                        response.status_code,
                        response.headers.get("retry-after"),
                        error.group(1) if error else "",
                    )
                )
        return seen

    known = await attempts("carol", "10.0.0.6")
    unknown = await attempts("nobody-here", "10.0.0.7")
    assert known == unknown
    assert [status for status, _, _ in known] == [401] * FREE + [429]
