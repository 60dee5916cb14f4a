"""The coding agents' permission formats, both ways: a harness's tool call as an
``agent.call`` task, and a decision as the answer the harness expects. Pure; standard
library only, so ``ade hook`` starts fast (it imports nothing else of the server).

Harnesses and their documented formats:

- **Claude Code** ``PreToolUse`` command hook: stdin ``{session_id, cwd,
  hook_event_name, tool_name, tool_input, tool_use_id, …}``; stdout ``{"hookSpecificOutput":
  {"hookEventName": "PreToolUse", "permissionDecision": "allow"|"deny"|"ask",
  "permissionDecisionReason": …}}`` with exit code 0.
- **Claude Code** ``--permission-prompt-tool`` (the MCP tool ``permission_prompt``):
  ``{tool_name, input, tool_use_id}`` in, ``{"behavior": "allow", "updatedInput": …}`` or
  ``{"behavior": "deny", "message": …}`` out.
- **Cursor** ``beforeShellExecution`` (``command``, ``cwd``), ``beforeMCPExecution``
  (``tool_name``, ``tool_input``, ``url`` or ``command``) and ``beforeReadFile``
  (``file_path``), each with ``conversation_id`` and ``workspace_roots``; stdout
  ``{"permission": "allow"|"deny"|"ask", "user_message": …, "agent_message": …}``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, NamedTuple

TASK_TYPE = "agent.call"
MAX_TITLE = 300
MAX_DESCRIPTION = 2000
MAX_REASON = 1000
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.:-]")

Decision = Literal["allow", "deny", "ask"]


class BadEvent(ValueError):
    """The harness sent something that is not the documented hook input."""


# NamedTuples, not dataclasses: ``dataclasses`` imports ``inspect``, a third of the
# hook's start-up time.
class ToolCall(NamedTuple):
    """One tool call a harness asks permission for, as an ``agent.call`` task."""

    function: str
    arguments: dict[str, Any]
    title: str
    description: str

    def task(self) -> dict[str, Any]:
        """The ``POST /tasks`` body."""
        return {
            "type": TASK_TYPE,
            "title": self.title,
            "description": self.description,
            "payload": {"function": self.function, "arguments": self.arguments},
        }


class Verdict(NamedTuple):
    decision: Decision
    reason: str


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _function_name(name: object) -> str:
    """A tool name as an ``agent.call`` function name (letters, digits, ``_.:-``)."""
    if not isinstance(name, str) or not name.strip():
        raise BadEvent("tool_name is missing")
    cleaned = _NOT_IN_NAME.sub("_", name.strip())
    return _cut(cleaned if cleaned[0].isalpha() or cleaned[0] == "_" else "_" + cleaned, 200)


def _object(value: object, what: str) -> dict[str, Any]:
    if isinstance(value, str):  # Cursor sends an MCP tool's input as a JSON string
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return {"raw": value}
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadEvent(f"{what} must be a JSON object")
    return value


def _gist(function: str, arguments: dict[str, Any]) -> str:
    """What the title shows of a call: the command, or the file it touches."""
    for key in ("command", "file_path", "notebook_path", "path", "pattern", "url"):
        value = arguments.get(key)
        if isinstance(value, str) and value.strip():
            return f"{function}: {value.strip().splitlines()[0]}"
    return function


def _call(
    harness: str, function: str, arguments: dict[str, Any], where: dict[str, Any]
) -> ToolCall:
    context = ", ".join(f"{k} {v}" for k, v in where.items() if isinstance(v, str) and v)
    return ToolCall(
        function=function,
        arguments=arguments,
        title=_cut(f"{harness} · {_gist(function, arguments)}", MAX_TITLE),
        description=_cut(
            f"{harness} asks to run its tool {function}"
            + (f" ({context})" if context else "")
            + ". Approving lets the agent run exactly these arguments once.",
            MAX_DESCRIPTION,
        ),
    )


def claude_code_call(event: dict[str, Any]) -> ToolCall:
    """A ``PreToolUse`` hook input."""
    function = _function_name(event.get("tool_name"))
    arguments = _object(event.get("tool_input"), "tool_input")
    where = {"session": event.get("session_id"), "in": event.get("cwd")}
    return _call("Claude Code", function, arguments, where)


def permission_prompt_call(
    tool_name: object, tool_input: object, tool_use_id: object = None
) -> ToolCall:
    """The arguments of Claude Code's ``--permission-prompt-tool`` call."""
    function = _function_name(tool_name)
    arguments = _object(tool_input, "input")
    return _call("Claude Code", function, arguments, {"tool use": tool_use_id})


CURSOR_EVENTS = ("beforeShellExecution", "beforeMCPExecution", "beforeReadFile")


def cursor_call(event: dict[str, Any]) -> ToolCall:
    """A Cursor ``beforeShellExecution`` / ``beforeMCPExecution`` / ``beforeReadFile``
    hook input. Shell commands are the function ``Shell``, MCP tools ``mcp__<tool>`` (the
    ``mcp__*`` glob, as for Claude Code), file reads ``ReadFile`` (without the content)."""
    name = event.get("hook_event_name")
    roots = event.get("workspace_roots")
    where = {
        "conversation": event.get("conversation_id"),
        "in": ", ".join(r for r in roots if isinstance(r, str)) if isinstance(roots, list) else "",
    }
    if name == "beforeShellExecution":
        command = event.get("command")
        if not isinstance(command, str):
            raise BadEvent("command is missing")
        arguments: dict[str, Any] = {"command": command}
        if isinstance(event.get("cwd"), str):
            arguments["cwd"] = event["cwd"]
        return _call("Cursor", "Shell", arguments, where)
    if name == "beforeMCPExecution":
        function = "mcp__" + _function_name(event.get("tool_name"))
        arguments = {"input": _object(event.get("tool_input"), "tool_input")}
        for key in ("url", "command"):  # which MCP server
            if isinstance(event.get(key), str):
                arguments["server_" + key] = event[key]
        return _call("Cursor", _cut(function, 200), arguments, where)
    if name == "beforeReadFile":
        path = event.get("file_path")
        if not isinstance(path, str):
            raise BadEvent("file_path is missing")
        return _call("Cursor", "ReadFile", {"file_path": path}, where)
    raise BadEvent(f"hook_event_name must be one of {', '.join(CURSOR_EVENTS)}, got {name!r}")


# -- decisions ----------------------------------------------------------------------


def _said(reviews: list[dict[str, Any]], decisions: tuple[str, ...]) -> str:
    """Who decided and what they wrote."""
    parts = [
        f"{r.get('reviewer', '?')}: {r['comment']}" if r.get("comment") else str(r.get("reviewer"))
        for r in reviews
        if r.get("decision") in decisions
    ]
    return "; ".join(parts)


def verdict_of(status: dict[str, Any], *, waited: float) -> Verdict:
    """The harness's answer from a task's decision status (``GET /tasks/{id}/decision``,
    the MCP ``wait_for_decision`` answer): approved → allow; rejected, changes requested,
    expired, cancelled → deny with the reviewers' comments; still waiting → ask, the
    task left in the queue."""
    task = status.get("task_id", "?")
    outcome = status.get("outcome")
    reviews = [r for r in status.get("reviews") or [] if isinstance(r, dict)]
    if outcome in ("approved", "applied"):
        who = _said(reviews, ("approve",))
        reason = f"approved by {who}" if who else "approved by policy"
        return Verdict("allow", _cut(f"Community ADE: {reason} (task {task})", MAX_REASON))
    if outcome == "waiting" or not status.get("decided", True):
        return Verdict(
            "ask",
            _cut(
                f"Community ADE: no reviewer decided within {waited:g} s; the request waits "
                f"in the review queue as task {task}",
                MAX_REASON,
            ),
        )
    if outcome == "rejected":
        reason = f"rejected by {_said(reviews, ('reject',)) or 'a reviewer'}"
    elif outcome == "changes_requested":
        reason = f"changes requested by {_said(reviews, ('request_changes',)) or 'a reviewer'}"
    else:
        reason = f"the request was {outcome}"
    return Verdict("deny", _cut(f"Community ADE: {reason} (task {task})", MAX_REASON))


def claude_code_answer(verdict: Verdict) -> dict[str, Any]:
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": verdict.decision,
            "permissionDecisionReason": verdict.reason,
        }
    }


def cursor_answer(verdict: Verdict) -> dict[str, Any]:
    # Cursor's documentation has named the messages both ways; it reads the ones it knows.
    return {
        "permission": verdict.decision,
        "user_message": verdict.reason,
        "agent_message": verdict.reason,
        "userMessage": verdict.reason,
        "agentMessage": verdict.reason,
    }


def permission_prompt_answer(verdict: Verdict, tool_input: dict[str, Any]) -> dict[str, Any]:
    """``--permission-prompt-tool`` has no "ask": anything but allow is a deny."""
    if verdict.decision == "allow":
        return {"behavior": "allow", "updatedInput": tool_input}
    return {"behavior": "deny", "message": verdict.reason}


ANSWERS = {"claude-code": claude_code_answer, "cursor": cursor_answer}
EVENTS = {"claude-code": claude_code_call, "cursor": cursor_call}
