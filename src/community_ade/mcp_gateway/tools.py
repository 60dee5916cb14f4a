"""Which MCP tools an agent sees, and their input schemas: pure, from its configuration.

An agent's configuration names catalogue tools (``Agent.tools``); the MCP server shows
exactly those it can serve, so what an admin enables in the dashboard is what the model
can call, and nothing else:

- **read tools** (``files.read``, ``git.log``, ``code.search``, ``locks.inspect``) answer
  at once, confined to the workspace roots; marked read-only.
- **change tools** (``files.write``, ``git.patch``, ``shell``, ``http.request``, and
  ``agent.call`` with the catalogue's ``tasks.submit``) propose a task of that type and
  return at once with its id, preview, risk and who must approve by when. Their input is
  ``{title, payload, resources?, description?, priority?}``, ``payload`` carrying the
  task type's own schema (``GET /api/v1/task-types``). A type outside the agent's
  ``allowed_task_types`` is not offered.
- **governance tools** (``wait_for_decision``, ``task_status``, ``cancel_task``): always,
  so an agent can follow what it proposed; and ``permission_prompt``, the tool Claude
  Code's ``--permission-prompt-tool`` calls to ask the reviewers about one tool call.
  ``wait_for_decision`` is a short long-poll (at most 25 s) the model calls again,
  because many clients cut a tool call off near 60 s.

Catalogue tools this server cannot serve (``web.search``: the network is not ours to
reach) are not listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from community_ade.approvals.decision_wait import MAX_WAIT_SECONDS

ToolKind = Literal["read", "change", "governance"]

_UUID = {"type": "string", "format": "uuid", "description": "The task's id."}
_PATH = {"type": "string", "minLength": 1, "maxLength": 4096}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input_schema: Mapping[str, Any]
    kind: ToolKind

    @property
    def read_only(self) -> bool:
        return self.kind != "change" and self.name != "cancel_task"


def _object(properties: Mapping[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }


READ_TOOLS: Mapping[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "files.read",
            "Read a file",
            "Read a text file under a workspace root (absolute path). Answers the lines "
            "asked for, numbered from 1.",
            _object(
                {
                    "path": _PATH,
                    "first_line": {"type": "integer", "minimum": 1, "default": 1},
                    "max_lines": {"type": "integer", "minimum": 1, "maximum": 5000},
                },
                ["path"],
            ),
            "read",
        ),
        ToolSpec(
            "git.log",
            "Git history",
            "The newest commits of a repository under a workspace root: hash, author, "
            "date and subject, optionally only those touching a path.",
            _object(
                {
                    "repo": _PATH,
                    "max_count": {"type": "integer", "minimum": 1, "maximum": 100},
                    "path": {"type": "string", "maxLength": 4096},
                },
                ["repo"],
            ),
            "read",
        ),
        ToolSpec(
            "code.search",
            "Search code",
            "Find lines containing a text (case-sensitive, literal) in the text files under "
            "a directory of a workspace root; answers path:line: text.",
            _object(
                {
                    "query": {"type": "string", "minLength": 1, "maxLength": 200},
                    "root": _PATH,
                    "max_results": {"type": "integer", "minimum": 1, "maximum": 500},
                },
                ["query", "root"],
            ),
            "read",
        ),
        ToolSpec(
            "locks.inspect",
            "Inspect apply locks",
            "Who holds or waits for apply locks: one resource (e.g. repo:acme/api), or "
            "every held resource when none is named.",
            _object({"resource": {"type": "string", "minLength": 1, "maxLength": 200}}),
            "read",
        ),
    )
}

GOVERNANCE_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "wait_for_decision",
        "Wait for the reviewers' decision",
        f"Wait up to wait_seconds (at most {MAX_WAIT_SECONDS:g}) for the decision on a task "
        "you proposed. Answers the decision and the reviewers' comments, or that it is still "
        "waiting and on whom: then call it again.",
        _object(
            {
                "task_id": _UUID,
                "wait_seconds": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
            },
            ["task_id"],
        ),
        "governance",
    ),
    ToolSpec(
        "permission_prompt",
        "Ask the reviewers for permission",
        "For Claude Code's --permission-prompt-tool (not for the model): asks Community "
        f"ADE's reviewers whether a tool call may run, waiting up to {MAX_WAIT_SECONDS:g} s. "
        'Answers {"behavior": "allow", "updatedInput": …} or {"behavior": "deny", '
        '"message": …} with the reviewer\'s comment.',
        _object(
            {
                "tool_name": {"type": "string", "minLength": 1, "maxLength": 200},
                "input": {"type": "object"},
                "tool_use_id": {"type": "string", "maxLength": 200},
            },
            ["tool_name", "input"],
        ),
        "governance",
    ),
    ToolSpec(
        "task_status",
        "Task status",
        "The state of a task you proposed, with its result or error once applied.",
        _object({"task_id": _UUID}, ["task_id"]),
        "governance",
    ),
    ToolSpec(
        "cancel_task",
        "Cancel a task",
        "Cancel a task you proposed that has not begun applying.",
        _object(
            {"task_id": _UUID, "reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
            ["task_id", "reason"],
        ),
        "governance",
    ),
)

# Catalogue tool id -> the task type its change tool proposes.
CHANGE_TOOLS: Mapping[str, str] = {
    "files.write": "files.write",
    "git.patch": "git.patch",
    "shell": "shell",
    "http.request": "http.request",
    "tasks.submit": "agent.call",
}

_RESOURCES = {
    "type": "array",
    "maxItems": 100,
    "description": "What the change touches, for routing and locks (type, id, actions).",
    "items": {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "id": {"type": "string"},
            "actions": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["type", "id"],
    },
}


def change_tool(
    task_type: str, description: str, payload_schema: Mapping[str, Any] | None
) -> ToolSpec:
    """The tool proposing a ``task_type`` task, with the type's payload schema."""
    payload = dict(payload_schema) if payload_schema else {"type": "object"}
    return ToolSpec(
        task_type,
        f"Propose {task_type}",
        f"Propose a {task_type} task for human review; it is applied only once approved. "
        f"{description} Answers at once with the task id, its preview, risk and who must "
        "approve by when: then call wait_for_decision.",
        _object(
            {
                "title": {"type": "string", "minLength": 1, "maxLength": 300},
                "description": {"type": "string", "maxLength": 10_000},
                "payload": payload,
                "resources": _RESOURCES,
                "priority": {"type": "integer", "minimum": 0, "maximum": 1000},
            },
            ["title", "payload"],
        ),
        "change",
    )


def tools_for(
    enabled: Iterable[str],
    allowed_task_types: Iterable[str],
    task_type: Callable[[str], tuple[str, Mapping[str, Any] | None] | None],
) -> list[ToolSpec]:
    """The tools of an agent with ``enabled`` catalogue tools and ``allowed_task_types``
    (empty: any). ``task_type(name)`` gives an installed type's description and payload
    schema, or None when it is not installed."""
    on = set(enabled)
    allowed = set(allowed_task_types)
    tools = [READ_TOOLS[name] for name in sorted(on & set(READ_TOOLS))]
    for catalogue_id in sorted(on & set(CHANGE_TOOLS)):
        type_name = CHANGE_TOOLS[catalogue_id]
        installed = task_type(type_name)
        if installed is None or (allowed and type_name not in allowed):
            continue
        tools.append(change_tool(type_name, *installed))
    tools.extend(GOVERNANCE_TOOLS)
    return tools
