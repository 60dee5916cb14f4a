"""``ade worker``: apply approved tasks from the queue until stopped (SIGTERM/SIGINT drain
in-flight work and exit 0) or, with ``--burst``, until the queue is empty."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer

from community_ade.cli.common import console, run
from community_ade.events.relay import relay_for, run_relay
from community_ade.execution.worker import Worker, WorkerStats
from community_ade.infra.aio import cancel_and_wait
from community_ade.runtime import Runtime
from community_ade.webhooks.delivery import run_webhooks


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=256, help="Tasks applied at once (default ADE_WORKER_CONCURRENCY)."
        ),
    ] = None,
    burst: Annotated[
        bool, typer.Option(help="Exit once the queue is empty instead of waiting for more.")
    ] = False,
) -> None:
    """Claim approved tasks and apply them under their locks."""

    async def main(runtime: Runtime) -> WorkerStats:
        work = Worker(runtime, concurrency=concurrency, burst=burst)
        # The worker's own events (task:applying, task:completed, ...) go live at once,
        # even when no `ade serve` runs; several relays append each event once.
        relaying = asyncio.create_task(run_relay(runtime), name="ade-events-relay")
        # Webhooks are delivered by every process that runs this loop, each once.
        webhooks = asyncio.create_task(run_webhooks(runtime), name="ade-webhooks")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # First signal: stop claiming and drain; in-flight applies finish.
            loop.add_signal_handler(sig, work.stop)
        try:
            return await work.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relaying
            await cancel_and_wait((webhooks,))
            try:
                # The last events, before the process goes.
                await relay_for(runtime).relay_audit()
            except Exception as exc:  # a server's relay picks them up later
                console.print(f"[yellow]events not relayed yet: {exc}[/yellow]")

    stats = run(main, wait=True)
    console.print(
        f"worker done: {stats.completed} completed, {stats.failed} failed, "
        f"{stats.retried} retried, {stats.moved} sent back to review, "
        f"{stats.ignored} ignored, {stats.reclaimed} reclaimed"
    )
