"""``ade shell-profiles``: the commands shell tasks may run (list, show, put, delete).

A profile is a JSON document (docs/executors.md#shell); ``put`` reads it from a file or
stdin and saves it as the ``--as`` user, who must be an admin, like the same change over
the API (and audited the same way).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.box import SIMPLE
from rich.table import Table

from community_ade.cli.common import (
    EXIT_USAGE,
    OPERATOR,
    acting_principal,
    console,
    err_console,
    run,
)
from community_ade.execution.executors.shell_profile import ShellProfile
from community_ade.execution.shell_profiles import ShellProfileService, profile_of
from community_ade.runtime import Runtime

app = typer.Typer(
    help="Manage shell profiles: the commands shell tasks may run.", no_args_is_help=True
)
ActingUser = Annotated[str, typer.Option("--as", help="The admin making the change.")]
Name = Annotated[str, typer.Argument(help="The profile's name (a-z 0-9 . _ -).")]


@app.command("list")
def list_profiles() -> None:
    """List the profiles with their version and command."""

    async def action(rt: Runtime) -> list[tuple[str, ...]]:
        async with rt.sessions() as session:
            rows = await ShellProfileService(session).list_profiles(OPERATOR)
            return [
                (
                    row.name,
                    str(row.version),
                    " ".join(profile_of(row).command),
                    "yes" if profile_of(row).preview else "-",
                )
                for row in rows
            ]

    table = Table(box=SIMPLE)
    for column in ("name", "version", "command", "preview"):
        table.add_column(column)
    for row in run(action):
        table.add_row(*row)
    console.print(table)


@app.command("show")
def show(name: Name) -> None:
    """Show a profile as JSON (the document ``put`` takes, plus its name and version)."""

    async def action(rt: Runtime) -> dict[str, Any]:
        async with rt.sessions() as session:
            row = await ShellProfileService(session).get(OPERATOR, name)
            document = profile_of(row).model_dump(mode="json")
            return {"name": row.name, "version": row.version, **document}

    console.print_json(json.dumps(run(action)))


@app.command("put")
def put(
    name: Name,
    acting: ActingUser,
    file: Annotated[str, typer.Option("--file", "-f", help="The profile as JSON; - reads stdin.")],
) -> None:
    """Create or replace a profile."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        err_console.print(f"[red]error:[/red] cannot read {file}: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        profile = ShellProfile.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'profile'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        err_console.print(f"[red]error:[/red] invalid profile: {problems}")
        raise typer.Exit(EXIT_USAGE) from None

    async def action(rt: Runtime) -> int:
        async with rt.sessions.begin() as session:
            principal = await acting_principal(session, acting)
            row = await ShellProfileService(session).put(principal, name, profile)
            return row.version

    console.print(f"shell profile {name} is at version {run(action)}")


@app.command("delete")
def delete(name: Name, acting: ActingUser) -> None:
    """Delete a profile: tasks naming it can no longer be submitted or applied."""

    async def action(rt: Runtime) -> None:
        async with rt.sessions.begin() as session:
            principal = await acting_principal(session, acting)
            await ShellProfileService(session).delete(principal, name)

    run(action)
    console.print(f"deleted shell profile {name}")
