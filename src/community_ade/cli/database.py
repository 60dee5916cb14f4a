"""``ade db``: the database schema."""

from __future__ import annotations

import typer

from community_ade.cli.common import console, load_settings, run_plain
from community_ade.storage import db

app = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True)


def _url() -> str:
    settings = load_settings()
    return settings.database_url or db.default_url(settings.data_dir)


def _run_step(upgrade: bool) -> None:
    async def main() -> tuple[str | None, str | None]:
        engine = db.create_engine(_url())
        try:
            before = await db.current_revision(engine)
            if upgrade:
                await db.upgrade(engine)
            return before, await db.current_revision(engine)
        finally:
            await engine.dispose()

    before, after = run_plain(main)
    head = db.head_revision()
    if upgrade:
        console.print(f"schema upgraded from {before or 'empty'} to {after}")
    else:
        state = "up to date" if after == head else f"behind: newest is {head}"
        console.print(f"schema at {after or 'empty'} ({state})")


@app.command("upgrade")
def upgrade() -> None:
    """Migrate ADE_DATABASE_URL (or the default SQLite file) to the newest schema."""
    _run_step(upgrade=True)


@app.command("current")
def current() -> None:
    """Show the schema revision of the database and whether it is the newest."""
    _run_step(upgrade=False)
