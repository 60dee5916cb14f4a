"""``ade agents``: list, show, create, set, versions, revert; and ``run``, an agent process
that holds a lease over HTTP until it is stopped (for demos and tests).

Changes are attributed to the user named with ``--as`` (the audit log names who did it)
and checked like the same change over the API: the user must own the agent or be an admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import uuid
from typing import Annotated, Any

import httpx
import typer
from rich.box import SIMPLE
from rich.table import Table

from community_ade.agents.config import AgentConfig, Parameters
from community_ade.agents.service import AgentChanges, AgentService, config_of
from community_ade.auth import service as auth
from community_ade.cli.common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    OPERATOR,
    acting_principal,
    console,
    err_console,
    run,
)
from community_ade.infra.aio import Incident, wait_event
from community_ade.runtime import Runtime

log = logging.getLogger(__name__)

app = typer.Typer(help="Manage agents: configuration, versions, health.", no_args_is_help=True)

ActingUser = Annotated[
    str, typer.Option("--as", help="The user making the change (its owner or an admin).")
]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat for more).")]
Tools = Annotated[list[str] | None, typer.Option("--tool", help="A tool id (repeat for more).")]


def _params(
    temperature: float | None, top_p: float | None, max_tokens: int | None
) -> dict[str, Any]:
    given = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    return {k: v for k, v in given.items() if v is not None}


@app.command("list")
def list_agents(
    tag: Annotated[str | None, typer.Option(help="Only agents with this tag.")] = None,
    model: Annotated[str | None, typer.Option(help="Only agents of this model.")] = None,
) -> None:
    """List agents with their model, version and health."""

    async def action(rt: Runtime) -> list[tuple[str, ...]]:
        async with rt.sessions() as session:
            service = AgentService.of(rt, session)
            reader = OPERATOR
            agents, _ = await service.list_agents(reader, tag=tag, model=model, limit=100)
            rows: list[tuple[str, ...]] = []
            for agent in agents:
                health = await service.assess(agent)
                rows.append(
                    (
                        agent.name,
                        agent.model,
                        str(agent.config_version),
                        ", ".join(agent.tags) or "-",
                        health.status.value,
                        f"{health.active_tasks}/{health.capacity}",
                    )
                )
            return rows

    table = Table(box=SIMPLE)
    for column in ("name", "model", "version", "tags", "health", "load"):
        table.add_column(column)
    for row in run(action):
        table.add_row(*row)
    console.print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="The agent.")]) -> None:
    """Show an agent's configuration and health as JSON."""

    async def action(rt: Runtime) -> dict[str, Any]:
        async with rt.sessions() as session:
            service = AgentService.of(rt, session)
            agent = await service.get(OPERATOR, (await auth.get_agent_by_name(session, name)).id)
            health = await service.assess(agent)
            return {
                "id": str(agent.id),
                "version": agent.config_version,
                **config_of(agent).document(),
                "health": {
                    "status": health.status.value,
                    "reasons": list(health.reasons),
                    "active_tasks": health.active_tasks,
                    "capacity": health.capacity,
                    "success_rate": health.success_rate,
                    "last_seen": health.last_seen.isoformat() if health.last_seen else None,
                },
            }

    console.print_json(json.dumps(run(action)))


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="3 to 100 characters, unique.")],
    model: Annotated[str, typer.Option(help="A model id from the catalogue.")],
    acting: ActingUser,
    description: Annotated[str, typer.Option(help="What it does.")] = "",
    tag: Tags = None,
    tool: Tools = None,
    system_prompt: Annotated[str, typer.Option(help="Its system prompt.")] = "",
    temperature: Annotated[float | None, typer.Option(help="0 to 2.")] = None,
    top_p: Annotated[float | None, typer.Option(help="0 to 1.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="1 to the context window.")] = None,
    capacity: Annotated[int, typer.Option(help="Concurrent tasks, 1 to 100.")] = 4,
) -> None:
    """Register an agent owned by the --as user (version 1)."""
    config = AgentConfig(
        name=name,
        model=model,
        description=description,
        tags=tuple(tag or ()),
        system_prompt=system_prompt,
        tools=tuple(tool or ()),
        parameters=Parameters.from_document(_params(temperature, top_p, max_tokens)),
        capacity=capacity,
    )

    async def action(rt: Runtime) -> uuid.UUID:
        async with rt.sessions.begin() as session:
            agent = await AgentService.of(rt, session).create(
                await acting_principal(session, acting), config
            )
            return agent.id

    console.print(f"created agent {name}; id {run(action)}", soft_wrap=True)


@app.command("set")
def set_fields(
    name: Annotated[str, typer.Argument(help="The agent.")],
    acting: ActingUser,
    model: Annotated[str | None, typer.Option(help="A model id from the catalogue.")] = None,
    description: Annotated[str | None, typer.Option(help="What it does.")] = None,
    tag: Tags = None,
    tool: Tools = None,
    system_prompt: Annotated[str | None, typer.Option(help="Its system prompt.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 to 2.")] = None,
    top_p: Annotated[float | None, typer.Option(help="0 to 1.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="1 to the context window.")] = None,
    capacity: Annotated[int | None, typer.Option(help="Concurrent tasks, 1 to 100.")] = None,
    comment: Annotated[str, typer.Option(help="Why (kept with the version).")] = "",
) -> None:
    """Change an agent: a new version with the fields given (--tag/--tool replace the list)."""
    parameters = _params(temperature, top_p, max_tokens)
    changes = AgentChanges(
        model=model,
        description=description,
        tags=tag,
        tools=tool,
        system_prompt=system_prompt,
        parameters=parameters or None,
        capacity=capacity,
    )

    async def action(rt: Runtime) -> int:
        async with rt.sessions.begin() as session:
            agent = await auth.get_agent_by_name(session, name)
            principal = await acting_principal(session, acting)
            saved = await AgentService.of(rt, session).update(
                principal, agent.id, changes, comment=comment
            )
            return saved.config_version

    console.print(f"agent {name} is at version {run(action)}")


@app.command("versions")
def versions(name: Annotated[str, typer.Argument(help="The agent.")]) -> None:
    """List an agent's versions, newest first."""

    async def action(rt: Runtime) -> list[tuple[str, str, str]]:
        async with rt.sessions() as session:
            agent = await auth.get_agent_by_name(session, name)
            rows = await AgentService.of(rt, session).versions(OPERATOR, agent.id)
            return [
                (str(v.version), v.created_at.strftime("%Y-%m-%d %H:%M"), v.comment or "-")
                for v in rows
            ]

    table = Table(box=SIMPLE)
    for column in ("version", "saved", "comment"):
        table.add_column(column)
    for row in run(action):
        table.add_row(*row)
    console.print(table)


@app.command("revert")
def revert(
    name: Annotated[str, typer.Argument(help="The agent.")],
    version: Annotated[int, typer.Argument(help="The version whose configuration to restore.")],
    acting: ActingUser,
) -> None:
    """Restore an older version's configuration, as a new version."""

    async def action(rt: Runtime) -> int:
        async with rt.sessions.begin() as session:
            agent = await auth.get_agent_by_name(session, name)
            principal = await acting_principal(session, acting)
            saved = await AgentService.of(rt, session).revert(principal, agent.id, version)
            return saved.config_version

    console.print(f"agent {name} is at version {run(action)} (configuration of version {version})")


# -- an agent process -------------------------------------------------------------------


async def hold_lease(server: str, token: str, lease_seconds: float | None) -> None:
    """Open a lease, renew it every third of its length, close it on SIGINT/SIGTERM.

    Once running it outlives the server's hiccups: a heartbeat that cannot reach the
    server or gets a 5xx is tried again at the next renewal (logged once per incident),
    and a lease the server no longer knows (404: it lapsed meanwhile, or Redis lost it
    in a restart) is replaced by a new one. Only a refusal (a revoked token) ends it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    headers = {"Authorization": f"Bearer {token}"}
    body = {} if lease_seconds is None else {"lease_seconds": lease_seconds}
    async with httpx.AsyncClient(base_url=server, headers=headers, timeout=10) as client:

        async def open_lease() -> dict[str, Any]:
            opened = await client.post("/api/v1/leases", json=body)
            if opened.status_code >= 500:
                raise httpx.HTTPStatusError("server error", request=opened.request, response=opened)
            if opened.status_code != 201:
                raise RuntimeError(f"the server refused the lease: {opened.text}")
            lease: dict[str, Any] = opened.json()
            console.print(
                f"holding lease {lease['id']} for agent {lease['agent_id']}", soft_wrap=True
            )
            return lease

        lease = await open_lease()
        incident = Incident(f"agent lease heartbeats to {server}", log)
        try:
            while not await wait_event(stop, lease["renew_every_seconds"]):
                try:
                    beat = await client.post(f"/api/v1/leases/{lease['id']}/heartbeat")
                    if beat.status_code == 404:
                        console.print(f"lease {lease['id']} is gone (lapsed); opening a new one")
                        lease = await open_lease()
                    elif beat.status_code >= 500:
                        raise httpx.HTTPStatusError(
                            "server error", request=beat.request, response=beat
                        )
                    elif beat.status_code != 200:
                        raise RuntimeError(f"heartbeat refused: {beat.text}")
                except httpx.HTTPError as exc:
                    incident.failed(exc)  # the next renewal tries again
                else:
                    incident.cleared()
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await client.delete(f"/api/v1/leases/{lease['id']}")
            console.print("lease closed")


@app.command("run")
def run_agent(
    server: Annotated[str, typer.Option(help="The API's base URL.")] = "http://127.0.0.1:8000",
    lease_seconds: Annotated[
        float | None, typer.Option(help="Lease length (default: the server's).")
    ] = None,
) -> None:
    """Be the agent whose token is in ADE_AGENT_TOKEN: hold a lease with heartbeats until
    stopped (Ctrl-C, SIGTERM), so the agent shows as online."""
    token = os.environ.get("ADE_AGENT_TOKEN", "").strip()
    if not token:
        err_console.print("[red]error:[/red] set ADE_AGENT_TOKEN to the agent's API token")
        raise typer.Exit(EXIT_FAILED)
    try:
        asyncio.run(hold_lease(server, token, lease_seconds))
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] cannot reach {server}: {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except RuntimeError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from None
