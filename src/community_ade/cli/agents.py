"""``ade agents``: list, show, create, set, versions, revert; and ``run``: an agent run
from its stored configuration toward a goal (``community_ade.runner``), or, without a
goal, a process that holds the agent's lease over HTTP until it is stopped.

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
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.box import SIMPLE
from rich.markup import escape
from rich.table import Table

from community_ade.agents.config import AgentConfig, Parameters
from community_ade.agents.service import AgentChanges, AgentService, config_of
from community_ade.auth import service as auth
from community_ade.cli.common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    OPERATOR,
    acting_principal,
    console,
    err_console,
    run,
)
from community_ade.client import AdeClient, AdeProblem
from community_ade.defaults import DEFAULT_URL
from community_ade.errors import AdeError
from community_ade.infra.aio import Incident, wait_event
from community_ade.runner.endpoints import ModelUnavailable
from community_ade.runtime import Runtime

T = TypeVar("T")

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


GOAL_FILE_MAX_BYTES = 200_000


def _goal(goal: str | None, goal_file: Path | None) -> str | None:
    if goal is not None and goal_file is not None:
        raise typer.BadParameter("give --goal or --goal-file, not both")
    if goal_file is None:
        return goal
    try:
        with goal_file.open("rb") as stream:
            data = stream.read(GOAL_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {goal_file}: {exc.strerror}") from None
    if len(data) > GOAL_FILE_MAX_BYTES:
        raise typer.BadParameter(f"{goal_file} is over {GOAL_FILE_MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise typer.BadParameter(f"{goal_file} is not UTF-8 text") from None


async def _until_stopped(work: Coroutine[Any, Any, T]) -> T:
    """``work``, cancelled on SIGINT/SIGTERM (its ``finally`` blocks close the lease)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run_goal(
    server: str,
    token: str,
    name: str,
    goal: str,
    *,
    wait: float | None,
    script: Path | None,
    served_model: str | None,
) -> str:
    # Imported here: pydantic-ai takes seconds to import, and only a run needs it.
    from community_ade.runner.agent_run import run_agent
    from community_ade.runner.scripted import load_script, scripted_model

    model = None if script is None else scripted_model(load_script(script))
    async with AdeClient(server, token) as client:
        result = await _until_stopped(
            run_agent(
                client,
                name,
                goal,
                model=model,
                served_name=served_model,
                decision_timeout=wait,
                say=_say,
            )
        )
    return result.output


@app.command("run")
def run_agent_command(
    name: Annotated[
        str | None, typer.Argument(help="The agent to run (with --goal or --goal-file).")
    ] = None,
    goal: Annotated[str | None, typer.Option(help="What the agent should do.")] = None,
    goal_file: Annotated[
        Path | None, typer.Option(help="A UTF-8 file holding the goal (at most 200 kB).")
    ] = None,
    server: Annotated[str, typer.Option(help="The API's base URL.")] = DEFAULT_URL,
    decision_timeout: Annotated[
        float | None,
        typer.Option(help="Longest wait for a reviewers' decision per proposal (seconds)."),
    ] = None,
    served_model: Annotated[
        str | None,
        typer.Option(
            help="The model's name on the endpoint, when it differs from the catalogue's "
            "(Ollama: llama3.1:70b).",
            max=200,
        ),
    ] = None,
    script: Annotated[
        Path | None,
        typer.Option(
            help="Replay the tool calls of this JSON file instead of asking an LLM "
            "(rehearse a governance flow; docs/agents.md)."
        ),
    ] = None,
    lease_seconds: Annotated[
        float | None, typer.Option(help="Lease length, without a goal (default: the server's).")
    ] = None,
) -> None:
    """Be the agent whose token is in ADE_AGENT_TOKEN.

    With NAME and --goal (or --goal-file): run it as an LLM agent built from its stored
    configuration (model, system prompt, temperature/top_p/max tokens, exactly its enabled
    tools), online while it works; every change it makes is a task for reviewers. The
    model's endpoint comes from the environment: OPENAI_BASE_URL / OPENAI_API_KEY (OpenAI,
    Ollama, vLLM…), ANTHROPIC_API_KEY (see docs/agents.md). No model or
    an unreachable one: exit 2.

    Without a goal: hold the agent's lease with heartbeats until stopped, so it shows
    online. Ctrl-C or SIGTERM stops either cleanly (the lease is released)."""
    token = os.environ.get("ADE_AGENT_TOKEN", "").strip()
    if not token:
        err_console.print("[red]error:[/red] set ADE_AGENT_TOKEN to the agent's API token")
        raise typer.Exit(EXIT_FAILED)
    text = _goal(goal, goal_file)
    if text is None:
        _hold(server, token, lease_seconds)
        return
    if name is None:
        raise typer.BadParameter("name the agent to run with --goal")
    try:
        work = _run_goal(
            server,
            token,
            name,
            text,
            wait=decision_timeout,
            script=script,
            served_model=served_model,
        )
        output = asyncio.run(work)
    except ModelUnavailable as exc:
        err_console.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(EXIT_USAGE) from None  # 2: no usable model
    except asyncio.CancelledError:
        console.print(f"agent {escape(name)} stopped; lease released")
        return
    except (AdeError, AdeProblem) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_FAILED) from None
    except httpx.TransportError as exc:
        err_console.print(f"[red]error:[/red] cannot reach {server}: {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    _say(output)


def _say(text: str) -> None:
    """Print what the model or a reviewer wrote as it is (``[…]`` is not markup)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _hold(server: str, token: str, lease_seconds: float | None) -> None:
    try:
        asyncio.run(hold_lease(server, token, lease_seconds))
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] cannot reach {server}: {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except RuntimeError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from None
