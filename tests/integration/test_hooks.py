"""The coding-agent hooks for real: the harnesses' documented JSON fed to the real
``ade hook`` commands (subprocesses) against a live server, reviewers deciding over the
REST API; and Claude Code's ``--permission-prompt-tool`` through the official ``mcp``
client over streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import httpx
import httpx2
import pytest
from livesrv import Live, StartLive
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)

ADE = [sys.executable, "-c", "from community_ade.cli import main; main()"]
WAIT = 30.0

# Claude Code's PreToolUse input (code.claude.com/docs hooks reference).
CLAUDE_EVENT = {
    "session_id": "abc123",
    "transcript_path": "/home/dev/.claude/projects/x/abc123.jsonl",
    "cwd": "/home/dev/shop",
    "permission_mode": "default",
    "hook_event_name": "PreToolUse",
    "tool_use_id": "toolu_01",
}


def claude(tool_name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {**CLAUDE_EVENT, "tool_name": tool_name, "tool_input": tool_input}


def cursor(event: str, **fields: Any) -> dict[str, Any]:
    return {
        "hook_event_name": event,
        "conversation_id": "conv-1",
        "generation_id": "gen-1",
        "workspace_roots": ["/home/dev/shop"],
        **fields,
    }


@pytest.fixture
async def live(start_live: StartLive) -> Live:
    return await start_live()


async def agent_token(live: Live, name: str = "coder") -> str:
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        agent = await c.post(
            "/api/v1/agents",
            json={"name": name, "model": "claude-sonnet-4", "tools": []},
            headers=live.as_("alice"),
        )
        assert agent.status_code == 201, agent.text
        token = await c.post(
            f"/api/v1/agents/{agent.json()['id']}/tokens",
            json={"name": "hook"},
            headers=live.as_("alice"),
        )
        assert token.status_code == 201, token.text
        return str(token.json()["token"])


class Hook:
    """One ``ade hook HARNESS`` process with an event on its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, live: Live, token: str, harness: str, event: dict[str, Any], wait: float = WAIT
    ) -> Hook:
        env = {
            **os.environ,
            "ADE_URL": live.server.url,
            "ADE_TOKEN": token,
            "ADE_HOOK_WAIT_SECONDS": str(wait),
        }
        process = await asyncio.create_subprocess_exec(
            *ADE,
            "hook",
            harness,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps(event).encode())
        await process.stdin.drain()
        process.stdin.close()
        return cls(process)

    async def answer(self) -> tuple[int, dict[str, Any]]:
        out, err = await asyncio.wait_for(self.process.communicate(), WAIT + 30)
        assert self.process.returncode == 0, err.decode()
        return self.process.returncode, json.loads(out)


async def run_hook(
    live: Live, token: str, harness: str, event: dict[str, Any], wait: float = WAIT
) -> dict[str, Any]:
    return (await (await Hook.start(live, token, harness, event, wait)).answer())[1]


async def pending_task(live: Live, function: str) -> dict[str, Any]:
    """The agent.call task of ``function`` waiting for review, once the hook proposed it."""
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        for _ in range(int(WAIT / 0.1)):
            page = await c.get(
                "/api/v1/tasks",
                params={"type": "agent.call", "state": "SUBMITTED"},
                headers=live.as_("bob"),
            )
            for task in page.json()["items"]:
                if task["payload"]["function"] == function:
                    return dict(task)
            await asyncio.sleep(0.1)
    raise AssertionError(f"no {function} task was proposed")


async def decide(live: Live, task: dict[str, Any], action: str, comment: str = "") -> None:
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        preview = await c.get(f"/api/v1/tasks/{task['id']}/preview", headers=live.as_("bob"))
        r = await c.post(
            f"/api/v1/approvals/{task['id']}/{action}",
            json={"digest": preview.json()["digest"], "comment": comment},
            headers=live.as_("bob"),
        )
        assert r.status_code == 200, r.text


async def task_state(live: Live, task_id: str) -> str:
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        r = await c.get(f"/api/v1/tasks/{task_id}", headers=live.as_("bob"))
        return str(r.json()["state"])


def decision(answer: dict[str, Any]) -> tuple[str, str]:
    out = answer["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse"
    return out["permissionDecision"], out["permissionDecisionReason"]


# -- Claude Code PreToolUse --------------------------------------------------------------


async def test_read_only_tool_is_allowed_at_once_and_recorded(live: Live) -> None:
    token = await agent_token(live)
    answer = await run_hook(live, token, "claude-code", claude("Read", {"file_path": "/a.py"}))
    verdict, reason = decision(answer)
    assert verdict == "allow"
    assert "approved by policy" in reason
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        page = await c.get("/api/v1/tasks", params={"type": "agent.call"}, headers=live.as_("bob"))
    [task] = page.json()["items"]
    assert task["payload"] == {"function": "Read", "arguments": {"file_path": "/a.py"}}
    # Auto-approved, handed to the harness (after the answer, by a detached child):
    # recorded as done, not left approved.
    for _ in range(int(WAIT / 0.1)):
        if (state := await task_state(live, task["id"])) == "COMPLETED":
            break
        await asyncio.sleep(0.1)
    assert state == "COMPLETED"
    assert "Claude Code" in task["title"]
    assert "session abc123" in task["description"]


async def test_bash_waits_for_a_reviewer_and_is_allowed_after_bob_approves(live: Live) -> None:
    token = await agent_token(live)
    hook = await Hook.start(live, token, "claude-code", claude("Bash", {"command": "make test"}))
    task = await pending_task(live, "Bash")
    assert hook.process.returncode is None  # still waiting for the decision
    assert task["title"] == "Claude Code · Bash: make test"
    await decide(live, task, "approve", "fine, tests only")
    verdict, reason = decision((await hook.answer())[1])
    assert verdict == "allow"
    assert "approved by bob: fine, tests only" in reason
    assert task["id"] in reason


async def test_a_rejected_call_is_denied_with_the_reviewers_comment(live: Live) -> None:
    token = await agent_token(live)
    event = claude("Write", {"file_path": "/etc/hosts", "content": "0.0.0.0 x\n"})
    hook = await Hook.start(live, token, "claude-code", event)
    task = await pending_task(live, "Write")
    await decide(live, task, "reject", "never touch /etc")
    verdict, reason = decision((await hook.answer())[1])
    assert verdict == "deny"
    assert "rejected by bob: never touch /etc" in reason


async def test_no_decision_in_time_asks_and_leaves_the_task_in_the_queue(live: Live) -> None:
    token = await agent_token(live)
    answer = await run_hook(
        live, token, "claude-code", claude("Edit", {"file_path": "/a.py"}), wait=1
    )
    verdict, reason = decision(answer)
    assert verdict == "ask"
    assert "waits in the review queue" in reason
    task = await pending_task(live, "Edit")  # still there for a reviewer
    assert task["id"] in reason


async def test_the_task_is_cancelled_when_the_harness_gives_up(live: Live) -> None:
    token = await agent_token(live)
    hook = await Hook.start(live, token, "claude-code", claude("Bash", {"command": "rm -rf x"}))
    task = await pending_task(live, "Bash")
    hook.process.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(hook.process.communicate(), WAIT)
    assert hook.process.returncode == 143
    assert out == b""
    assert await task_state(live, task["id"]) == "CANCELLED"


async def test_mcp_tools_go_to_reviewers_by_default(live: Live) -> None:
    token = await agent_token(live)
    hook = await Hook.start(
        live, token, "claude-code", claude("mcp__github__create_issue", {"title": "x"})
    )
    task = await pending_task(live, "mcp__github__create_issue")
    await decide(live, task, "request-changes", "use the bug template")
    verdict, reason = decision((await hook.answer())[1])
    assert verdict == "deny"
    assert "changes requested by bob: use the bug template" in reason
    assert await task_state(live, task["id"]) == "CANCELLED"  # not left behind in DRAFT


async def test_an_admins_policy_decides_which_tools_pass(live: Live) -> None:
    policy = {
        "rules": [
            {
                "name": "tests may run",
                "task_types": ["agent.call"],
                "calls": ["Bash"],
                "auto_approve_below": 100,
            }
        ]
    }
    async with httpx.AsyncClient(base_url=live.server.url) as c:
        r = await c.put("/api/v1/policies", json=policy, headers=live.as_("admin"))
        assert r.status_code in (200, 201), r.text
    token = await agent_token(live)
    bash = await run_hook(live, token, "claude-code", claude("Bash", {"command": "ls"}))
    assert decision(bash)[0] == "allow"
    # The admin's policy replaced the built-in one: Read now waits for a reviewer.
    read = await run_hook(live, token, "claude-code", claude("Read", {"file_path": "/a"}), 0.5)
    assert decision(read)[0] == "ask"


async def test_without_a_server_or_a_token_the_hook_asks(live: Live) -> None:
    event = json.dumps(claude("Bash", {"command": "ls"})).encode()
    for env in (
        {"ADE_URL": "http://127.0.0.1:9", "ADE_TOKEN": "ade_x"},
        {"ADE_URL": live.server.url, "ADE_TOKEN": ""},
        {"ADE_URL": live.server.url, "ADE_TOKEN": "not-a-token"},
    ):
        process = await asyncio.create_subprocess_exec(
            *ADE,
            "hook",
            "claude-code",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
        )
        out, err = await process.communicate(event)
        assert process.returncode == 0
        verdict, reason = decision(json.loads(out))
        assert verdict == "ask"
        assert "could not decide" in reason
        assert b"ade hook:" in err  # said to the person at the terminal too


# -- Cursor ------------------------------------------------------------------------------


async def test_cursor_shell_and_mcp_hooks(live: Live) -> None:
    token = await agent_token(live)
    shell = await Hook.start(
        live, token, "cursor", cursor("beforeShellExecution", command="npm i", cwd="/w")
    )
    task = await pending_task(live, "Shell")
    assert task["payload"]["arguments"] == {"command": "npm i", "cwd": "/w"}
    await decide(live, task, "approve")
    answer = (await shell.answer())[1]
    assert answer["permission"] == "allow"
    assert "approved by bob" in answer["user_message"]

    mcp_call = cursor(
        "beforeMCPExecution", tool_name="db_query", tool_input='{"sql": "DROP TABLE x"}'
    )
    hook = await Hook.start(live, token, "cursor", mcp_call)
    task = await pending_task(live, "mcp__db_query")
    assert task["payload"]["arguments"]["input"] == {"sql": "DROP TABLE x"}
    await decide(live, task, "reject", "no DDL from agents")
    answer = (await hook.answer())[1]
    assert answer["permission"] == "deny"
    assert "no DDL from agents" in answer["agent_message"]

    read = await run_hook(live, token, "cursor", cursor("beforeReadFile", file_path="/w/a"))
    assert read["permission"] == "allow"


# -- Claude Code --permission-prompt-tool (MCP) ------------------------------------------


async def test_permission_prompt_tool_over_mcp(live: Live) -> None:
    token = await agent_token(live, "headless")

    async def ask(c: Client, tool: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        result = await c.call_tool(
            "permission_prompt", {"tool_name": tool, "input": tool_input, "tool_use_id": "t1"}
        )
        assert not result.is_error, result
        return dict(json.loads(result.content[0].text))

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(f"{live.server.url}/mcp", http_client=http)) as c,
    ):
        assert await ask(c, "Grep", {"pattern": "TODO"}) == {
            "behavior": "allow",
            "updatedInput": {"pattern": "TODO"},
        }
        waiting = asyncio.create_task(ask(c, "Bash", {"command": "git push"}))
        task = await pending_task(live, "Bash")
        await decide(live, task, "reject", "not on Fridays")
        denied = await waiting
        assert denied["behavior"] == "deny"
        assert "not on Fridays" in denied["message"]

        waiting = asyncio.create_task(ask(c, "Edit", {"file_path": "/a.py"}))
        task = await pending_task(live, "Edit")
        await decide(live, task, "approve")
        assert await waiting == {"behavior": "allow", "updatedInput": {"file_path": "/a.py"}}
