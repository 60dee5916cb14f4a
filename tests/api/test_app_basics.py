"""The app's plumbing: health, readiness, problem documents, OpenAPI; and `ade serve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from community_ade.api.app import create_app
from community_ade.settings import Settings


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ade") as client:
            yield client


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "redis": "ok", "database": "ok"}


async def test_unknown_route_is_a_problem_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "not_found"
    assert body["status"] == 404


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["info"]["title"] == "Community ADE"
    assert "/healthz" in document["paths"]


async def test_openapi_documents_only_problem_documents_for_invalid_requests(
    client: httpx.AsyncClient,
) -> None:
    # The server answers every invalid request with application/problem+json; FastAPI's
    # own HTTPValidationError body must not be offered as an alternative.
    text = (await client.get("/openapi.json")).text
    assert "HTTPValidationError" not in text
    document = json.loads(text)
    invalid = [
        operation["responses"]["422"]
        for operations in document["paths"].values()
        for operation in operations.values()
        if "422" in operation.get("responses", {})
    ]
    assert len(invalid) > 40  # every route with parameters or a body
    assert all(list(r["content"]) == ["application/problem+json"] for r in invalid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_ade_serve_answers_healthz(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "ADE_DATA_DIR": str(tmp_path)}
    env.pop("ADE_REDIS_URL", None)
    env.pop("ADE_DATABASE_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "community_ade", "serve", "--port", str(port), env=env
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(300):
                try:
                    response = await client.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("ade serve did not answer /healthz within 30 s")
            assert response.json() == {"status": "ok"}
            assert (await client.get("/readyz")).status_code == 200
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM for its exit status.
        assert await asyncio.wait_for(process.wait(), 30) in (0, -signal.SIGTERM)
    # Graceful: the lifespan closed the Runtime, which stopped the embedded Redis.
    assert not any((tmp_path / "redis").glob("*.sock"))


async def test_demo_data_gives_each_reviewer_something_to_decide(tmp_path: Path) -> None:
    from community_ade.cli.demo_data import seed, tokens_file

    app = create_app(Settings(data_dir=tmp_path))
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        tokens = await seed(runtime)
        assert set(tokens) == {"admin", "alice", "bob", "carol", "deploy-bot"}  # and its agent
        assert await seed(runtime) == tokens  # once per data directory
        assert tokens_file(runtime).stat().st_mode & 0o077 == 0
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ade") as client:

            async def queue(who: str) -> list[str]:
                headers = {"Authorization": f"Bearer {tokens[who]}"}
                page = await client.get("/api/v1/approvals?awaiting=me", headers=headers)
                return [t["title"] for t in page.json()["items"]]

            assert await queue("bob") == ["turn on debug logging"]
            assert await queue("carol") == [
                "scale the demo service to 3",
                "turn on debug logging",
            ]
            assert await queue("alice") == []
