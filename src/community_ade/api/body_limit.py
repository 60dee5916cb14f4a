"""Bound every request body before anything reads it (the outermost layer of the app).

A body larger than its route's limit is refused with 413 ``payload_too_large``: at once
when ``Content-Length`` announces it (nothing of the body is read), and otherwise (chunked
uploads, or a client that sends more than it announced) as soon as the bytes received
pass the limit. Every layer inside reads the body through the counting ``receive`` this
layer hands down, so none of them (``RejectNulMiddleware``, form parsing, JSON
validation, the dashboard's CSRF check) can be made to hold more than the limit, and no
authentication work is done for a body that is refused by its announced length.

After the 413 the server (uvicorn) discards whatever of the body the client still sends,
without keeping it, and the connection stays usable. It does not close at once: a client
that sends its whole body before reading the answer (most do) would then see a
connection reset instead of the 413.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from community_ade.api.errors import PayloadTooLarge, payload_too_large

# Routes whose bodies are small forms or documents: a login is a few hundred bytes, so
# there is no reason to accept the default's megabytes before checking a password.
FORM_BODY_BYTES = 16 * 1024
SMALL_BODY_BYTES = 64 * 1024
SMALL_BODY_ROUTES: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"/log(in|out)"), FORM_BODY_BYTES),
    # Token names and expiry, over the API and on the dashboard's agent pages.
    (re.compile(r"(/api/v1)?/agents/[^/]+/tokens(/.*)?"), FORM_BODY_BYTES),
    (re.compile(r"/api/v1/tokens(/.*)?"), FORM_BODY_BYTES),
    (re.compile(r"/auth/oidc/.*"), FORM_BODY_BYTES),  # GETs: a body has no business here
    (re.compile(r"/api/v1/(locks|leases)(/.*)?"), SMALL_BODY_BYTES),
)


def limit_for(path: str, default: int) -> int:
    """The most bytes a request body to ``path`` may have."""
    for pattern, limit in SMALL_BODY_ROUTES:
        if pattern.fullmatch(path):
            return min(limit, default)
    return default


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"], self.max_bytes)
        announced = _content_length(scope)
        if announced is not None and announced > limit:
            await payload_too_large(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except PayloadTooLarge:
            if started:  # too late for a 413: the server drops the connection
                raise
            await payload_too_large(limit)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None
