"""``ade slack``: the Slack approvals configuration (docs/notifications.md#slack).

The bot token and signing secret are never command-line arguments (shell history,
process listings): ``configure`` reads them from a pipe (two lines: token, then secret)
or from prompts that do not echo, and never prints them.
"""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any

import typer
from rich.box import SIMPLE
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.service import actor_of
from community_ade.auth import service as auth
from community_ade.auth.principal import Permission, Principal, require
from community_ade.cli.common import console, run_database
from community_ade.integrations.slack import config
from community_ade.runtime import Database
from community_ade.secrets.keys import SecretCipher

app = typer.Typer(
    help="Slack approvals: the app's credentials, where review requests go, who is who.",
    no_args_is_help=True,
)

ActingAdmin = Annotated[str, typer.Option("--as", help="The admin making the change.")]


async def _admin(session: AsyncSession, username: str, permission: Permission) -> Principal:
    principal = await auth.human_principal(session, await auth.get_user_by_name(session, username))
    require(principal, permission)
    return principal


def _read_credentials() -> tuple[str, str]:
    if sys.stdin.isatty():
        return (
            getpass.getpass("bot token (xoxb-…, not echoed): ").strip(),
            getpass.getpass("signing secret (not echoed): ").strip(),
        )
    lines = sys.stdin.read().splitlines()
    lines += ["", ""]
    return lines[0].strip(), lines[1].strip()


@app.command("configure")
def configure(
    acting: ActingAdmin,
    default_channel: Annotated[
        str | None,
        typer.Option("--default-channel", help="Channel id for tasks no route matches."),
    ] = None,
    dm_reviewers: Annotated[
        bool, typer.Option("--dm-reviewers/--no-dm-reviewers", help="DM each eligible reviewer.")
    ] = False,
    keep_credentials: Annotated[
        bool,
        typer.Option(
            "--keep-credentials", help="Change the rest; keep the stored token and secret."
        ),
    ] = False,
) -> None:
    """Set the Slack app's bot token and signing secret (from a pipe, two lines, or
    prompts), the default channel and whether reviewers get DMs."""
    token, secret = (None, None) if keep_credentials else _read_credentials()

    async def action(db: Database) -> None:
        cipher = SecretCipher.from_settings(db.settings)
        async with db.sessions.begin() as session:
            admin = await _admin(session, acting, Permission.SECRET_WRITE)
            await config.configure(
                session,
                cipher,
                bot_token=token,
                signing_secret=secret,
                default_channel=default_channel,
                dm_reviewers=dm_reviewers,
                actor=actor_of(admin),
                user_id=admin.id,
            )

    run_database(action)
    console.print("Slack configured (the token and secret are stored sealed)")


@app.command("show")
def show() -> None:
    """Show the configuration, routes and user links (never the token or secret)."""

    async def action(db: Database) -> dict[str, Any]:
        async with db.sessions() as session:
            return await config.describe(session)

    described = run_database(action)
    if not described["configured"]:
        console.print("Slack is not configured: `ade slack configure --as ADMIN`")
    else:
        console.print(
            f"default channel: {described['default_channel'] or '-'}; "
            f"DMs to reviewers: {'on' if described['dm_reviewers'] else 'off'}"
        )
    table = Table(box=SIMPLE, title="routes")
    for column in ("kind", "name", "channel"):
        table.add_column(column)
    for row in described["channels"]:
        table.add_row(row["kind"], row["name"], row["channel"])
    console.print(table)
    links = Table(box=SIMPLE, title="linked users")
    for column in ("user", "slack user", "linked by"):
        links.add_column(column)
    for row in described["users"]:
        links.add_row(row["username"], row["slack_user_id"], row["source"])
    console.print(links)


@app.command("route")
def route(
    kind: Annotated[config.RouteKind, typer.Argument(help="rule or group")],
    name: Annotated[str, typer.Argument(help="The policy rule's or reviewer group's name.")],
    channel: Annotated[str, typer.Argument(help='Channel id, or "" to remove the route.')],
    acting: ActingAdmin,
) -> None:
    """Post the review requests of a policy rule's (or a group's) tasks to a channel."""

    async def action(db: Database) -> None:
        async with db.sessions.begin() as session:
            admin = await _admin(session, acting, Permission.SECRET_WRITE)
            await config.set_channel(
                session, kind.value, name, channel or None, actor=actor_of(admin)
            )

    run_database(action)
    console.print(f"{kind.value} {name}: " + (f"posted to {channel}" if channel else "no route"))


@app.command("link")
def link(
    username: Annotated[str, typer.Argument(help="The ADE user.")],
    slack_user_id: Annotated[str, typer.Argument(help="Their Slack member id (U…).")],
    acting: ActingAdmin,
) -> None:
    """Link a Slack account to an ADE user (without a link, the e-mail decides)."""

    async def action(db: Database) -> None:
        async with db.sessions.begin() as session:
            await _admin(session, acting, Permission.USER_ADMIN)
            user = await auth.get_user_by_name(session, username)
            await config.link_user(session, user.id, slack_user_id)

    run_database(action)
    console.print(f"{username} is Slack user {slack_user_id}")


@app.command("unlink")
def unlink(
    username: Annotated[str, typer.Argument(help="The ADE user.")], acting: ActingAdmin
) -> None:
    """Remove a user's Slack link."""

    async def action(db: Database) -> bool:
        async with db.sessions.begin() as session:
            await _admin(session, acting, Permission.USER_ADMIN)
            user = await auth.get_user_by_name(session, username)
            return await config.unlink_user(session, user.id)

    removed = run_database(action)
    console.print(f"{username}: {'unlinked' if removed else 'was not linked'}")


@app.command("remove")
def remove(acting: ActingAdmin) -> None:
    """Forget the Slack configuration, token and secret included."""

    async def action(db: Database) -> None:
        async with db.sessions.begin() as session:
            admin = await _admin(session, acting, Permission.SECRET_WRITE)
            await config.remove(session, actor=actor_of(admin))

    run_database(action)
    console.print("Slack configuration removed")
