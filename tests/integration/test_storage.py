"""The schema: migrations against real SQLite and PostgreSQL, models matching them, and the
Runtime's automatic upgrade of the default database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from community_ade.errors import ServiceUnavailable
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage import db
from community_ade.storage.models import Base, Task, User


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _schema_drift(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


async def test_upgrade_creates_the_models_schema_and_downgrade_removes_it(
    database_url: str,
) -> None:
    engine = db.create_engine(database_url)
    try:
        assert await db.current_revision(engine) is None
        await db.upgrade(engine)
        assert await db.current_revision(engine) == db.head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set(Base.metadata.tables)
            # The migrations and the models describe the same schema.
            assert await connection.run_sync(_schema_drift) == []
        await db.downgrade(engine, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
        await db.upgrade(engine)
        assert await db.current_revision(engine) == db.head_revision()
    finally:
        await engine.dispose()


async def test_0015_moves_the_slack_cursor_into_notification_cursors_and_back(
    database_url: str,
) -> None:
    engine = db.create_engine(database_url)

    async def slack_cursors() -> tuple[list[object], list[object]]:
        async with engine.connect() as connection:
            named = await connection.execute(
                text("SELECT seq FROM notification_cursors WHERE name = 'slack'")
            )
            tables = await connection.run_sync(_tables)
            old = (
                await connection.execute(text("SELECT id, seq FROM slack_cursor"))
                if "slack_cursor" in tables
                else None
            )
            return [tuple(r) for r in named], [tuple(r) for r in old or ()]

    try:
        await db.upgrade(engine, "0014")
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO slack_cursor (id, seq) VALUES (1, 7)"))
        await db.upgrade(engine, "0015")
        assert await slack_cursors() == ([(7,)], [])  # the position carried over
        await db.downgrade(engine, "0014")
        assert await slack_cursors() == ([], [(1, 7)])  # and back
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO notification_cursors (name, seq) VALUES ('slack', 9)")
            )
        await db.upgrade(engine, "0015")
        assert await slack_cursors() == ([(9,)], [])  # a row already there is kept
    finally:
        await engine.dispose()


async def test_rows_round_trip_with_json_uuids_and_aware_timestamps(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine)
        sessions = db.sessionmaker(engine)
        user_id = uuid.uuid4()
        async with sessions.begin() as session:
            session.add(User(id=user_id, username="ada", role="submitter"))
            await session.flush()
            session.add(
                Task(
                    type="files.write",
                    title="write a file",
                    submitter_id=user_id,
                    payload={"files": [{"path": "a.txt", "content": "ü"}]},
                    resources=[{"type": "storage", "id": "ws-1", "actions": ["write"]}],
                )
            )
        async with sessions() as session:
            task = (await session.execute(select(Task))).scalar_one()
            assert task.submitter_id == user_id
            assert task.payload["files"][0]["content"] == "ü"
            assert task.resources[0]["actions"] == ["write"]
            assert (task.state, task.version, task.priority) == ("DRAFT", 1, 100)
            # Aware UTC on both backends (SQLite would hand back naive values).
            assert task.created_at.tzinfo is not None
            assert abs(task.created_at - datetime.now(UTC)).total_seconds() < 60
    finally:
        await engine.dispose()


async def test_an_unknown_role_is_refused_by_the_database(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine)
        with pytest.raises(Exception, match=r"(?i)check|constraint"):
            async with db.sessionmaker(engine).begin() as session:
                session.add(User(username="eve", role="superuser"))
    finally:
        await engine.dispose()


async def test_the_runtime_migrates_the_default_database(tmp_path: Path) -> None:
    async with Runtime.open(Settings(data_dir=tmp_path, redis_url=None)) as rt:
        assert await db.current_revision(rt.engine) == db.head_revision()
    assert (tmp_path / "ade.db").exists()


async def test_the_runtime_refuses_an_explicit_database_that_is_not_migrated(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=None, database_url=database_url)
    with pytest.raises(ServiceUnavailable, match="ade db upgrade"):
        async with Runtime.open(settings):
            pass


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT pg_backend_pid()")))


# The idle ping is PostgreSQL's alone (SQLite has no server connection to lose).
postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgres_only
async def test_a_pooled_connection_killed_while_idle_is_replaced_not_failed(
    database_url: str,
) -> None:
    engine = db.create_engine(database_url, idle_ping_seconds=0.2)
    killer = db.create_engine(database_url)
    try:
        pid = await _backend_pid(engine)  # one pooled connection, now idle
        async with killer.connect() as connection:
            await connection.execute(text(f"SELECT pg_terminate_backend({pid})"))
        await asyncio.sleep(0.3)
        # Idle past the threshold: pinged at checkout, found dead, replaced.
        assert await _backend_pid(engine) != pid
    finally:
        await engine.dispose()
        await killer.dispose()


@postgres_only
async def test_a_connection_used_a_moment_ago_is_not_pinged(database_url: str) -> None:
    engine = db.create_engine(database_url, idle_ping_seconds=60)
    pings = []
    original = engine.dialect.do_ping
    engine.dialect.do_ping = lambda dbapi_connection: pings.append(1) or original(dbapi_connection)  # type: ignore[method-assign]
    try:
        first = await _backend_pid(engine)
        assert await _backend_pid(engine) == first  # the same pooled connection
        assert pings == []
    finally:
        await engine.dispose()
