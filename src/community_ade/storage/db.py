"""Opening the database and keeping its schema current (Alembic)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InvalidatePoolError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from community_ade.errors import Conflict, InvalidInput, ServiceUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
# A pooled PostgreSQL connection unused for this long is pinged before it is handed out.
IDLE_PING_SECONDS = 1.0
_IDLE_SINCE = "ade.idle_since"


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'ade.db').resolve()}"


def async_url(url: str) -> str:
    """Accept ``postgresql://`` and ``sqlite:///`` too, and pick the async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(f"invalid database URL {url!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise InvalidInput(f"unsupported database {backend!r}: use PostgreSQL or SQLite")
    return parsed.set(drivername=_DRIVERS[backend]).render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the driver, starts transactions (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the server, the worker and the CLI use one file at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


# Execution option of snapshot_sessions' engine: begin without taking the write lock.
_READ_SNAPSHOT = "ade_read_snapshot"


def _sqlite_begin(connection: Connection) -> None:
    if connection.get_execution_options().get(_READ_SNAPSHOT):
        # A reader: in WAL mode its snapshot is taken at its first read and lasts until
        # it ends, while writers go on.
        connection.exec_driver_sql("BEGIN DEFERRED")
        return
    # Take the write lock when the transaction starts, not at its first write: a
    # check-then-write (is the task still open? then record the vote) then runs
    # serialised, as it does under PostgreSQL's row locks, instead of failing late.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection before handing it out only when it has been idle
    ``idle_seconds``: what a server restart or an idle timeout kills are idle
    connections. ``pool_pre_ping`` pinged at every checkout, three round trips with
    asyncpg (BEGIN, ping, ROLLBACK), several times per task on the worker's hot path.
    A connection that dies while in use fails once, as it could after a pre-ping too,
    and SQLAlchemy then replaces every connection pooled before the failure."""
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # new, or used a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # The pool replaces it, and every connection older than it.
                raise InvalidatePoolError(f"pooled connection lost: {exc}") from exc
            raise

    event.listen(engine.sync_engine, "checkin", checked_in)
    event.listen(engine.sync_engine, "checkout", checked_out)


def create_engine(
    url: str, *, idle_ping_seconds: float = IDLE_PING_SECONDS, pool_size: int = 5
) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # A peak may open as many again; they are closed when returned.
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
    _ping_when_idle(engine, idle_ping_seconds)
    return engine


@contextlib.asynccontextmanager
async def own_engine(engine: AsyncEngine, connections: int) -> AsyncIterator[AsyncEngine]:
    """An engine of its own on ``engine``'s database, of at most ``connections``
    connections: for a background loop whose latency matters (the events relay), which
    must not queue behind a burst of requests for the shared pool. On SQLite, ``engine``
    itself: one file, and connections that cost nothing to open."""
    if engine.dialect.name != "postgresql":
        yield engine
        return
    own = create_async_engine(engine.url, pool_size=connections, max_overflow=0)
    _ping_when_idle(own, IDLE_PING_SECONDS)
    try:
        yield own
    finally:
        await own.dispose()


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def read_sessions(
    sessions: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads that are each one statement, on the engine of ``sessions``.

    On PostgreSQL they run in autocommit: a read is one round trip instead of three
    (BEGIN, the SELECT, ROLLBACK), and one statement sees one snapshot either way. Never
    for a read that decides a write: that belongs in the writing transaction. SQLite
    sessions are returned as they are (its BEGIN costs no round trip)."""
    engine: AsyncEngine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        return sessions
    return sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


def snapshot_sessions(
    sessions: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """Sessions for long reads of many statements that must see one consistent state and
    must not hold up writers (verifying the whole audit chain): read-only REPEATABLE READ
    on PostgreSQL; on SQLite a deferred transaction, which never takes the write lock."""
    engine: AsyncEngine = sessions.kw["bind"]
    if engine.dialect.name == "postgresql":
        options: dict[str, Any] = {
            "isolation_level": "REPEATABLE READ",
            "postgresql_readonly": True,
        }
    else:
        options = {_READ_SNAPSHOT: True}
    return sessionmaker(engine.execution_options(**options))


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(_config(connection), revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the schema to ``revision`` (default: the newest)."""
    await _run(engine, _upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, _downgrade, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    except (OperationalError, DBAPIError, OSError) as exc:
        raise ServiceUnavailable(f"cannot reach the database: {exc}") from exc


async def _run(engine: AsyncEngine, step: Any, revision: str) -> None:
    try:
        async with engine.begin() as connection:
            await connection.run_sync(step, revision)
    except (OperationalError, OSError) as exc:
        raise ServiceUnavailable(f"cannot reach the database: {exc}") from exc


async def flush_unique(session: AsyncSession, what: str) -> None:
    """Flush; a unique violation (a concurrent insert of the same name) becomes Conflict."""
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"{what} already exists") from None
