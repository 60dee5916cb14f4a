"""The MCP server over its real transports, with the SDK's own client: streamable HTTP
against a live ``ade serve`` app (``/mcp``) and stdio against a real ``ade mcp``
subprocess. The full loop: an agent proposes, a reviewer approves over the REST API,
``wait_for_decision`` answers, a worker applies."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from livesrv import Live, StartLive
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from community_ade.execution.worker import Worker

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)


def body(result: Any) -> dict[str, Any]:
    return json.loads(result.content[0].text)


async def agent_with_token(live: Live, name: str, tools: list[str]) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        agent = await c.post(
            "/api/v1/agents",
            json={"name": name, "model": "gpt-4o", "tools": tools},
            headers=live.as_("alice"),
        )
        assert agent.status_code == 201, agent.text
        token = await c.post(
            f"/api/v1/agents/{agent.json()['id']}/tokens",
            json={"name": "mcp"},
            headers=live.as_("alice"),
        )
        return agent.json()["id"], token.json()["token"]


def write_args(root: Path, content: str) -> dict[str, Any]:
    return {
        "title": "flip the flag",
        "payload": {
            "root": str(root),
            "changes": [{"path": "flag.txt", "action": "write", "content": content}],
        },
        "resources": [{"type": "configuration", "id": "flag", "actions": ["write"]}],
    }


async def approve(live: Live, proposed: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        r = await c.post(
            f"/api/v1/approvals/{proposed['task_id']}/approve",
            json={"digest": proposed["preview_digest"]},
            headers=live.as_("bob"),
        )
        assert r.status_code == 200, r.text


@pytest.fixture
async def live(start_live: StartLive, tmp_path: Path) -> Live:
    root = tmp_path / "workspaces" / "w"
    root.mkdir(parents=True)
    (root / "flag.txt").write_text("off\n")
    return await start_live(workspace_roots=[tmp_path / "workspaces"])


async def test_streamable_http_propose_approve_apply(live: Live, tmp_path: Path) -> None:
    root = tmp_path / "workspaces" / "w"
    agent_id, token = await agent_with_token(live, "http-agent", ["files.read", "files.write"])
    url = f"{live.server.url}/mcp"
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http)) as c,
    ):
        tools = {t.name for t in (await c.list_tools()).tools}
        assert tools == {
            "files.read",
            "files.write",
            "wait_for_decision",
            "permission_prompt",
            "task_status",
            "cancel_task",
        }
        proposed = body(await c.call_tool("files.write", write_args(root, "on\n")))
        assert proposed["state"] == "SUBMITTED", proposed
        waiting = c.call_tool(
            "wait_for_decision", {"task_id": proposed["task_id"], "wait_seconds": 20}
        )
        waiter = asyncio.ensure_future(waiting)
        await asyncio.sleep(0.3)
        assert not waiter.done()
        await approve(live, proposed)
        decided = body(await asyncio.wait_for(waiter, 20))
        assert decided["outcome"] == "approved", decided
        await asyncio.wait_for(Worker(live.runtime, burst=True).run(), 60)
        status = body(await c.call_tool("task_status", {"task_id": proposed["task_id"]}))
    assert status["state"] == "COMPLETED", status
    assert (root / "flag.txt").read_text() == "on\n"
    async with httpx.AsyncClient(base_url=live.server.url) as rest:
        health = await rest.get(f"/api/v1/agents/{agent_id}/health", headers=live.as_("vic"))
    assert health.json()["status"] == "online", health.text


async def test_http_refuses_before_any_work(live: Live) -> None:
    _, token = await agent_with_token(live, "refused-agent", ["files.read"])
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        anonymous = await c.post("/mcp", json=message, headers=headers)
        assert anonymous.status_code == 401
        assert anonymous.json()["type"] == "unauthenticated"
        foreign = await c.post(
            "/mcp",
            json=message,
            headers={
                **headers,
                "Authorization": f"Bearer {token}",
                "Origin": "https://evil.example",
            },
        )
        assert foreign.status_code == 403
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {live.tokens['alice']}"}) as http,
        Client(streamable_http_client(f"{live.server.url}/mcp", http_client=http)) as c,
    ):
        with pytest.raises(Exception, match="serves agents"):
            await c.list_tools()


async def test_stdio_subprocess(live: Live, tmp_path: Path) -> None:
    root = tmp_path / "workspaces" / "w"
    _, token = await agent_with_token(live, "stdio-agent", ["files.write", "code.search"])
    settings = live.server.settings
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ADE_TOKEN": token,
        "ADE_DATA_DIR": str(settings.data_dir),
        "ADE_DATABASE_URL": str(settings.database_url),
        "ADE_REDIS_URL": str(settings.redis_url),
        "ADE_LOCK_DOMAIN": settings.lock_domain,
        "ADE_WORKSPACE_ROOTS": json.dumps([str(tmp_path / "workspaces")]),
        "ADE_LOG_LEVEL": "WARNING",
    }
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "community_ade", "mcp"], env=env
    )
    async with Client(server) as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert tools == {
            "files.write",
            "code.search",
            "wait_for_decision",
            "permission_prompt",
            "task_status",
            "cancel_task",
        }
        found = body(await c.call_tool("code.search", {"query": "off", "root": str(root)}))
        assert found["text"] == "flag.txt:1: off"
        bad = await c.call_tool("files.write", {"title": "x", "payload": {"root": str(root)}})
        assert bad.is_error
        assert body(bad)["error"] == "validation_failed"
        assert [e["path"] for e in body(bad)["errors"]] == ["changes"], body(bad)
        proposed = body(await c.call_tool("files.write", write_args(root, "on\n")))
        assert proposed["state"] == "SUBMITTED", proposed
        cancelled = body(
            await c.call_tool("cancel_task", {"task_id": proposed["task_id"], "reason": "oops"})
        )
    assert cancelled["state"] == "CANCELLED"
