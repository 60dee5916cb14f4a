"""``ade locks``: see and, with a reason, break the clean apply locks."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from community_ade.audit.chain import Actor
from community_ade.audit.force_release import force_release
from community_ade.cli.common import console, run
from community_ade.locks.introspection import AgentState, DomainState, ResourceState
from community_ade.runtime import Runtime

app = typer.Typer(help="Inspect and manage the Redis apply locks.", no_args_is_help=True)

DomainOption = Annotated[
    str | None,
    typer.Option("--domain", "-d", help="Lock domain (default: ADE_LOCK_DOMAIN)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _seconds(ms: int | None, now: int, *, until: bool) -> str:
    if ms is None:
        return "-"
    delta = (ms - now) if until else (now - ms)
    return f"{max(delta, 0) / 1000:.1f}s"


def _resource_table(state: ResourceState, now: int) -> Table:
    table = Table(title=f"resource {state.resource}", title_justify="left")
    for column in ("", "mode", "task", "agent", "fence / ticket", "held / waited", "lease left"):
        table.add_column(column)
    for h in state.holders:
        label = "holder" if h.state == "granted" else f"holder ({h.state}, lock-delay)"
        table.add_row(
            label,
            h.mode,
            h.task or "?",
            h.agent or "?",
            str(h.fence),
            _seconds(h.granted_at, now, until=False),
            _seconds(h.lease_deadline, now, until=True),
        )
    for position, w in enumerate(state.queue, start=1):
        table.add_row(
            f"queue #{position}",
            w.mode,
            w.task or "?",
            w.agent or "?",
            str(w.ticket),
            _seconds(w.enqueued_at, now, until=False),
            "",
        )
    if state.lock_delay_ms:
        table.caption = (
            f"lock-delay: next grant in {state.lock_delay_ms / 1000:.1f}s at the earliest"
        )
    return table


def _sessions_table(sessions: list[AgentState], now: int) -> Table:
    table = Table(title="agent sessions", title_justify="left")
    for column in ("agent", "lease left", "permits in use", "waiting"):
        table.add_column(column)
    for s in sessions:
        table.add_row(
            s.agent,
            _seconds(s.lease_deadline, now, until=True),
            f"{s.in_use}/{s.capacity}",
            str(len(s.waiting)),
        )
    return table


def print_domain(state: DomainState) -> None:
    console.print(
        f"[bold]domain {state.domain}[/bold]: {state.resource_count} active resource(s), "
        f"{state.session_count} agent session(s)"
    )
    for resource in state.resources:
        console.print(_resource_table(resource, state.now))
    if state.sessions:
        console.print(_sessions_table(state.sessions, state.now))


@app.command("list")
def list_locks(domain: DomainOption = None, as_json: JsonOption = False) -> None:
    """Every held or awaited resource and every agent session (all domains by default)."""

    async def action(rt: Runtime) -> list[DomainState]:
        names = [domain] if domain else (await rt.locks.domains() or [rt.locks.domain])
        return [await rt.locks.inspect_domain(domain=name) for name in names]

    states = run(action)
    if as_json:
        console.print_json(data=[s.model_dump() for s in states])
        return
    for state in states:
        print_domain(state)


@app.command("show")
def show(
    resource: Annotated[str, typer.Argument(help="The resource id, e.g. repo:acme/api.")],
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """Holders and queue of one resource."""

    async def action(rt: Runtime) -> ResourceState:
        return await rt.locks.inspect_resource(resource, domain=domain)

    state = run(action)
    if as_json:
        console.print_json(state.model_dump_json())
    elif not state.holders and not state.queue:
        console.print(f"resource {resource} is free")
    else:
        console.print(_resource_table(state, state.now))


@app.command("agent")
def agent(
    agent_id: Annotated[str, typer.Argument(metavar="AGENT", help="The agent id.")],
    domain: DomainOption = None,
    as_json: JsonOption = False,
) -> None:
    """One agent's session, permits, grants and waiting requests."""

    async def action(rt: Runtime) -> AgentState:
        return await rt.locks.inspect_agent(agent_id, domain=domain)

    state = run(action)
    if as_json:
        console.print_json(state.model_dump_json())
        return
    console.print(_sessions_table([state], state.now))
    for g in state.grants:
        console.print(f"  grant: task {g.task}, fence {g.fence} (request {g.request})")
    for w in state.waiting:
        console.print(f"  waiting: task {w.task}, ticket {w.ticket} (request {w.request})")


@app.command("release")
def release(
    resource: Annotated[str, typer.Argument(help="The resource whose holders to release.")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (required; recorded in the event log).")
    ],
    actor: Annotated[str, typer.Option(help="Who is asking (recorded).")] = "cli",
    domain: DomainOption = None,
) -> None:
    """Force-release every grant on RESOURCE (recorded in the audit log). Its holders are
    told their grant is lost, and the next grant waits the lock-delay, since an old holder
    may still be writing."""

    async def action(rt: Runtime) -> list[str]:
        async with rt.sessions.begin() as session:
            _, ended = await force_release(
                session, rt.locks, Actor("human", actor), resource, reason, domain
            )
        return ended

    ended = run(action)  # nothing held: NotFound, exit 1
    console.print(f"released {len(ended)} grant(s) on {resource}: {', '.join(ended)}")


@app.command("capacity")
def capacity(
    agent_id: Annotated[str, typer.Argument(metavar="AGENT", help="The agent id.")],
    value: Annotated[
        str, typer.Argument(metavar="N", help="Concurrent grants allowed, or 'default'.")
    ],
    domain: DomainOption = None,
) -> None:
    """Set how many grants AGENT may hold at once (takes effect at once)."""
    if value == "default":
        new: int | None = None
    elif value.isdigit():
        new = int(value)
    else:
        raise typer.BadParameter(f"N must be a positive whole number or 'default', not {value!r}")

    async def action(rt: Runtime) -> int:
        return await rt.locks.set_capacity(agent_id, new, domain=domain)

    console.print(f"agent {agent_id} may now hold {run(action)} grant(s) at once")


@app.command("events")
def events(
    domain: DomainOption = None,
    count: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The newest lock events (lock:acquired, lock:queued, lock:released, ...)."""

    async def action(rt: Runtime) -> list[dict[str, object]]:
        return await rt.locks.events(domain=domain, count=count)

    found = run(action)
    if as_json:
        console.print_json(data=found)
        return
    table = Table(title="lock events, newest first", title_justify="left")
    for column in ("id", "type", "task", "agent", "data"):
        table.add_column(column)
    for e in found:
        table.add_row(str(e["id"]), str(e["type"]), str(e["task"]), str(e["agent"]), str(e["data"]))
    console.print(table)
