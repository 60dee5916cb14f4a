"""``ade secrets``: set, list, delete; new-key and rekey for the key rotation.

A value is never a command-line argument (it would land in the shell's history and in
every process listing): ``set`` reads it from ``--from-file``, from stdin when stdin is a
pipe, or from a prompt that does not echo. Changes are attributed to the admin named with
``--as`` and audited with the name only.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.box import SIMPLE
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.service import actor_of
from community_ade.auth import service as auth
from community_ade.auth.principal import Permission, Principal, require
from community_ade.cli.common import EXIT_USAGE, console, err_console, run
from community_ade.errors import InvalidInput
from community_ade.runtime import Runtime
from community_ade.secrets import store
from community_ade.secrets.keys import SecretCipher, new_key
from community_ade.storage.models import Secret

app = typer.Typer(
    help='Manage secrets that tasks refer to as {"secret": NAME} (values are write-only).',
    no_args_is_help=True,
)

ActingAdmin = Annotated[str, typer.Option("--as", help="The admin making the change.")]


async def _admin(session: AsyncSession, username: str) -> Principal:
    principal = await auth.human_principal(session, await auth.get_user_by_name(session, username))
    require(principal, Permission.SECRET_WRITE)
    return principal


def _read_value(from_file: Path | None) -> str:
    """The value from the file, the piped stdin or a prompt; one trailing line break is
    dropped (``echo``, editors)."""
    if from_file is not None:
        try:
            text = from_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            err_console.print(f"[red]error:[/red] cannot read {from_file}: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
    elif sys.stdin.isatty():
        text = getpass.getpass("value (not echoed): ")
    else:
        text = sys.stdin.read()
    return text.removesuffix("\n").removesuffix("\r")


@app.command("set")
def set_secret(
    name: Annotated[str, typer.Argument(help="1-64 characters: a-z 0-9 . _ -")],
    acting: ActingAdmin,
    description: Annotated[
        str | None, typer.Option("--description", help="What it is for (kept if omitted).")
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="Read the value from this file.")
    ] = None,
) -> None:
    """Store a secret or replace its value (from --from-file, a pipe, or a prompt)."""
    try:
        store.check_name(name)
    except InvalidInput as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(EXIT_USAGE) from None
    value = _read_value(from_file)

    async def action(rt: Runtime) -> bool:
        cipher = SecretCipher.from_settings(rt.settings)
        async with rt.sessions.begin() as session:
            admin = await _admin(session, acting)
            stored = await store.put_secret(
                session,
                cipher,
                name,
                value,
                description=description,
                actor=actor_of(admin),
                user_id=admin.id,
            )
            return stored.created

    created = run(action)
    console.print(f"{'stored' if created else 'replaced'} secret {name}")


@app.command("list")
def list_secrets() -> None:
    """List secrets: names and metadata, never values."""

    async def action(rt: Runtime) -> list[Secret]:
        async with rt.sessions() as session:
            return await store.list_secrets(session)

    table = Table(box=SIMPLE)
    for column in ("name", "description", "updated", "last used"):
        table.add_column(column)
    for row in run(action):
        used = "-" if row.last_used_at is None else row.last_used_at.strftime("%Y-%m-%d %H:%M")
        table.add_row(row.name, row.description, row.updated_at.strftime("%Y-%m-%d %H:%M"), used)
    console.print(table)


@app.command("delete")
def delete_secret(
    name: Annotated[str, typer.Argument(help="The secret to delete.")], acting: ActingAdmin
) -> None:
    """Delete a secret; tasks that still refer to it fail at apply."""

    async def action(rt: Runtime) -> None:
        async with rt.sessions.begin() as session:
            admin = await _admin(session, acting)
            await store.delete_secret(session, name, actor=actor_of(admin))

    run(action)
    console.print(f"deleted secret {name}")


@app.command("new-key")
def print_new_key() -> None:
    """Print a new random key for ADE_SECRETS_KEY (nothing is changed)."""
    console.print(new_key())


@app.command("rekey")
def rekey(acting: ActingAdmin) -> None:
    """Seal every value again with the first key of ADE_SECRETS_KEY (after putting a new
    key first); then the old keys can be removed."""

    async def action(rt: Runtime) -> int:
        cipher = SecretCipher.from_settings(rt.settings)
        async with rt.sessions.begin() as session:
            admin = await _admin(session, acting)
            return await store.rekey(session, cipher, actor=actor_of(admin))

    console.print(f"sealed {run(action)} secret(s) with the first key")
