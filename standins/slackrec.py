"""A local stand-in for Slack's Web API (Slack itself is outside this machine): a real
HTTP server that records every call the real ``slack_sdk`` client makes and answers as
Slack does; and interactivity requests signed exactly as Slack signs them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    token: str
    answer: dict[str, Any]
    at: float  # time.time() when the call had been read


@dataclass
class SlackRecorder:
    """Answers chat.postMessage (a DM to a user id lands in a D… channel), chat.update,
    chat.postEphemeral, views.open, users.info and users.lookupByEmail from ``members``
    (Slack user id → e-mail)."""

    members: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params |= await request.json()
        elif request.can_read_body:
            params |= dict(await request.post())
        at = time.time()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        answer = self._answer(method, params)
        self.calls.append(Call(method, params, token, answer, at))
        return web.json_response(answer)

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "chat.postMessage":
            channel = str(params["channel"])
            if channel.startswith("U"):
                channel = "D" + channel[1:]
            return {"ok": True, "channel": channel, "ts": f"1700000000.{next(self._ts):06d}"}
        if method == "views.open" and params.get("trigger_id") == "trigger-expired":
            return {"ok": False, "error": "expired_trigger_id"}
        if method in ("chat.update", "chat.postEphemeral", "views.open"):
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
        if method == "users.info":
            user = str(params.get("user"))
            if user not in self.members:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {"id": user, "profile": {"email": self.members[user]}}}
        if method == "users.lookupByEmail":
            for user, email in self.members.items():
                if email == params.get("email"):
                    return {"ok": True, "user": {"id": user}}
            return {"ok": False, "error": "users_not_found"}
        return {"ok": False, "error": "unknown_method"}

    def named(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 20.0) -> list[Call]:
        """The calls of ``method`` once there are ``count`` of them (a deadline for a
        background poster, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while len(self.named(method)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} {method} call(s): {self.calls}")
            await asyncio.sleep(0.02)
        return self.named(method)


def signed(
    secret: str, payload: dict[str, Any], *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A form-encoded ``payload=`` interaction signed as Slack signs it (``v0:`` basestring,
    HMAC-SHA256 with the signing secret)."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def button_click(
    user: str, action_id: str, value: str, *, channel: str, message_ts: str, action_ts: str
) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack sends it for a button in a message."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "deprecated-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"trigger-{action_ts}",
        "team": {"id": "T0TEAM", "domain": "example"},
        "channel": {"id": channel, "name": "reviews"},
        "message": {"type": "message", "ts": message_ts},
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "ade_decision",
                "value": value,
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }
