"""``ade hook``: the permission hooks of coding agents (docs/agents-connect.md).

``main`` runs ``ade hook claude-code`` / ``ade hook cursor`` without importing Typer or
the rest of the CLI (see ``community_ade.cli.main``): a hook starts once per tool call.
"""

from __future__ import annotations

import typer

from community_ade.hooks import gate

app = typer.Typer(
    help="Permission hooks for coding agents: each tool call is reviewed in Community ADE."
    "\n\nConfigured by ADE_URL, ADE_TOKEN (the agent's token) and ADE_HOOK_WAIT_SECONDS "
    f"(default {gate.DEFAULT_WAIT_SECONDS:g}; keep it below the harness's hook timeout).",
    no_args_is_help=True,
)

HARNESS_HELP = {
    "claude-code": "Claude Code PreToolUse hook: the hook JSON on stdin, the "
    "permissionDecision (allow / deny with the reviewer's comment / ask when nobody decided "
    "in time) on stdout. Read-only tools (Read, Grep, Glob, LS …) are allowed at once by "
    "the built-in policy; Bash, Write, Edit and MCP tools wait for a reviewer.",
    "cursor": "Cursor beforeShellExecution / beforeMCPExecution / beforeReadFile hook: the "
    "hook JSON on stdin, {permission, user_message, agent_message} on stdout.",
}


def _command(harness: str) -> None:
    def command() -> None:
        raise typer.Exit(gate.run(harness))

    command.__doc__ = HARNESS_HELP[harness]
    app.command(harness)(command)


for _harness in HARNESS_HELP:
    _command(_harness)
