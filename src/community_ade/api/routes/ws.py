"""``WS /api/v1/ws``: live events (docs/api.md, "Live events").

Refusals accept the handshake and close at once with a 44xx code and a reason: a close
sent before accepting becomes a bare HTTP 403, which a browser reports as 1006 with no
reason at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from urllib.parse import urlsplit

import redis
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from community_ade.auth import tokens
from community_ade.auth.principal import Permission, Principal, require
from community_ade.auth.service import authenticate_token
from community_ade.errors import (
    AdeError,
    Forbidden,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
)
from community_ade.events.envelope import (
    Filter,
    gap_frame,
    hello_frame,
    parse_client_message,
    parse_since,
    parse_subject,
    parse_topics,
    ping_frame,
)
from community_ade.events.hub import PAGE, Hub, Subscriber
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage.models import utcnow

router = APIRouter(tags=["events"])
log = logging.getLogger(__name__)

SESSION_COOKIE = "ade_session"
CLOSE_CODES = {
    "validation_failed": 4400,
    "unauthenticated": 4401,
    "forbidden": 4403,
    "rate_limited": 4429,  # too many messages, or too many sockets of one principal
    "message_too_big": 1009,
    "service_unavailable": 1013,  # try again later
}
MESSAGE_WINDOW_SECONDS = 60.0
# How long a close may wait for a client that does not read before the app lets go
# (uvicorn then closes the socket; its buffer is bounded by the transport's high-water mark).
CLOSE_WAIT_SECONDS = 10.0
# Reading an event requires reading its domain.
TOPIC_PERMISSIONS = {
    "task": Permission.TASK_READ,
    "approval": Permission.TASK_READ,
    "lock": Permission.LOCK_READ,
    "agent": Permission.AGENT_READ,
    "delegation": Permission.DELEGATION_READ,
    "policy": Permission.POLICY_READ,
    "audit": Permission.AUDIT_READ,
}


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return text.encode()[:123].decode(errors="ignore")


def _credentials(websocket: WebSocket) -> tuple[str, bool] | None:
    """The token offered, and whether it came from the session cookie."""
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    token = websocket.query_params.get("token", "").strip()
    if token:
        return token, False
    cookie = websocket.cookies.get(SESSION_COOKIE, "").strip()
    return (cookie, True) if cookie else None


def _check_origin(websocket: WebSocket) -> None:
    """A browser sends the cookie to any site's WebSocket: only our own pages may use it
    (cross-site WebSocket hijacking)."""
    origin = websocket.headers.get("origin", "")
    host = websocket.headers.get("host", "")
    if not origin or urlsplit(origin).netloc.lower() != host.lower():
        raise Forbidden("a WebSocket authenticated by the session cookie must come from this site")


class MessageTooBig(AdeError):
    code = "message_too_big"


class MessageBudget:
    """At most ``per_window`` client messages per window (fixed windows on a monotonic
    clock): a client may pong and resubscribe, not flood the server."""

    def __init__(self, per_window: int, window_seconds: float = MESSAGE_WINDOW_SECONDS) -> None:
        self.per_window = per_window
        self.window_seconds = window_seconds
        self.window_start: float | None = None
        self.spent = 0

    def spend(self, now: float) -> None:
        if self.window_start is None or now - self.window_start >= self.window_seconds:
            self.window_start, self.spent = now, 0
        self.spent += 1
        if self.spent > self.per_window:
            wait = math.ceil(self.window_start + self.window_seconds - now)
            raise RateLimited(
                f"more than {self.per_window} messages in {self.window_seconds:g} s",
                retry_after=max(1, wait),
            )


async def _authenticate(websocket: WebSocket, runtime: Runtime) -> tuple[Principal, str]:
    """The principal, and the hash of the token it authenticated with."""
    offered = _credentials(websocket)
    if offered is None:
        raise Unauthenticated(
            "send a token: 'Authorization: Bearer <token>', ?token=<token>, or log in"
        )
    token, by_cookie = offered
    if by_cookie:
        _check_origin(websocket)
    async with runtime.sessions.begin() as session:
        principal = await authenticate_token(session, token, now=utcnow())
    return principal, tokens.hash_token(token)


def _within_connection_cap(hub: Hub, principal: Principal, cap: int) -> None:
    if hub.count_of(principal.id) >= cap:
        raise RateLimited(
            f"{principal.name!r} already has {cap} open WebSockets on this server; close one",
            retry_after=1,
        )


def _authorize(principal: Principal, event_filter: Filter) -> None:
    for permission in {TOPIC_PERMISSIONS[topic] for topic in event_filter.topics}:
        require(principal, permission)


@router.websocket("/ws")
async def events(websocket: WebSocket) -> None:
    """Live events: hello, then every matching event (see docs/api.md)."""
    runtime: Runtime = websocket.app.state.runtime
    settings = runtime.settings
    hub: Hub = websocket.app.state.events_hub
    query = websocket.query_params
    try:
        principal, token_hash = await _authenticate(websocket, runtime)
        event_filter = Filter(
            parse_topics(query.get("topics")), parse_subject(query.get("subject"))
        )
        since = parse_since(query.get("since"))
        _authorize(principal, event_filter)
        _within_connection_cap(hub, principal, settings.ws_connections_per_principal)
    except AdeError as exc:
        await websocket.accept()
        await websocket.close(CLOSE_CODES.get(exc.code, 4400), _reason(exc.message))
        return
    await websocket.accept()
    subscriber = hub.subscribe(
        event_filter, settings.ws_client_buffer, principal_id=principal.id, token_hash=token_hash
    )
    client = _Client(websocket, hub, subscriber, principal)
    try:
        await client.serve(since, settings)
    finally:
        hub.unsubscribe(subscriber)


class _Client:
    """One connection: catch-up from ``since``, then live events, pings and messages."""

    def __init__(
        self, websocket: WebSocket, hub: Hub, subscriber: Subscriber, principal: Principal
    ) -> None:
        self.websocket = websocket
        self.hub = hub
        self.subscriber = subscriber
        self.principal = principal
        self.last_sent = 0

    async def serve(self, since: int | None, settings: Settings) -> None:
        try:
            await self._catch_up(since)
        except (redis.RedisError, ServiceUnavailable) as exc:
            await self._close(CLOSE_CODES["service_unavailable"], f"events unavailable: {exc}")
            return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        tasks = {
            asyncio.create_task(self._send_live()),
            asyncio.create_task(
                self._receive(
                    settings.ws_max_message_bytes, MessageBudget(settings.ws_messages_per_minute)
                )
            ),
            asyncio.create_task(self._ping(settings.ws_ping_seconds)),
            asyncio.create_task(self.subscriber.cut_off.wait()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.subscriber.cut_off.is_set():
            await self._close(*self.subscriber.ended)
            return
        for task in done:
            error = task.exception()
            if isinstance(error, AdeError):
                await self._close(CLOSE_CODES.get(error.code, 4400), error.message)

    async def _catch_up(self, since: int | None) -> None:
        """hello, a gap notice if ``since`` is older than the stream holds, then every
        retained event after it (the subscription already collects live ones)."""
        newest = await self.hub.newest_seq()
        await self.websocket.send_text(hello_frame(newest))
        start = newest if since is None else since
        if since is not None:
            oldest = await self.hub.oldest_seq()
            if since > newest:  # the stream was reset (a new Redis): resend what it holds
                start = 0
                await self.websocket.send_text(gap_frame(oldest or newest + 1))
            elif oldest is not None and oldest > since + 1:
                await self.websocket.send_text(gap_frame(oldest))
        self.last_sent = start
        while True:
            entries = await self.hub.read_after(self.last_sent)
            for entry in entries:
                if self.subscriber.filter.matches(entry.topic, entry.subject):
                    await self.websocket.send_text(entry.frame())
                self.last_sent = entry.seq
            if len(entries) < PAGE:
                return

    async def _send_live(self) -> None:
        queue = self.subscriber.queue
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                seq, frame = await queue.get()
                if seq is not None:
                    if seq <= self.last_sent:
                        continue  # already sent by the catch-up read
                    self.last_sent = seq
                await self.websocket.send_text(frame)

    async def _receive(self, max_bytes: int, budget: MessageBudget) -> None:
        """Client messages until it leaves; a bad one raises (closed with 4400), so do a
        message too big (1009) and one too many (4429)."""
        while True:
            received = await self.websocket.receive()
            if received["type"] == "websocket.disconnect":
                return
            text, data = received.get("text"), received.get("bytes")
            size = len(data) if data is not None else len(text.encode()) if text else 0
            if size > max_bytes:
                raise MessageTooBig(f"a client message has at most {max_bytes} bytes")
            budget.spend(time.monotonic())
            message = parse_client_message(text)
            if message["kind"] == "subscribe":
                event_filter = Filter(
                    parse_topics(message.get("topics")),
                    parse_subject(message.get("subject", self.subscriber.filter.subject)),
                )
                _authorize(self.principal, event_filter)
                self.subscriber.filter = event_filter

    async def _ping(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(asyncio.QueueFull):  # a full queue is cut off anyway
                self.subscriber.queue.put_nowait((None, ping_frame(utcnow())))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
            # asyncio.timeout, not wait_for: see infra.aio.wait_event.
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await self.websocket.close(code, _reason(reason))
