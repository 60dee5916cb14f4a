"""Request bodies are bounded before anything reads them, authentication included."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from community_ade.api.app import create_app
from community_ade.api.body_limit import FORM_BODY_BYTES
from community_ade.settings import Settings

LIMIT = 64 * 1024
MB = 1024 * 1024


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path, max_body_bytes=LIMIT))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ade") as client:
            yield client


def too_large(response: httpx.Response, limit: int = LIMIT) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "payload_too_large"
    assert body["status"] == 413
    assert body["title"]
    assert str(limit) in body["detail"]
    assert body["limit"] == limit


class Counted:
    """A streamed body (no Content-Length: chunked) that counts what was taken of it."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        part = b"x" * self.chunk
        while self.sent < self.total:
            self.sent += self.chunk
            yield part


async def test_an_announced_oversized_body_is_refused_before_authentication(
    client: httpx.AsyncClient,
) -> None:
    # No token: without the limit this is a 401; the limit answers first.
    response = await client.post("/api/v1/tasks", content=b"{" + b" " * LIMIT + b"}")
    too_large(response)
    small = await client.post("/api/v1/tasks", json={"title": "x"})
    assert small.status_code == 401


async def test_a_chunked_body_is_cut_once_it_passes_the_limit(client: httpx.AsyncClient) -> None:
    body = Counted(10 * LIMIT)
    too_large(await client.post("/api/v1/tasks", content=body))
    assert body.sent <= 2 * LIMIT  # the rest was never asked for


async def test_the_nul_check_reads_through_the_limit(client: httpx.AsyncClient) -> None:
    # RejectNulMiddleware reads whole bodies: it must not be able to buffer past the limit.
    body = Counted(10 * LIMIT)
    too_large(await client.post("/api/v1/tasks?x=1", content=body))
    assert body.sent <= 2 * LIMIT
    nul = await client.post("/api/v1/tasks", content=b'{"title": "a\\u0000b"}')
    assert nul.status_code == 422


async def test_the_login_form_has_a_smaller_limit(client: httpx.AsyncClient) -> None:
    big_form = {"username": "alice", "password": "p" * (LIMIT // 2), "csrf_token": "x"}
    too_large(await client.post("/login", data=big_form), FORM_BODY_BYTES)
    token_route = f"/api/v1/agents/{uuid.uuid4()}/tokens"
    too_large(await client.post(token_route, data=big_form), FORM_BODY_BYTES)
    # The same size is fine on a route with the default limit (it fails for another reason).
    assert (await client.post("/api/v1/tasks", data=big_form)).status_code == 401


# -- a real server process under parallel 100 MB uploads ------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """The highest resident size of a process, sampled every few milliseconds."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, _rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes(self.pid))


@pytest.mark.slow
async def test_parallel_100mb_uploads_without_a_token_cost_the_server_no_memory(
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = {**os.environ, "ADE_DATA_DIR": str(tmp_path)}
    env.pop("ADE_REDIS_URL", None)
    env.pop("ADE_DATABASE_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "community_ade", "serve", "--no-worker", "--port", str(port), env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as probe:
            for _ in range(300):
                try:
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail("ade serve did not become ready within 30 s")
            for _ in range(3):  # warm up: the first requests import and allocate
                await probe.post("/api/v1/tasks", json={"title": "x"})
        idle = _rss_bytes(process.pid)

        async def upload(announce: bool) -> tuple[httpx.Response, Counted]:
            body = Counted(100 * MB)
            headers = {"Content-Length": str(body.total)} if announce else {}
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                response = await client.post("/api/v1/tasks", content=body, headers=headers)
            return response, body

        with PeakRss(process.pid) as rss:
            results = await asyncio.gather(*(upload(announce=i % 2 == 0) for i in range(4)))
        assert rss.peak - idle < 50 * MB, f"idle {idle / MB:.0f} MB, peak {rss.peak / MB:.0f} MB"
        for response, _body in results:
            # The client sends its whole body before it reads the answer; the server
            # refused it at once (by its announced length, or once past the limit) and
            # discarded the rest as it came in.
            too_large(response, Settings().max_body_bytes)
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) in (0, -signal.SIGTERM)
