"""Refuse NUL characters anywhere in a request, before any handler sees them.

No column of ours may hold U+0000 (PostgreSQL's text and JSONB refuse it outright, and
the audit chain forbids it), so a request carrying one — in the query, the path or the
JSON body, raw or escaped as ``\\u0000`` — gets one clear 422 instead of a failure deep
in a transaction.

It reads the whole body before the handler does, so it must sit inside
``BodyLimitMiddleware`` (``api/app.py`` adds it first): the ``receive`` it reads from
refuses a body past the route's limit, so it never holds more than that.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from community_ade.api.errors import problem


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class RejectNulMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")) or "\x00" in scope["path"]:
            await self._refuse(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if b"\x00" in body or (b"\\u0000" in body and _json_has_nul(body)):
            await self._refuse(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            422, "validation_failed", "the request contains a NUL character (U+0000)"
        )
        await response(scope, receive, send)


def _json_has_nul(body: bytes) -> bool:
    try:
        return _has_nul(json.loads(body))
    except ValueError:
        return False  # not JSON: the handler's own validation answers
