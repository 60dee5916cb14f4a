"""``ade serve``: the HTTP API (and, later, the dashboard) on the embedded default."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from community_ade.api.app import create_app
from community_ade.cli.common import console, load_settings, run
from community_ade.cli.demo_data import CONNECTABLE_AGENT, logins, seed


def _reachable(host: str, port: int) -> str:
    """The URL this process's own demo agents reach the server at."""
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: loopback works
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port (0: any free one; not with --demo).")
    ] = 8000,
    demo: Annotated[
        bool,
        typer.Option(
            help="Seed demo people, groups, a policy, agents and tasks (once per data dir), "
            "print the logins, and run the demo agents: online, each proposing a change "
            "every 20-30 s through the API like `ade agents run` (a scripted model)."
        ),
    ] = False,
    worker: Annotated[
        bool, typer.Option(help="Also apply approved tasks in this process (one worker).")
    ] = True,
) -> None:
    """Serve the REST API; /healthz answers once Redis and the database are open."""
    settings = load_settings()
    if demo and port == 0:
        raise typer.BadParameter("--demo needs a fixed --port (its agents connect to it)")
    if demo:
        tokens = run(seed)
        passwords = logins(settings.data_dir)
        console.print(f"[bold]Demo data[/bold] in {settings.data_dir}.")
        console.print(f"Dashboard: http://{host}:{port}/ — log in as (user / password):")
        for name, password in passwords.items():
            console.print(f"  {name:<6} {password}")
        if not passwords:
            console.print(
                "  (none: this data directory was seeded before the demo had logins; "
                "start with a fresh ADE_DATA_DIR to get them)"
            )
        console.print("bob and carol review (carol is the sre), alice and her agents submit.")
        console.print(f"API tokens (Bearer, for http://{host}:{port}/docs):")
        for name, token in tokens.items():
            console.print(f"  {name:<10} {token}")
        agent_token = tokens.get(CONNECTABLE_AGENT)
        if agent_token:
            console.print(
                f"Connect an agent as {CONNECTABLE_AGENT} (its tools, its changes reviewed), "
                "e.g. Claude Code:\n"
                f"  claude mcp add --transport http ade http://{host}:{port}/mcp "
                f'--header "Authorization: Bearer {agent_token}"',
                soft_wrap=True,  # one line to copy, whatever the terminal's width
            )
    jobs = []
    if demo:
        # Imported here: the demo agents bring pydantic-ai, seconds to import.
        from community_ade.cli.demo_agents import demo_agents

        jobs.append(demo_agents(_reachable(host, port)))
    uvicorn.run(
        create_app(settings, run_worker=worker, jobs=jobs),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        # Live events are small JSON frames sent to many clients: compressing each one
        # per connection costs more CPU than the bytes it saves (bench/events.py).
        ws_per_message_deflate=False,
        # Clients send small JSON messages: never buffer a bigger frame (closed with 1009).
        ws_max_size=settings.ws_max_message_bytes,
    )
