"""A WebSocket lasts no longer than the access it was opened with (revoked token, expired
token, disabled owner, dashboard logout: closed with 4401 within a few seconds), and
what a client may send over it is bounded (size 1009, rate and sockets 4429)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from conftest import run_ade
from livesrv import Live, StartLive, closed_with, recv
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from community_ade.auth import service as auth
from community_ade.auth import tokens
from community_ade.dashboard.security import csrf_token, load_secret
from community_ade.storage.models import ApiToken, utcnow

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)

# The periodic re-check, which alone sees expiry and other processes' revocations.
RECHECK = {"ws_auth_recheck_seconds": 0.3}
# Far beyond the test's patience: only the wake-up after a revoking commit in this process
# (the live server runs in the test's process) can close the socket in time.
EVENT_ONLY = {"ws_auth_recheck_seconds": 60}
PASSWORD = "a long enough passphrase"


async def new_token(live: Live, who: str, *, expires_in: float | None = None) -> str:
    async with live.runtime.sessions.begin() as session:
        expires = None if expires_in is None else utcnow() + timedelta(seconds=expires_in)
        plaintext, _ = await auth.create_token(
            session, name="ws", user_id=uuid.UUID(live.ids[who]), expires_at=expires
        )
    return plaintext


async def still_open(ws: ClientConnection) -> None:
    """The socket serves: a subscribe is answered by no close, and a ping arrives."""
    await ws.send(json.dumps({"kind": "subscribe", "topics": ["task"]}))
    assert (await recv(ws))["kind"] == "ping"


async def test_revoking_the_token_closes_its_socket_only(start_live: StartLive) -> None:
    live = await start_live(ws_ping_seconds=1.0, **EVENT_ONLY)
    doomed = await new_token(live, "vic")
    bearer = {"Authorization": f"Bearer {doomed}"}
    async with (
        connect(live.ws(), additional_headers=bearer) as ws,
        connect(live.ws(), additional_headers=live.as_("vic")) as other,
    ):
        assert (await recv(ws))["kind"] == "hello"
        assert (await recv(other))["kind"] == "hello"
        async with live.runtime.sessions.begin() as session:
            row = await session.scalar(
                select(ApiToken).where(ApiToken.token_hash == tokens.hash_token(doomed))
            )
            assert row is not None
            await auth.revoke_token(session, row.id)
        code, reason = await closed_with(ws)
        assert code == 4401
        assert "access ended" in reason
        await still_open(other)  # the same user's other token goes on


async def test_a_revocation_by_another_process_is_seen_by_the_periodic_check(
    start_live: StartLive, tmp_path: Path
) -> None:
    live = await start_live(**RECHECK)
    doomed = await new_token(live, "vic")
    async with connect(live.ws(token=doomed)) as ws:
        assert (await recv(ws))["kind"] == "hello"
        async with live.runtime.sessions.begin() as session:
            row = await session.scalar(
                select(ApiToken).where(ApiToken.token_hash == tokens.hash_token(doomed))
            )
            assert row is not None
        settings = live.server.settings
        env = {
            **os.environ,
            "ADE_DATA_DIR": str(tmp_path),
            "ADE_DATABASE_URL": str(settings.database_url),
            "ADE_REDIS_URL": str(settings.redis_url),
        }
        revoked = await asyncio.to_thread(run_ade, env, "tokens", "revoke", str(row.id))
        assert revoked.returncode == 0, revoked.stderr
        assert (await closed_with(ws))[0] == 4401  # the same user's other token goes on


async def test_an_expiring_token_closes_its_socket(start_live: StartLive) -> None:
    live = await start_live(**RECHECK)
    # Long enough for the handshake and hello on a loaded machine (parallel test workers).
    short = await new_token(live, "vic", expires_in=5)
    async with connect(live.ws(token=short)) as ws:
        assert (await recv(ws))["kind"] == "hello"
        assert (await closed_with(ws))[0] == 4401


async def test_disabling_the_user_closes_every_socket_of_theirs(start_live: StartLive) -> None:
    live = await start_live(**EVENT_ONLY)
    second = await new_token(live, "alice")
    async with (
        connect(live.ws(), additional_headers=live.as_("alice")) as first_ws,
        connect(live.ws(token=second)) as second_ws,
    ):
        for ws in (first_ws, second_ws):
            assert (await recv(ws))["kind"] == "hello"
        async with live.runtime.sessions.begin() as session:
            await auth.disable_user(session, uuid.UUID(live.ids["alice"]))
        assert (await closed_with(first_ws))[0] == 4401
        assert (await closed_with(second_ws))[0] == 4401


async def test_a_dashboard_logout_closes_the_dashboards_socket(start_live: StartLive) -> None:
    live = await start_live(**EVENT_ONLY)
    async with live.runtime.sessions.begin() as session:
        await auth.set_password(session, uuid.UUID(live.ids["bob"]), PASSWORD)
    async with httpx.AsyncClient(base_url=live.server.url) as browser:
        page = await browser.get("/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match
        form = {"username": "bob", "password": PASSWORD, "csrf_token": match.group(1)}
        assert (await browser.post("/login", data=form)).status_code == 303
        session_token = browser.cookies["ade_session"]
        host = live.server.url.removeprefix("http://")
        cookie = {"Cookie": f"ade_session={session_token}"}
        async with connect(live.ws(), additional_headers=cookie, origin=f"http://{host}") as ws:
            assert (await recv(ws))["kind"] == "hello"
            csrf = csrf_token(load_secret(live.server.settings), "session", session_token)
            logout = await browser.post("/logout", data={"csrf_token": csrf})
            assert logout.status_code == 303
            assert (await closed_with(ws))[0] == 4401


# -- what a client may send ----------------------------------------------------------------


async def test_a_message_too_big_closes_1009(start_live: StartLive) -> None:
    live = await start_live(ws_max_message_bytes=1024)
    async with connect(live.ws(), additional_headers=live.as_("vic")) as ws:
        await recv(ws)
        await ws.send(json.dumps({"kind": "pong", "pad": "x" * 2000}))
        assert (await closed_with(ws))[0] == 1009


async def test_a_flood_of_messages_closes_4429(start_live: StartLive) -> None:
    live = await start_live(ws_messages_per_minute=5)
    async with connect(live.ws(), additional_headers=live.as_("vic")) as ws:
        await recv(ws)
        for _ in range(6):
            await ws.send(json.dumps({"kind": "pong"}))
        code, reason = await closed_with(ws)
    assert code == 4429
    assert "more than 5 messages" in reason


async def test_one_principal_holds_a_bounded_number_of_sockets(start_live: StartLive) -> None:
    live = await start_live(ws_connections_per_principal=2)
    headers = live.as_("vic")
    async with (
        connect(live.ws(), additional_headers=headers) as one,
        connect(live.ws(), additional_headers=headers) as two,
    ):
        for ws in (one, two):
            await recv(ws)
        async with connect(live.ws(), additional_headers=headers) as three:
            code, reason = await closed_with(three)
        assert code == 4429
        assert "2 open WebSockets" in reason
        async with connect(live.ws(), additional_headers=live.as_("bob")) as others:
            assert (await recv(others))["kind"] == "hello"
