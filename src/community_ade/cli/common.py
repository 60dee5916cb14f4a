"""What every command shares: opening the Runtime and turning domain errors into
messages and exit codes (never a traceback)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.auth import service as auth
from community_ade.auth.principal import Principal

# Re-exported: most commands take their output and exit codes from here with the rest.
from community_ade.cli.output import EXIT_FAILED as EXIT_FAILED
from community_ade.cli.output import EXIT_UNAVAILABLE as EXIT_UNAVAILABLE
from community_ade.cli.output import EXIT_USAGE as EXIT_USAGE
from community_ade.cli.output import console as console
from community_ade.cli.output import err_console as err_console
from community_ade.errors import AdeError, InvalidInput, ServiceUnavailable
from community_ade.runtime import Database, Runtime
from community_ade.settings import Settings

T = TypeVar("T")

# Reading needs no particular user: the operator of the machine reads as a viewer.
OPERATOR = Principal(
    id=uuid.UUID(int=0), kind="human", name="operator", role="viewer", groups=frozenset()
)


async def acting_principal(session: AsyncSession, username: str) -> Principal:
    """The user named with ``--as``: a change is checked and audited as theirs."""
    return await auth.human_principal(session, await auth.get_user_by_name(session, username))


def load_settings() -> Settings:
    """The settings, with logging configured from them (every command starts here)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"ADE_{'_'.join(str(p) for p in e['loc']).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        err_console.print(f"[red]error:[/red] invalid configuration: {problems}")
        raise typer.Exit(EXIT_USAGE) from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter
    return settings


def run(action: Callable[[Runtime], Awaitable[T]], *, wait: bool = False) -> T:
    """Open the Runtime, run ``action`` with it, close it; report errors plainly.
    ``wait``: a service's start, which waits ``ADE_STARTUP_WAIT_SECONDS`` for Redis and
    the database; a one-off command fails at once instead (exit code 3)."""
    settings = load_settings()

    async def main() -> T:
        async with Runtime.open(settings, wait=_wait(settings, wait)) as runtime:
            return await action(runtime)

    return run_plain(main)


def run_database(action: Callable[[Database], Awaitable[T]]) -> T:
    """``run`` for a command that needs only the database: it works while Redis is down."""
    settings = load_settings()

    async def main() -> T:
        async with Database.open(settings) as database:
            return await action(database)

    return run_plain(main)


def _wait(settings: Settings, wait: bool) -> float:
    return settings.startup_wait_seconds if wait else 0.0


def run_plain(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function; a domain error becomes its message and exit code."""
    try:
        return asyncio.run(main())
    except AdeError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        if isinstance(exc, InvalidInput):
            code = EXIT_USAGE
        elif isinstance(exc, ServiceUnavailable):
            code = EXIT_UNAVAILABLE
        else:
            code = EXIT_FAILED
        raise typer.Exit(code) from None
