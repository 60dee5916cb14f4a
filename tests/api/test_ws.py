"""``WS /api/v1/ws`` against a real server (uvicorn on a loopback port) and real clients:
auth, filters, resume without loss or duplicate, pings, and the slow-consumer cut-off."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
from typing import Any

import httpx
import pytest
from livesrv import WAIT, Live, StartLive, closed_with, recv
from websockets.asyncio.client import ClientConnection, connect

from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM
from community_ade.events.keys import EventKeys
from community_ade.events.relay import AUDIT_SOURCE

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)


async def emit(
    live: Live,
    count: int,
    *,
    type: str = "task:created",
    subject: str = "task:t1",
    pad: int = 0,
    pause: float = 0.0,
) -> list[int]:
    """Commit ``count`` audit events, one transaction each (``pause`` seconds apart);
    their audit seqs."""
    seqs = []
    for i in range(count):
        await asyncio.sleep(pause)
        async with live.runtime.sessions.begin() as session:
            row = await audit.append(
                session, type=type, actor=SYSTEM, subject=subject, data={"i": i, "pad": "x" * pad}
            )
            seqs.append(row.seq)
    return seqs


def increasing(seqs: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(seqs))


async def events(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` event frames' events (pings skipped)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await recv(ws)
        if frame["kind"] == "event":
            got.append(frame["event"])
    return got


async def test_hello_then_each_event_once_in_order(start_live: StartLive) -> None:
    live = await start_live()
    async with connect(live.ws(topics="task"), additional_headers=live.as_("vic")) as ws:
        hello = await recv(ws)
        assert hello["kind"] == "hello"
        seqs = await emit(live, 5)
        got = await events(ws, 5)
    assert [e["audit_seq"] for e in got] == seqs
    assert increasing([hello["seq"], *(e["seq"] for e in got)])
    first = got[0]
    assert first["type"] == "task:created"
    assert first["subject"] == "task:t1"
    assert first["actor"] == {"kind": "system", "id": "system", "via_delegation": False}
    assert first["data"] == {"i": 0, "pad": ""}
    assert first["ts"].endswith("Z")


async def test_an_api_call_is_seen_live(start_live: StartLive) -> None:
    live = await start_live()
    async with connect(live.ws(topics="task"), additional_headers=live.as_("bob")) as ws:
        await recv(ws)
        async with httpx.AsyncClient(base_url=live.server.url) as client:
            created = await client.post(
                "/api/v1/tasks",
                headers=live.as_("alice"),
                json={
                    "type": "files.write",
                    "title": "live",
                    "payload": {
                        "root": str(live.server.settings.data_dir),
                        "changes": [{"path": "a.txt", "action": "write", "content": "a\n"}],
                    },
                    "resources": [],
                },
            )
        if created.status_code != 201:
            pytest.fail(created.text)
        (event,) = await events(ws, 1)
    assert event["type"] == "task:created"
    assert event["subject"] == f"task:{created.json()['id']}"
    assert event["actor"]["id"] == live.ids["alice"]


async def test_token_in_query_or_session_cookie_with_same_origin(start_live: StartLive) -> None:
    live = await start_live()
    async with connect(live.ws(token=live.tokens["vic"])) as ws:
        assert (await recv(ws))["kind"] == "hello"
    host = live.server.url.removeprefix("http://")
    cookie = {"Cookie": f"ade_session={live.tokens['vic']}"}
    async with connect(live.ws(), additional_headers=cookie, origin=f"http://{host}") as ws:
        assert (await recv(ws))["kind"] == "hello"
    for origin in ("http://evil.example", None):  # another site's page, or no Origin at all
        async with connect(live.ws(), additional_headers=cookie, origin=origin) as ws:
            code, reason = await closed_with(ws)
        assert code == 4403
        assert "this site" in reason


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, {}),
        ({"Authorization": "Bearer ade_not_a_token"}, {}),
        ({}, {"token": "nope"}),
    ],
)
async def test_unauthenticated_is_closed_4401(
    start_live: StartLive, headers: dict[str, str], query: dict[str, str]
) -> None:
    live = await start_live()
    async with connect(live.ws(**query), additional_headers=headers) as ws:
        code, reason = await closed_with(ws)
    assert code == 4401
    assert reason


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"topics": "task,bogus"}, "unknown topic(s) bogus"),
        ({"topics": ","}, "topics is empty"),
        ({"since": "-1"}, "since must be"),
        ({"since": "soon"}, "since must be"),
        ({"subject": "x" * 201}, "subject must be"),
    ],
)
async def test_bad_query_is_closed_4400_with_the_reason(
    start_live: StartLive, query: dict[str, str], says: str
) -> None:
    live = await start_live()
    async with connect(live.ws(**query), additional_headers=live.as_("vic")) as ws:
        code, reason = await closed_with(ws)
    assert code == 4400
    assert says in reason


async def test_topics_and_subject_filter_and_subscribe(start_live: StartLive) -> None:
    live = await start_live()
    headers = live.as_("vic")
    async with (
        connect(live.ws(topics="approval"), additional_headers=headers) as approvals,
        connect(live.ws(subject="task:t2"), additional_headers=headers) as t2,
    ):
        await recv(approvals)
        await recv(t2)
        await emit(live, 1, type="task:created", subject="task:t2")
        await emit(live, 1, type="approval:requested", subject="task:t1")
        await emit(live, 1, type="approval:approved", subject="task:t2")
        assert [e["type"] for e in await events(approvals, 2)] == [
            "approval:requested",
            "approval:approved",
        ]
        assert [e["type"] for e in await events(t2, 2)] == ["task:created", "approval:approved"]
        await approvals.send(json.dumps({"kind": "subscribe", "topics": ["task"]}))
        await approvals.send(json.dumps({"kind": "pong"}))
        await asyncio.sleep(0.2)  # the server reads the message before the next event
        await emit(live, 1, type="approval:requested", subject="task:t3")
        await emit(live, 1, type="task:cancelled", subject="task:t3")
        assert [e["type"] for e in await events(approvals, 1)] == ["task:cancelled"]
        await approvals.send("not json")
        code, reason = await closed_with(approvals)
    assert code == 4400
    assert "JSON object" in reason


async def test_pings_arrive_at_the_interval(start_live: StartLive) -> None:
    live = await start_live(ws_ping_seconds=0.2)
    async with connect(live.ws(topics="policy"), additional_headers=live.as_("vic")) as ws:
        await recv(ws)
        frames = [await recv(ws, timeout=2) for _ in range(2)]
    assert [f["kind"] for f in frames] == ["ping", "ping"]
    assert frames[0]["ts"].endswith("Z")


async def test_resume_delivers_exactly_the_missed_events(start_live: StartLive) -> None:
    """Reconnect with since=<last seq seen> while a writer keeps committing: every
    event arrives exactly once, in order, across several disconnects."""
    live = await start_live()
    headers = live.as_("vic")
    async with connect(live.ws(topics="task"), additional_headers=headers) as ws:
        last = (await recv(ws))["seq"]
    total = 60
    writer = asyncio.create_task(emit(live, total))
    seen: list[dict[str, Any]] = []
    while len(seen) < total:
        # Dropped, not closed politely: unread events would hold up the closing handshake.
        async with connect(
            live.ws(topics="task", since=last), additional_headers=headers, close_timeout=0.1
        ) as ws:
            assert (await recv(ws))["kind"] == "hello"
            for event in await events(ws, min(7, total - len(seen))):
                seen.append(event)
                last = event["seq"]
        await asyncio.sleep(0.01)  # missed while away
    assert [e["audit_seq"] for e in seen] == await writer
    assert increasing([e["seq"] for e in seen])


async def test_gap_when_since_is_older_than_the_stream_holds(start_live: StartLive) -> None:
    live = await start_live(events_maxlen=100)
    *_, last = await emit(live, 350)
    keys = EventKeys.for_namespace(live.server.settings.lock_domain)
    for _ in range(100):  # until the relay has caught up
        if int(await live.runtime.redis.hget(keys.cursors, AUDIT_SOURCE) or 0) == last:
            break
        await asyncio.sleep(0.1)
    async with connect(live.ws(), additional_headers=live.as_("vic")) as ws:
        newest = (await recv(ws))["seq"]
    assert newest >= 350
    async with connect(live.ws(since=1), additional_headers=live.as_("vic")) as ws:
        assert (await recv(ws))["kind"] == "hello"
        gap = await recv(ws)
        assert gap["kind"] == "gap"
        assert 2 < gap["oldest"] <= newest - 99
        (first,) = await events(ws, 1)
    assert first["seq"] == gap["oldest"]


class RawClient:
    """A WebSocket client on a bare socket that reads nothing until told to: nothing
    buffers on its side but the kernel's (small) receive buffer."""

    def __init__(self, live: Live, token: str) -> None:
        host, port = live.server.url.removeprefix("http://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /api/v1/ws?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(1024)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed without a close frame")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def close_frame(self) -> tuple[int, str]:
        """Read (blocking) past every frame to the server's close frame."""
        self.sock.settimeout(WAIT)
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length >= 126:
                length = int.from_bytes(self._read(2 if length == 126 else 8), "big")
            payload = self._read(length)
            if first & 0x0F == 0x8:
                return int.from_bytes(payload[:2], "big"), payload[2:].decode()


async def _metric(live: Live, name: str) -> float:
    async with httpx.AsyncClient(base_url=live.server.url) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics: {text[:2000]}")


async def test_slow_client_is_cut_off_while_another_keeps_receiving(
    start_live: StartLive,
) -> None:
    live = await start_live(ws_client_buffer=50)
    slow = RawClient(live, live.tokens["vic"])
    total = 200
    # The slow client reads nothing: its socket and the server's transport fill, the
    # server's queue for it overflows, and it is cut off. 10 MB is more than the
    # kernel buffers (4 MB at most here) and the queue hold; the writer's pace lets the
    # fast client (sharing this process with the writer) keep up.
    async with connect(live.ws(topics="task"), additional_headers=live.as_("vic")) as fast:
        await recv(fast)
        writer = asyncio.create_task(emit(live, total, pad=50_000, pause=0.005))
        got = await events(fast, total)
        assert [e["audit_seq"] for e in got] == await writer
        for _ in range(100):
            if await _metric(live, "ade_ws_slow_consumer_disconnects_total") >= 1:
                break
            await asyncio.sleep(0.1)
        assert await _metric(live, "ade_ws_slow_consumer_disconnects_total") == 1
        assert await _metric(live, "ade_ws_clients") == 1
        # Reading now drains the backlog down to the close frame.
        code, reason = await asyncio.to_thread(slow.close_frame)
    slow.sock.close()
    assert code == 4408
    assert reason.startswith("slow consumer")


async def test_a_lost_stream_closes_clients_who_must_reload(start_live: StartLive) -> None:
    """Redis lost the stream (a restart without persistence): seqs start over, so what
    clients saw no longer lines up; they are closed with 1012 and told to reload."""
    live = await start_live()
    headers = live.as_("vic")
    keys = EventKeys.for_namespace(live.server.settings.lock_domain)
    async with connect(live.ws(topics="task"), additional_headers=headers) as ws:
        await recv(ws)
        await emit(live, 3)
        await events(ws, 3)
        await live.runtime.redis.delete(keys.stream, keys.sequence, keys.epoch)
        await emit(live, 1)  # the relay starts a new sequence
        code, reason = await closed_with(ws)
    assert code == 1012
    assert "reload" in reason
    async with connect(live.ws(topics="task"), additional_headers=headers) as ws:
        await recv(ws)
        await emit(live, 1)
        (event,) = await events(ws, 1)
    assert event["type"] == "task:created"
