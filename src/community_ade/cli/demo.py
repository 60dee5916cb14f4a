"""``ade demo``: watch clean apply locks at work on the embedded default.

Until the server exists this is the quick start: agents contend for a repository, a
shared configuration and a database; grants hand off in FIFO order, a fenced write
refuses a stale holder, and a deadlock between two tasks is found and broken.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Annotated

import typer

from community_ade.cli.common import console, run
from community_ade.cli.locks import print_domain
from community_ade.errors import DeadlockDetected, FenceRejected
from community_ade.locks import LockManager
from community_ade.runtime import Runtime

# Each run gets its own lock domain, so that a run interrupted earlier (whose agents'
# sessions have not yet expired) does not stand in this one's queues.
DOMAIN = f"demo-{secrets.token_hex(3)}"
TARGET = f"ade:demo:{{{DOMAIN}}}:deploy-record"  # a Redis hash the demo "applies" to, fenced


async def _apply(
    locks: LockManager,
    task: str,
    agent: str,
    resources: dict[str, str],
    started: float,
    work: float,
) -> None:
    def say(text: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:5.2f}s[/dim] {task:<9} {agent:<9} {text}")

    say(f"asks for {', '.join(f'{r} ({m})' for r, m in resources.items())}")
    async with locks.hold(task, agent, resources, timeout=30, domain=DOMAIN) as grant:
        say(f"[green]granted[/green], fence {grant.fence}")
        await asyncio.sleep(work)
        await locks.fenced_write(TARGET, grant, "last_task", task)
        say("applied (fenced write accepted), releasing")


async def _deadlock(locks: LockManager, started: float) -> None:
    console.print(
        "\n[bold]A deadlock:[/bold] task-A holds db:orders and then asks for "
        "cache:orders; task-B holds cache:orders and asks for db:orders."
    )

    async def task(name: str, agent: str, first: str, second: str) -> None:
        async with locks.hold(name, agent, {first: "exclusive"}, domain=DOMAIN):
            await asyncio.sleep(0.2)
            try:
                async with locks.hold(
                    name, agent, {second: "exclusive"}, timeout=10, domain=DOMAIN
                ):
                    console.print(f"  {name} got {second} too and finishes")
            except DeadlockDetected as exc:
                kinds = " -> ".join(
                    f"{step['task']}({step['kind']} {step['via']})" for step in exc.cycle
                )
                console.print(
                    f"  [yellow]{name} was chosen as the victim[/yellow] "
                    f"after {time.monotonic() - started:.2f}s: {kinds}"
                )

    await asyncio.gather(
        task("task-A", "agent-1", "db:orders", "cache:orders"),
        task("task-B", "agent-2", "cache:orders", "db:orders"),
    )


async def _stale_holder(locks: LockManager) -> None:
    console.print(
        "\n[bold]Fencing:[/bold] a holder whose grant was force-released "
        "(as if it had paused past its lease) tries to write late."
    )
    stale = await locks.acquire(
        "task-old", "agent-3", {"repo:acme/api": "exclusive"}, domain=DOMAIN
    )
    await locks.force_release(
        "repo:acme/api", "demo: pretend agent-3 froze", actor="demo", domain=DOMAIN
    )
    async with locks.hold(
        "task-new", "agent-1", {"repo:acme/api": "exclusive"}, timeout=30, domain=DOMAIN
    ) as fresh:
        await locks.fenced_write(TARGET, fresh, "last_task", "task-new")
        console.print(f"  task-new wrote with fence {fresh.fence}")
    stale.lost.clear()  # pretend it never noticed, to show the target refusing it
    try:
        await locks.fenced_write(TARGET, stale, "last_task", "task-old")
    except FenceRejected as exc:
        console.print(f"  [green]refused[/green] task-old's late write: {exc.message}")
    await locks.release(stale)


def demo(
    hold: Annotated[
        float,
        typer.Option(
            help="Keep a few locks held this many seconds at the end, so that "
            "`ade locks list` in another terminal has something to show."
        ),
    ] = 0.0,
) -> None:
    """Run a short lock scenario on the embedded default and print what happens."""

    async def action(rt: Runtime) -> None:
        locks = rt.locks
        started = time.monotonic()
        console.print("[bold]Contention:[/bold] five tasks of three agents, FIFO hand-off.")
        plan = [
            ("task-1", "agent-1", {"repo:acme/api": "exclusive", "config:prod": "shared"}),
            ("task-2", "agent-2", {"config:prod": "shared"}),
            ("task-3", "agent-3", {"repo:acme/api": "exclusive"}),
            ("task-4", "agent-2", {"config:prod": "exclusive"}),
            ("task-5", "agent-1", {"repo:acme/api": "shared", "config:prod": "shared"}),
        ]
        async with asyncio.TaskGroup() as group:
            for task, agent, resources in plan:
                group.create_task(_apply(locks, task, agent, resources, started, 0.4))
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            console.print()
            print_domain(await locks.inspect_domain(domain=DOMAIN))
            console.print()
        await _deadlock(locks, time.monotonic())
        await _stale_holder(locks)
        if hold > 0:
            console.print(
                f"\nHolding repo:acme/api and config:prod for {hold:.0f}s: "
                "try `ade locks list --domain demo` now."
            )
            async with locks.hold(
                "task-hold",
                "agent-1",
                {"repo:acme/api": "exclusive", "config:prod": "shared"},
                domain=DOMAIN,
            ):
                await asyncio.sleep(hold)
        console.print(f"\nSee every lock event with: ade locks events --domain {DOMAIN}")

    run(action)
