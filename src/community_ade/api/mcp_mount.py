"""``/mcp``: the MCP server (``mcp_gateway``) as streamable HTTP inside ``ade serve``.

The mount exists from the start, but the gateway needs the Runtime, which opens with
the app's lifespan: until it is bound, and after it is unbound, the endpoint answers
503. Before the MCP transport sees a request, two checks run here: a request from a
browser page (an ``Origin`` header) must come from this server's own origin (a page
elsewhere must not drive an agent's tools with a token it got hold of), and a request
without a Bearer token is answered 401 at once. The token itself is checked on every
MCP request by the gateway (an agent's token; revoked tokens stop at once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from community_ade.api.errors import problem
from community_ade.events.hub import Hub
from community_ade.mcp_gateway.server import Gateway
from community_ade.runtime import Runtime


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _same_origin(scope: Scope) -> bool:
    origin = _header(scope, b"origin")
    if origin is None:
        return True  # not a browser page: a CLI agent, an SDK
    host = _header(scope, b"host")
    return host is not None and urlsplit(origin).netloc == host


class McpEndpoint:
    """The ASGI app mounted at ``/mcp``."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    @contextlib.asynccontextmanager
    async def serving(self, runtime: Runtime, hub: Hub) -> AsyncIterator[Gateway]:
        """Bind a gateway over ``runtime`` while the block lasts (the app's lifespan)."""
        gateway = Gateway(runtime, hub=hub)
        app = gateway.server.streamable_http_app(
            streamable_http_path="/mcp",
            stateless_http=True,  # each request stands alone: the newest protocol's way
            json_response=True,
            # Origin is checked here (any host name may serve), the token by the gateway.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        # The session manager's task group must be entered and left by one task; the
        # app's lifespan may be entered by one and left by another (test clients do), so
        # a task of its own holds it.
        running, stop = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with gateway.server.session_manager.run():
                running.set()
                await stop.wait()

        holder = asyncio.create_task(hold(), name="ade-mcp-sessions")
        started = asyncio.create_task(running.wait())
        await asyncio.wait((holder, started), return_when=asyncio.FIRST_COMPLETED)
        if holder.done():  # it failed to start: say why
            started.cancel()
            holder.result()
        self.app = app
        try:
            yield gateway
        finally:
            self.app = None
            stop.set()
            await holder
            await gateway.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self.app is None:
            response = problem(503, "service_unavailable", "the MCP server is not running")
        elif not _same_origin(scope):
            response = problem(403, "forbidden", "cross-origin requests to /mcp are refused")
        elif not (_header(scope, b"authorization") or "").lower().startswith("bearer "):
            response = problem(
                401,
                "unauthenticated",
                "send an agent's API token as 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
