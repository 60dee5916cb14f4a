"""``ade mcp``: the MCP server over stdin/stdout, for an agent host that starts it
(Claude Code, Cursor, Letta Code …). It serves the agent whose token is in ``ADE_TOKEN``,
on this machine's configuration (the same ``ADE_*`` settings as ``ade serve``); a host
on another machine connects to ``ade serve``'s ``/mcp`` over HTTP instead."""

from __future__ import annotations

import os

import typer
from mcp.server.stdio import stdio_server

from community_ade.auth.service import authenticate_token
from community_ade.cli.common import EXIT_USAGE, err_console, run
from community_ade.errors import InvalidInput
from community_ade.mcp_gateway.server import Gateway
from community_ade.runtime import Runtime
from community_ade.storage.models import utcnow


def mcp() -> None:
    """Serve an agent's tools over MCP on stdin/stdout (its token in ADE_TOKEN).

    The agent sees exactly the tools its configuration enables: read tools answer at
    once; change tools propose a task for review and return its id; wait_for_decision
    answers the reviewers' decision. Logs go to stderr.
    """
    token = os.environ.get("ADE_TOKEN", "").strip()
    if not token:
        err_console.print(
            "[red]error:[/red] set ADE_TOKEN to the agent's API token "
            "(ade agents show NAME, then POST /api/v1/agents/{id}/tokens, or the dashboard)"
        )
        raise typer.Exit(EXIT_USAGE)

    async def main(runtime: Runtime) -> None:
        async with runtime.sessions.begin() as session:  # a wrong token is said at once
            principal = await authenticate_token(session, token, now=utcnow())
        if principal.kind != "agent":
            raise InvalidInput(
                f"ADE_TOKEN belongs to the person {principal.name!r}: `ade mcp` serves an "
                "agent, so use a token of the agent"
            )
        gateway = Gateway(runtime, token=token)
        try:
            async with stdio_server() as (read, write):
                await gateway.server.run(
                    read, write, gateway.server.create_initialization_options()
                )
        finally:
            await gateway.close()

    run(main)
