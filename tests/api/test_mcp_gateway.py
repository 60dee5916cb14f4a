"""The MCP server with the SDK's own client, in memory: an agent's configuration as tools,
proposals through governance, the decision back to the agent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Api
from mcp import Client
from test_agents_api import agent_token, create

from community_ade.mcp_gateway.server import Gateway


async def token_of(api: Api, **config: Any) -> str:
    agent = await create(api, **config)
    return (await agent_token(api, agent["id"]))["Authorization"].removeprefix("Bearer ")


def body(result: Any) -> dict[str, Any]:
    return json.loads(result.content[0].text)


async def test_tools_follow_the_configuration(api: Api) -> None:
    writer = await token_of(api, name="writer", tools=["files.read", "files.write"])
    reader = await token_of(api, name="reader", tools=["git.log", "code.search"])
    async with Client(Gateway(api.runtime, token=writer).server) as c:
        names = {t.name: t for t in (await c.list_tools()).tools}
    assert set(names) == {
        "files.read",
        "files.write",
        "wait_for_decision",
        "permission_prompt",
        "task_status",
        "cancel_task",
    }
    assert names["files.read"].annotations.read_only_hint is True
    assert names["files.write"].annotations.read_only_hint is False
    async with Client(Gateway(api.runtime, token=reader).server) as c:
        names2 = {t.name for t in (await c.list_tools()).tools}
        refused = await c.call_tool("files.write", {"title": "x", "payload": {}})
    assert names2 == {
        "git.log",
        "code.search",
        "wait_for_decision",
        "permission_prompt",
        "task_status",
        "cancel_task",
    }
    assert refused.is_error
    assert body(refused)["error"] == "tool_not_enabled"


async def test_propose_then_decision(api: Api) -> None:
    token = await token_of(api, name="writer", tools=["files.read", "files.write"])
    async with Client(Gateway(api.runtime, token=token).server) as c:
        read = await c.call_tool("files.read", {"path": str(api.workspace / "app.conf")})
        assert "debug = false" in body(read)["text"]
        proposed = await c.call_tool(
            "files.write",
            {
                "title": "debug on",
                "payload": {
                    "root": str(api.workspace),
                    "changes": [
                        {"path": "app.conf", "action": "write", "content": "debug = true\n"}
                    ],
                },
            },
        )
        p = body(proposed)
        assert not proposed.is_error, p
        assert p["state"] == "SUBMITTED"
        assert "+debug = true" in p["preview"]
        waiting = body(
            await c.call_tool("wait_for_decision", {"task_id": p["task_id"], "wait_seconds": 0})
        )
        assert waiting["decided"] is False
        r = await api.client.post(
            f"/api/v1/approvals/{p['task_id']}/request-changes",
            json={"digest": p["preview_digest"], "comment": "use a flag file"},
            headers=api.as_("bob"),
        )
        assert r.status_code == 200, r.text
        decided = body(
            await c.call_tool("wait_for_decision", {"task_id": p["task_id"], "wait_seconds": 2})
        )
    assert decided["outcome"] == "changes_requested"
    assert decided["reviews"][0]["comment"] == "use a flag file"
    assert decided["reviews"][0]["reviewer"] == "bob"


async def test_allowed_task_types_prompt_and_policy(api: Api) -> None:
    token = await token_of(
        api,
        name="caller",
        tools=["files.write", "shell", "tasks.submit"],
        allowed_task_types=["agent.call"],
        system_prompt="You deploy carefully.",
    )
    async with Client(Gateway(api.runtime, token=token).server) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == {
            "agent.call",
            "wait_for_decision",
            "permission_prompt",
            "task_status",
            "cancel_task",
        }
        schema = tools["agent.call"].input_schema["properties"]["payload"]
        assert schema["required"] == ["function"]
        prompt = await c.get_prompt("system_prompt")
        assert prompt.messages[0].content.text == "You deploy carefully."
        policy = await c.read_resource("ade://policy")
        assert "document" in json.loads(policy.contents[0].text)
        proposed = await c.call_tool(
            "agent.call",
            {"title": "deploy", "payload": {"function": "deploy", "arguments": {"v": 2}}},
        )
        assert body(proposed)["state"] == "SUBMITTED", body(proposed)
        assert '"function": "deploy"' in body(proposed)["preview"]


async def test_a_person_token_is_refused(api: Api) -> None:
    async with Client(Gateway(api.runtime, token=api.tokens["alice"]).server) as c:
        with pytest.raises(Exception, match="serves agents"):
            await c.list_tools()


def hostile_repository(repo: Path, marker: Path) -> None:
    """A repository with one commit whose configuration would have git run programs."""
    run = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    repo.mkdir()
    subprocess.run([*run, "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "a.txt").write_text("one\n")
    subprocess.run([*run, "add", "a.txt"], cwd=repo, check=True)
    subprocess.run([*run, "commit", "-q", "-m", "first commit"], cwd=repo, check=True)
    for key, value in (("core.fsmonitor", "false"), ("core.pager", "cat")):
        subprocess.run(["git", "config", key, f"touch {marker}; {value}"], cwd=repo, check=True)


async def test_git_log_reads_a_repository_without_running_its_programs(api: Api) -> None:
    repo = api.workspace / "repo"
    marker = api.workspace.parent / "pwned"
    hostile_repository(repo, marker)
    token = await token_of(api, name="historian", tools=["git.log"])
    async with Client(Gateway(api.runtime, token=token).server) as c:
        answer = await c.call_tool("git.log", {"repo": str(repo)})
        outside = await c.call_tool("git.log", {"repo": "/etc"})
    assert "first commit" in body(answer)["text"], body(answer)
    assert not marker.exists()
    assert outside.is_error
    assert "outside the workspace roots" in body(outside)["message"]
