"""A real HTTP server for tests that need one (WebSocket clients, a browser): uvicorn on
a free loopback port, in a thread with its own event loop (a pytest plugin of
``tests/conftest.py``).

    with serve(settings) as server:
        server.url      # http://127.0.0.1:PORT
        server.ws_url   # ws://127.0.0.1:PORT

The fixture ``start_live`` serves the app on the test's database and Redis with the users
of ``conftest.ROLES``: ``live = await start_live(**settings)``. Its Redis is the
``backend`` fixture's; narrow that to the standalone server in a test module with
``pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)``. The lock
domain (and so the events stream's keys) is the test's own, deleted afterwards.

The app's Runtime lives on the server's loop; a test talks to the same database and
Redis through a Runtime of its own (``live.runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import uvicorn
from conftest import ROLES, Backend
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from community_ade.api.app import create_app
from community_ade.auth import service as auth
from community_ade.infra.redis_client import AnyRedis
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage import db

STARTUP_SECONDS = 30.0
WAIT = 10.0  # the longest a WebSocket test waits for one frame


@dataclass(frozen=True)
class LiveServer:
    url: str
    settings: Settings

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[LiveServer]:
    """Serve ``create_app(settings)`` until the block ends; fail if it does not start."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="live-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start (see its log above)")
            time.sleep(0.02)
        yield LiveServer(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
        # A server still running would go on holding connections (on SQLite, maybe the
        # write lock) under whatever the test does next: say so instead.
        if thread.is_alive():
            raise RuntimeError("the live server did not stop within 30 s")


@dataclass
class Live:
    server: LiveServer
    runtime: Runtime  # the test's own, on the test's event loop; same database and Redis
    tokens: dict[str, str]
    ids: dict[str, str]

    def ws(self, **query: Any) -> str:
        """The WebSocket URL with a query (``None`` values left out)."""
        params = urlencode({k: v for k, v in query.items() if v is not None})
        return f"{self.server.ws_url}/api/v1/ws" + (f"?{params}" if params else "")

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


StartLive = Callable[..., Awaitable[Live]]


@pytest.fixture
async def start_live(
    database_url: str, tmp_path: Path, backend: Backend, redis_client: AnyRedis, domain: str
) -> AsyncIterator[StartLive]:
    """``await start_live(**settings)`` → a served app with users ``ROLES`` and tokens."""
    engine = db.create_engine(database_url)
    await db.upgrade(engine)
    await engine.dispose()
    tokens: dict[str, str] = {}
    ids: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Live:
            settings = Settings(
                data_dir=tmp_path,
                database_url=database_url,
                redis_url=backend.url,
                lock_domain=domain,
                **{"events_poll_seconds": 0.05, **overrides},
            )
            runtime = await stack.enter_async_context(Runtime.open(settings))
            if not ids:
                async with runtime.sessions.begin() as session:
                    for name, role in ROLES.items():
                        user = await auth.create_user(session, name, role)
                        ids[name] = str(user.id)
                        tokens[name], _ = await auth.create_token(
                            session, name="ws", user_id=user.id
                        )
            server = stack.enter_context(serve(settings))
            return Live(server, runtime, tokens, ids)

        yield start


async def recv(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
    """The next frame, decoded."""
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def _read_forever(ws: ClientConnection) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), WAIT)


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        await _read_forever(ws)
    assert info.value.rcvd is not None, "closed without a close frame"
    return info.value.rcvd.code, info.value.rcvd.reason
