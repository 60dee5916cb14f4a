"""The coding agents' permission formats (``community_ade.hooks.harness``): pure."""

from __future__ import annotations

from typing import Any

import pytest

from community_ade.hooks.harness import (
    BadEvent,
    Verdict,
    claude_code_answer,
    claude_code_call,
    cursor_answer,
    cursor_call,
    permission_prompt_answer,
    permission_prompt_call,
    verdict_of,
)


def test_a_claude_code_tool_call_becomes_an_agent_call_task() -> None:
    call = claude_code_call(
        {
            "session_id": "s1",
            "cwd": "/w",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": "make test\nmake lint", "description": "tests"},
        }
    )
    assert call.task() == {
        "type": "agent.call",
        "title": "Claude Code · Bash: make test",
        "description": call.description,
        "payload": {
            "function": "Bash",
            "arguments": {"command": "make test\nmake lint", "description": "tests"},
        },
    }
    assert "session s1" in call.description
    assert "in /w" in call.description


@pytest.mark.parametrize(
    ("name", "function"),
    [
        ("mcp__github__create_issue", "mcp__github__create_issue"),
        ("Weird Tool/π", "Weird_Tool__"),
        ("9lives", "_9lives"),
        ("x" * 500, "x" * 199 + "…"),
    ],
)
def test_tool_names_become_valid_function_names(name: str, function: str) -> None:
    assert claude_code_call({"tool_name": name, "tool_input": {}}).function == function


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"tool_name": ""},
        {"tool_name": "Bash", "tool_input": ["ls"]},
        {"tool_name": 3},
    ],
)
def test_a_malformed_claude_code_event_is_refused(event: dict[str, Any]) -> None:
    with pytest.raises(BadEvent):
        claude_code_call(event)


def test_titles_and_descriptions_are_bounded() -> None:
    call = claude_code_call(
        {"tool_name": "Bash", "tool_input": {"command": "x" * 10_000}, "cwd": "/" * 10_000}
    )
    assert len(call.title) == 300
    assert len(call.description) == 2000


def test_cursor_events() -> None:
    shell = cursor_call(
        {
            "hook_event_name": "beforeShellExecution",
            "command": "ls",
            "cwd": "/w",
            "workspace_roots": ["/w", 3],
            "conversation_id": "c1",
        }
    )
    assert (shell.function, shell.arguments) == ("Shell", {"command": "ls", "cwd": "/w"})
    assert "conversation c1" in shell.description
    mcp_string = cursor_call(
        {
            "hook_event_name": "beforeMCPExecution",
            "tool_name": "q",
            "tool_input": '{"a": 1}',
            "url": "http://mcp",
        }
    )
    assert mcp_string.function == "mcp__q"
    assert mcp_string.arguments == {"input": {"a": 1}, "server_url": "http://mcp"}
    mcp_object = cursor_call(
        {"hook_event_name": "beforeMCPExecution", "tool_name": "q", "tool_input": {"a": 1}}
    )
    assert mcp_object.arguments == {"input": {"a": 1}}
    not_json = cursor_call(
        {"hook_event_name": "beforeMCPExecution", "tool_name": "q", "tool_input": "{oops"}
    )
    assert not_json.arguments == {"input": {"raw": "{oops"}}
    read = cursor_call(
        {"hook_event_name": "beforeReadFile", "file_path": "/w/.env", "content": "SECRET=1"}
    )
    assert read.arguments == {"file_path": "/w/.env"}  # the content is not sent


@pytest.mark.parametrize(
    "event",
    [
        {"hook_event_name": "afterFileEdit"},
        {"hook_event_name": "beforeShellExecution"},
        {"hook_event_name": "beforeReadFile"},
        {"hook_event_name": "beforeMCPExecution", "tool_name": "q", "tool_input": 3},
    ],
)
def test_a_malformed_cursor_event_is_refused(event: dict[str, Any]) -> None:
    with pytest.raises(BadEvent):
        cursor_call(event)


def status(outcome: str, *reviews: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "task_id": "t1",
        "outcome": outcome,
        "decided": outcome != "waiting",
        "reviews": [{"reviewer": r, "decision": d, "comment": c} for r, d, c in reviews],
    }


@pytest.mark.parametrize(
    ("document", "decision", "says"),
    [
        (status("approved", ("bob", "approve", "ok")), "allow", "approved by bob: ok"),
        (status("approved"), "allow", "approved by policy"),
        (status("applied", ("bob", "approve", "")), "allow", "approved by bob"),
        (status("rejected", ("bob", "reject", "no")), "deny", "rejected by bob: no"),
        (status("rejected"), "deny", "rejected by a reviewer"),
        (
            status("changes_requested", ("carol", "request_changes", "smaller")),
            "deny",
            "changes requested by carol: smaller",
        ),
        (status("expired"), "deny", "the request was expired"),
        (status("cancelled"), "deny", "the request was cancelled"),
        (status("waiting"), "ask", "no reviewer decided within 30 s"),
    ],
)
def test_verdicts(document: dict[str, Any], decision: str, says: str) -> None:
    verdict = verdict_of(document, waited=30)
    assert verdict.decision == decision
    assert says in verdict.reason
    assert "task t1" in verdict.reason


def test_a_long_comment_is_cut() -> None:
    verdict = verdict_of(status("rejected", ("bob", "reject", "x" * 5000)), waited=1)
    assert len(verdict.reason) == 1000


def test_answers_in_each_harness_format() -> None:
    deny = Verdict("deny", "rejected by bob")
    assert claude_code_answer(deny) == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": "rejected by bob",
        }
    }
    cursor = cursor_answer(Verdict("ask", "later"))
    assert cursor["permission"] == "ask"
    assert cursor["user_message"] == cursor["agent_message"] == "later"
    assert permission_prompt_answer(Verdict("allow", "ok"), {"a": 1}) == {
        "behavior": "allow",
        "updatedInput": {"a": 1},
    }
    # The permission-prompt format has no "ask": not decided is a deny.
    assert permission_prompt_answer(Verdict("ask", "later"), {}) == {
        "behavior": "deny",
        "message": "later",
    }
    assert permission_prompt_call("Edit", {"file_path": "/a"}, "tu1").function == "Edit"
