"""``ade users``, ``ade groups`` and ``ade tokens``: who may act, and their credentials."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.box import SIMPLE
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.auth import Role, service
from community_ade.cli.common import EXIT_USAGE, console, err_console, run_database
from community_ade.runtime import Database
from community_ade.storage.models import utcnow

users_app = typer.Typer(
    help="Manage users (people who review, submit or read).", no_args_is_help=True
)
groups_app = typer.Typer(help="Manage reviewer groups.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage API tokens of users and agents.", no_args_is_help=True)

UserOption = Annotated[
    str | None, typer.Option("--user", "-u", help="The token belongs to this user.")
]
AgentOption = Annotated[
    str | None, typer.Option("--agent", "-a", help="The token belongs to this agent.")
]


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _day(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d")


def _usage(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(EXIT_USAGE)


def _read_password() -> str:
    """The password on stdin: its first line, without the line break."""
    if sys.stdin.isatty():
        err_console.print("password (input is echoed; prefer a pipe): ", end="")
    return sys.stdin.readline().removesuffix("\n").removesuffix("\r")


# -- users ----------------------------------------------------------------------------------


@users_app.command("create")
def create_user(
    username: Annotated[str, typer.Argument(help="3-64 characters: a-z 0-9 . _ -")],
    role: Annotated[Role, typer.Option("--role", "-r", help="What the user may do.")],
    display_name: Annotated[str, typer.Option("--display-name", help="Shown name.")] = "",
    email: Annotated[
        str | None,
        typer.Option("--email", help="Where notifications reach the user (and their Slack match)."),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read a password (at least 12 characters) from the first line of stdin. "
            "Without it the user signs in with API tokens only.",
        ),
    ] = False,
) -> None:
    """Create a user."""
    password = _read_password() if password_stdin else None

    async def action(rt: Database) -> uuid.UUID:
        async with rt.sessions.begin() as session:
            user = await service.create_user(
                session,
                username,
                role.value,
                password=password,
                display_name=display_name,
                email=email,
            )
            return user.id

    user_id = run_database(action)
    how = "with a password" if password is not None else "without a password (tokens only)"
    console.print(f"created user {username} ({role.value}) {how}; id {user_id}", soft_wrap=True)


@users_app.command("list")
def list_users() -> None:
    """List users, their roles and groups."""

    async def action(rt: Database) -> list[tuple[str, str, str, str, str, str]]:
        async with rt.sessions() as session:
            rows = []
            for user in await service.list_users(session):
                groups = ", ".join(sorted(await service.groups_of(session, user.id)))
                status = "disabled" if user.disabled_at else "active"
                rows.append(
                    (
                        user.username,
                        user.display_name,
                        user.role,
                        groups or "-",
                        status,
                        _day(user.created_at),
                    )
                )
            return rows

    table = Table(box=SIMPLE)
    for column in ("username", "display name", "role", "groups", "status", "created"):
        table.add_column(column)
    for row in run_database(action):
        table.add_row(*row)
    console.print(table)


@users_app.command("disable")
def disable_user(username: Annotated[str, typer.Argument(help="The user to disable.")]) -> None:
    """Disable a user: its password, its tokens and its agents' tokens stop working."""

    async def action(rt: Database) -> None:
        async with rt.sessions.begin() as session:
            user = await service.get_user_by_name(session, username)
            await service.disable_user(session, user.id)

    run_database(action)
    console.print(f"disabled user {username}")


@users_app.command("set-email")
def set_email(
    username: Annotated[str, typer.Argument(help="The user.")],
    email: Annotated[str, typer.Argument(help='The address, or "" to clear it.')],
) -> None:
    """Set the e-mail address notifications go to (also how Slack accounts are matched)."""

    async def action(rt: Database) -> None:
        async with rt.sessions.begin() as session:
            user = await service.get_user_by_name(session, username)
            await service.set_email(session, user.id, email or None)

    run_database(action)
    console.print(f"{username}: e-mail {'set to ' + email if email else 'cleared'}")


# -- groups ---------------------------------------------------------------------------------


@groups_app.command("create")
def create_group(
    name: Annotated[str, typer.Argument(help="2-64 characters: a-z 0-9 . _ -")],
    description: Annotated[str, typer.Option("--description", help="What it is for.")] = "",
) -> None:
    """Create a group (policies name groups of reviewers)."""

    async def action(rt: Database) -> None:
        async with rt.sessions.begin() as session:
            await service.create_group(session, name, description)

    run_database(action)
    console.print(f"created group {name}")


@groups_app.command("add")
def add_member(
    group: Annotated[str, typer.Argument(help="The group.")],
    username: Annotated[str, typer.Argument(help="The user to add.")],
) -> None:
    """Add a user to a group."""

    async def action(rt: Database) -> bool:
        async with rt.sessions.begin() as session:
            found = await service.get_group_by_name(session, group)
            user = await service.get_user_by_name(session, username)
            return await service.add_member(session, found.id, user.id)

    added = run_database(action)
    console.print(f"added {username} to {group}" if added else f"{username} already is in {group}")


@groups_app.command("list")
def list_groups() -> None:
    """List groups and their members."""

    async def action(rt: Database) -> list[service.GroupInfo]:
        async with rt.sessions() as session:
            return await service.list_groups(session)

    table = Table(box=SIMPLE)
    for column in ("group", "description", "members"):
        table.add_column(column)
    for info in run_database(action):
        table.add_row(info.name, info.description, ", ".join(info.members) or "-")
    console.print(table)


# -- tokens ---------------------------------------------------------------------------------


def _owner(user: str | None, agent: str | None) -> tuple[str, str]:
    if (user is None) == (agent is None):
        raise _usage("give exactly one of --user and --agent")
    return ("user", user) if user is not None else ("agent", agent or "")


async def _owner_ids(
    session: AsyncSession, kind: str, name: str
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    if kind == "user":
        return (await service.get_user_by_name(session, name)).id, None
    return None, (await service.get_agent_by_name(session, name)).id


@tokens_app.command("create")
def create_token(
    name: Annotated[str, typer.Option("--name", "-n", help="What the token is for.")],
    user: UserOption = None,
    agent: AgentOption = None,
    expires_days: Annotated[
        int | None,
        typer.Option(
            "--expires-days", min=1, max=3650, help="Expire after N days (default: never)."
        ),
    ] = None,
) -> None:
    """Create an API token and print it, once: only its hash is kept.

    The token alone goes to stdout (so `TOKEN=$(ade tokens create ...)` works); the rest
    goes to stderr."""
    kind, owner = _owner(user, agent)
    expires_at = utcnow() + timedelta(days=expires_days) if expires_days else None

    async def action(rt: Database) -> tuple[str, uuid.UUID, str]:
        async with rt.sessions.begin() as session:
            user_id, agent_id = await _owner_ids(session, kind, owner)
            plaintext, row = await service.create_token(
                session, name=name, user_id=user_id, agent_id=agent_id, expires_at=expires_at
            )
            return plaintext, row.id, row.prefix

    plaintext, token_id, prefix = run_database(action)
    expiry = f"expires {_when(expires_at)} UTC" if expires_at else "does not expire"
    err_console.print(
        f"created token {token_id} (prefix {prefix}) for {kind} {owner}, {expiry}.\n"
        "[bold yellow]Copy it now: it cannot be shown again.[/bold yellow]"
    )
    sys.stdout.write(plaintext + "\n")
    sys.stdout.flush()


@tokens_app.command("list")
def list_tokens(user: UserOption = None, agent: AgentOption = None) -> None:
    """List the tokens of a user or an agent (never the tokens themselves)."""
    kind, owner = _owner(user, agent)

    async def action(rt: Database) -> list[service.TokenInfo]:
        async with rt.sessions() as session:
            user_id, agent_id = await _owner_ids(session, kind, owner)
            return await service.list_tokens(session, user_id=user_id, agent_id=agent_id)

    now = utcnow()
    table = Table(title=f"tokens of {kind} {owner}", title_justify="left", box=None)
    # The id (for revoke) and the prefix (to recognise a leaked token) are never cut.
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("prefix", no_wrap=True, min_width=8)
    for column in ("name", "status", "expires", "last used"):
        table.add_column(column, overflow="fold")
    for info in run_database(action):
        table.add_row(
            str(info.id),
            info.prefix,
            info.name,
            info.status(now),
            _day(info.expires_at),
            _day(info.last_used_at),
        )
    console.print(table)


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[uuid.UUID, typer.Argument(help="The token's id (see `tokens list`).")],
) -> None:
    """Revoke a token: it stops working at once."""

    async def action(rt: Database) -> None:
        async with rt.sessions.begin() as session:
            await service.revoke_token(session, token_id)

    run_database(action)
    console.print(f"revoked token {token_id}")
