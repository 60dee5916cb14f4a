"""The audit log on real SQLite and PostgreSQL: appends link into one chain even when
20 transactions race, tampering through raw SQL is caught at its seq, events can be
filtered and paged, and ``ade audit verify`` answers with its exit code."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from community_ade.audit import GENESIS, Actor, Anchor
from community_ade.audit import log as audit_log
from community_ade.audit.chain import HASHED_FIELDS, compute_hash
from community_ade.errors import Conflict, InvalidInput, ServiceUnavailable
from community_ade.storage import db
from community_ade.storage.models import AuditEvent, User

ADA = Actor("human", "ada")
BOT = Actor("agent", "bot-1")
SYSTEM = Actor("system", "policy")
# Numbers PostgreSQL's JSONB would spell differently were they not normalised first.
AWKWARD_DATA: dict[str, Any] = {
    "title": "Grüße \u2028 [bold]",
    "risk": 42.5,
    "score": 50.0,
    "huge": 1e16,
    "tiny": 1.5e-10,
    "big": 2**70,
    "nested": {"z": [1, None, True], "a": {}},
}


async def _append(
    sessions: async_sessionmaker[AsyncSession],
    n: int,
    *,
    type: str = "task:created",
    actor: Actor = ADA,
    subject: str = "task:1",
) -> None:
    for i in range(n):
        async with sessions.begin() as session:
            await audit_log.append(session, type=type, actor=actor, subject=subject, data={"i": i})


async def _verify(sessions: async_sessionmaker[AsyncSession], **kwargs: Any) -> Any:
    async with sessions() as session:
        return await audit_log.verify_log(session, **kwargs)


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[AuditEvent]:
    async with sessions() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all())


# -- appending ------------------------------------------------------------------------------


async def test_appends_link_into_a_chain_that_verifies(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        first = await audit_log.append(
            session, type="task:created", actor=ADA, subject="task:1", data=AWKWARD_DATA
        )
        second = await audit_log.append(
            session,
            type="approval:decision",
            actor=Actor("human", "bob", via_delegation=True),
            subject="task:1",
            data={"decision": "approve"},
        )
    await _append(sessions, 3, actor=SYSTEM)

    rows = await _rows(sessions)
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 5))
    assert (first.seq, second.seq) == (1, 2)
    # What was read back is exactly what was hashed, on both backends.
    assert rows[0].data == first.data
    assert rows[0].data["huge"] == 10**16
    assert rows[0].ts == first.ts
    assert rows[1].via_delegation is True
    for row in rows:
        assert row.hash == compute_hash({c: getattr(row, c) for c in HASHED_FIELDS})

    report = await _verify(sessions, batch=2)
    assert report.ok
    assert (report.checked, report.head_seq, report.head_hash) == (5, 5, rows[-1].hash)
    assert (await _verify(sessions, anchor=Anchor(3, rows[2].hash))).ok


async def test_an_empty_log_is_intact(sessions: async_sessionmaker[AsyncSession]) -> None:
    report = await _verify(sessions)
    assert (report.ok, report.checked, report.head_hash) == (True, 0, GENESIS)


async def test_an_event_lives_and_dies_with_its_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        session.add(User(username="ada", role="submitter"))
        await audit_log.append(session, type="task:created", actor=ADA, subject="u", data={})
        await session.rollback()
    assert await _rows(sessions) == []

    async with sessions.begin() as session:
        session.add(User(username="ada", role="submitter"))
        event = await audit_log.append(
            session, type="task:created", actor=ADA, subject="u", data={}
        )
    assert (event.seq, event.prev_hash) == (1, GENESIS)
    async with sessions() as session:
        assert (await session.scalars(select(User.username))).all() == ["ada"]


async def test_bad_events_are_refused_before_anything_is_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bad: list[dict[str, Any]] = [
        {"type": "", "subject": "s", "data": {}},
        {"type": "t" * 65, "subject": "s", "data": {}},
        {"type": "t", "subject": "s" * 201, "data": {}},
        {"type": "t", "subject": "nul\x00", "data": {}},
        {"type": "t", "subject": "s", "data": {"x": float("nan")}},
        {"type": "t", "subject": "s", "data": {"x": {1, 2}}},
        {"type": "t", "subject": "s", "data": ["not", "an", "object"]},
    ]
    for kwargs in bad:
        async with sessions.begin() as session:
            with pytest.raises(InvalidInput):
                await audit_log.append(session, actor=ADA, **kwargs)
    with pytest.raises(InvalidInput, match="longer than 80"):  # the column's width
        async with sessions.begin() as session:
            await audit_log.append(
                session, type="t", actor=Actor("human", "x" * 81), subject="s", data={}
            )
    assert await _rows(sessions) == []


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize("work_first", [False, True], ids=["audit-only", "after-other-writes"])
async def test_twenty_concurrent_appends_make_one_unbroken_chain(
    sessions: async_sessionmaker[AsyncSession], work_first: bool
) -> None:
    """Each transaction reads (and, in the second case, writes another table) before it
    appends, and sleeps while holding the head: without the append lock most of these
    would lose the race with a unique violation."""

    async def one(i: int) -> int:
        async with sessions.begin() as session:
            await session.execute(select(AuditEvent.seq).limit(1))
            if work_first:
                session.add(User(username=f"user-{i}"))
            event = await audit_log.append(
                session, type="task:created", actor=BOT, subject=f"task:{i}", data={"i": i}
            )
            await asyncio.sleep(0.005)
            return event.seq

    seqs = await asyncio.gather(*(one(i) for i in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    report = await _verify(sessions, batch=7)
    assert (report.ok, report.checked) == (True, 20), report
    rows = await _rows(sessions)
    assert sorted(row.data["i"] for row in rows) == list(range(20))


async def test_an_append_waits_for_the_transaction_holding_the_head(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as first, first.begin():
        await audit_log.append(first, type="t", actor=ADA, subject="s", data={"n": 1})

        async def second() -> int:
            async with sessions.begin() as session:
                event = await audit_log.append(
                    session, type="t", actor=ADA, subject="s", data={"n": 2}
                )
                return event.seq

        waiting = asyncio.ensure_future(second())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # blocked behind the first transaction's lock
    assert await asyncio.wait_for(waiting, 10) == 2
    assert (await _verify(sessions)).ok


@pytest.fixture
async def plain_sqlite(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a SQLite engine *without* ``db.create_engine``'s ``BEGIN IMMEDIATE``:
    the driver's own transactions, which begin at the first write. ``append`` must
    serialise on such connections too (a tool, a future engine change)."""
    migrated = db.create_engine(database_url)
    await db.upgrade(migrated)
    await migrated.dispose()
    engine = create_async_engine(db.async_url(database_url))

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    event.listen(engine.sync_engine, "connect", pragmas)
    try:
        yield db.sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_appends_serialise_on_a_sqlite_engine_without_begin_immediate(
    plain_sqlite: async_sessionmaker[AsyncSession],
) -> None:
    """Without append's own lock (a no-op UPDATE before the head is read) most of these
    transactions read the same head and lose on the unique seq."""

    async def one(i: int) -> int:
        async with plain_sqlite.begin() as session:
            await session.execute(select(AuditEvent.seq).limit(1))
            event = await audit_log.append(
                session, type="t", actor=BOT, subject=f"task:{i}", data={"i": i}
            )
            await asyncio.sleep(0.005)
            return event.seq

    assert sorted(await asyncio.gather(*(one(i) for i in range(20)))) == list(range(1, 21))
    report = await _verify(plain_sqlite)
    assert (report.ok, report.checked) == (True, 20)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_busy_sqlite_log_is_a_service_error_not_a_crash(
    plain_sqlite: async_sessionmaker[AsyncSession],
) -> None:
    async with plain_sqlite() as second:
        await second.execute(text("PRAGMA busy_timeout=100"))  # connected before the lock
        async with plain_sqlite.begin() as first:
            await audit_log.append(first, type="t", actor=ADA, subject="s", data={})
            with pytest.raises(ServiceUnavailable, match="locked"):
                await audit_log.append(second, type="t", actor=ADA, subject="s", data={})
            await second.rollback()
    assert (await _verify(plain_sqlite)).checked == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_snapshot_older_than_the_head_gets_conflict_and_forks_nothing(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """REPEATABLE READ keeps the snapshot from before the lock: the insert loses on the
    unique columns and the caller is told to retry its unit of work."""
    await _append(sessions, 1)
    async with sessions() as stale:
        await stale.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        await stale.execute(select(AuditEvent.seq))  # the snapshot is taken here
        await _append(sessions, 1)
        with pytest.raises(Conflict, match="retry"):
            await audit_log.append(stale, type="t", actor=ADA, subject="s", data={})
        await stale.rollback()
    await _append(sessions, 1)
    report = await _verify(sessions)
    assert (report.ok, report.checked) == (True, 3)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_deadlock_around_the_append_lock_is_a_conflict(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A transaction that takes a row lock after appending can deadlock with one that
    holds that row and waits to append; PostgreSQL aborts the one that waited first."""
    async with sessions.begin() as session:
        session.add(User(username="ada"))
    appended, row_locked = asyncio.Event(), asyncio.Event()

    async def appends_then_locks() -> str:
        async with sessions.begin() as session:
            await audit_log.append(session, type="t", actor=ADA, subject="a", data={})
            appended.set()
            await row_locked.wait()
            await asyncio.sleep(0.2)  # let the other one wait on the append lock first
            await session.execute(select(User).where(User.username == "ada").with_for_update())
        return "committed"

    async def locks_then_appends() -> str:
        await appended.wait()
        try:
            async with sessions.begin() as session:
                await session.execute(select(User).where(User.username == "ada").with_for_update())
                row_locked.set()
                await audit_log.append(session, type="t", actor=ADA, subject="b", data={})
        except Conflict:
            return "conflict"
        return "committed"

    outcome = await asyncio.wait_for(asyncio.gather(appends_then_locks(), locks_then_appends()), 30)
    assert outcome == ["committed", "conflict"]
    report = await _verify(sessions)
    assert (report.ok, report.checked) == (True, 1)


# -- tampering ------------------------------------------------------------------------------


async def _execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(sql), params)


async def _swap_contents(engine: AsyncEngine, a: int, b: int) -> None:
    """Swap every column but seq between two rows: what reordering looks like in a table
    keyed by seq. In three steps, as hash and prev_hash are unique."""
    columns = [c for c in (*HASHED_FIELDS, "hash") if c != "seq"]
    async with engine.begin() as connection:
        rows = {
            row.seq: row
            for row in await connection.execute(
                select(AuditEvent.__table__).where(AuditEvent.seq.in_([a, b]))
            )
        }
        table = AuditEvent.__table__
        await connection.execute(
            table.update().where(table.c.seq == a).values(prev_hash="tmp-prev", hash="tmp-hash")
        )
        for target, source in ((b, a), (a, b)):
            values = {c: getattr(rows[source], c) for c in columns}
            await connection.execute(table.update().where(table.c.seq == target).values(**values))


# case: (SQL on a chain of seq 1-6, its parameters, the seq named, rows checked before it)
TAMPERING: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "edit data": ("UPDATE audit_log SET data = :v WHERE seq = 3", {"v": '{"i": 99}'}, 3, 2),
    "edit subject": ("UPDATE audit_log SET subject = 'task:2' WHERE seq = 4", {}, 4, 3),
    "edit actor": ("UPDATE audit_log SET actor_id = 'mallory' WHERE seq = 1", {}, 1, 0),
    "edit flag": (
        "UPDATE audit_log SET via_delegation = :v WHERE seq = 6",
        {"v": True},
        6,
        5,
    ),
    "edit hash": ("UPDATE audit_log SET hash = :v WHERE seq = 2", {"v": "f" * 64}, 2, 1),
    "edit prev_hash": ("UPDATE audit_log SET prev_hash = :v WHERE seq = 5", {"v": "e" * 64}, 5, 4),
    "delete middle": ("DELETE FROM audit_log WHERE seq = 3", {}, 4, 2),
    "delete first": ("DELETE FROM audit_log WHERE seq = 1", {}, 2, 0),
    "delete and renumber": (
        "DELETE FROM audit_log WHERE seq = 3; UPDATE audit_log SET seq = seq - 1 WHERE seq > 3",
        {},
        3,
        2,
    ),
    "insert forged": (
        "INSERT INTO audit_log (seq, ts, type, actor_kind, actor_id, via_delegation, subject,"
        " data, prev_hash, hash) SELECT 7, ts, type, actor_kind, actor_id, via_delegation,"
        " subject, data, :prev, :hash FROM audit_log WHERE seq = 6",
        {"prev": "a" * 64, "hash": "b" * 64},
        7,
        6,
    ),
    "insert before genesis": (
        "INSERT INTO audit_log (seq, ts, type, actor_kind, actor_id, via_delegation, subject,"
        " data, prev_hash, hash) SELECT 0, ts, type, actor_kind, actor_id, via_delegation,"
        " subject, data, :prev, :hash FROM audit_log WHERE seq = 1",
        {"prev": "a" * 64, "hash": "b" * 64},
        0,
        0,
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_through_sql_is_caught_at_its_seq(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], case: str
) -> None:
    await _append(sessions, 6)
    sql, params, bad_seq, checked = TAMPERING[case]
    if "data" in sql and engine.dialect.name == "postgresql":
        sql = sql.replace(":v", "CAST(:v AS jsonb)")
    async with engine.begin() as connection:
        for statement in sql.split("; "):
            await connection.execute(text(statement), params)
    for batch in (1, 2, 1000):
        report = await _verify(sessions, batch=batch)
        assert not report.ok
        assert (report.first_bad_seq, report.checked) == (bad_seq, checked), report


async def test_a_shifted_timestamp_is_caught(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _append(sessions, 3)
    table = AuditEvent.__table__
    ts = (await _rows(sessions))[1].ts
    async with engine.begin() as connection:
        shifted = ts + timedelta(microseconds=1)
        await connection.execute(table.update().where(table.c.seq == 2).values(ts=shifted))
    report = await _verify(sessions)
    assert (report.ok, report.first_bad_seq) == (False, 2)


async def test_swapping_two_rows_content_is_caught_at_the_first(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _append(sessions, 5)
    await _swap_contents(engine, 2, 4)
    report = await _verify(sessions)
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "edited or moved" in (report.problem or "")


async def test_cutting_off_the_newest_rows_is_caught_with_an_anchor(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _append(sessions, 4)
    head = (await _verify(sessions)).head_hash
    await _execute(engine, "DELETE FROM audit_log WHERE seq >= 3")
    assert (await _verify(sessions)).ok  # a shorter chain is still a chain
    report = await _verify(sessions, anchor=Anchor(4, head))
    assert (report.ok, report.first_bad_seq) == (False, 3)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_row_sqlite_cannot_decode_is_reported_at_its_seq(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _append(sessions, 4)
    await _execute(engine, "UPDATE audit_log SET data = '{not json' WHERE seq = 3")
    report = await _verify(sessions, batch=10)
    assert (report.ok, report.first_bad_seq, report.checked) == (False, 3, 2)
    assert "cannot be read" in (report.problem or "")
    await _execute(engine, "UPDATE audit_log SET ts = 'yesterday' WHERE seq = 2")
    assert (await _verify(sessions)).first_bad_seq == 2


# -- listing --------------------------------------------------------------------------------


async def test_list_events_filters_newest_first_and_pages_by_seq(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _append(sessions, 3, type="task:created", actor=ADA, subject="task:1")  # 1-3
    await _append(sessions, 2, type="approval:decision", actor=BOT, subject="task:2")  # 4-5
    await _append(sessions, 2, type="task:created", actor=BOT, subject="task:2")  # 6-7

    async def seqs(**filters: Any) -> list[int]:
        async with sessions() as session:
            return [e.seq for e in await audit_log.list_events(session, **filters)]

    assert await seqs() == [7, 6, 5, 4, 3, 2, 1]
    assert await seqs(type="task:created") == [7, 6, 3, 2, 1]
    assert await seqs(subject="task:2") == [7, 6, 5, 4]
    assert await seqs(actor_id="bot-1", type="approval:decision") == [5, 4]
    assert await seqs(since_seq=5) == [7, 6]
    assert await seqs(type="nothing") == []

    pages: list[list[int]] = []
    before = None
    while True:
        page = await seqs(limit=3, before_seq=before)
        if not page:
            break
        pages.append(page)
        before = page[-1]
    assert pages == [[7, 6, 5], [4, 3, 2], [1]]
    assert await seqs(limit=2, before_seq=6, since_seq=2) == [5, 4]

    async with sessions() as session:
        for limit in (0, audit_log.MAX_LIST_LIMIT + 1):
            with pytest.raises(InvalidInput):
                await audit_log.list_events(session, limit=limit)
        (newest,) = await audit_log.list_events(session, limit=1)
    envelope = audit_log.envelope(newest)
    assert envelope["actor"] == {"kind": "agent", "id": "bot-1", "via_delegation": False}
    assert envelope["ts"].endswith("Z")
    assert (envelope["seq"], envelope["subject"], envelope["data"]) == (7, "task:2", {"i": 1})


# -- the CLI --------------------------------------------------------------------------------


def _standalone_redis(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        return not client.info("cluster").get("cluster_enabled")
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _ade_audit(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ade audit ARGS`` in a child process with its own data directory (the Runtime
    migrates the default SQLite file there). Until ``cli/__init__`` registers the audit
    sub-app, the sub-app itself is run."""
    from community_ade import cli

    registered = any(group.name == "audit" for group in cli.app.registered_groups)
    if registered:
        command = [sys.executable, "-m", "community_ade", "audit", *args]
    else:
        runner = "from community_ade.cli.audit import app; app(prog_name='ade audit')"
        command = [sys.executable, "-c", runner, *args]
    env = {**os.environ, "ADE_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    env.pop("ADE_DATABASE_URL", None)
    env.pop("ADE_REDIS_URL", None)
    # A Redis server if one answers (faster), else the Runtime starts the embedded one.
    url = os.environ.get("ADE_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
    if _standalone_redis(url):
        env["ADE_REDIS_URL"] = url
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


async def test_ade_audit_verify_exits_0_when_intact_and_1_after_tampering(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    result = await asyncio.to_thread(_ade_audit, data_dir, "verify")
    assert result.returncode == 0, result.stderr
    assert "audit chain intact: 0 events" in result.stdout

    engine = db.create_engine(db.default_url(data_dir))
    try:
        sessions = db.sessionmaker(engine)
        await _append(sessions, 5)
        result = await asyncio.to_thread(_ade_audit, data_dir, "verify")
        assert result.returncode == 0, result.stderr
        assert "audit chain intact: 5 events" in result.stdout
        anchor = result.stdout.split("head: ")[1].split()[0]

        listed = await asyncio.to_thread(_ade_audit, data_dir, "list", "--limit", "2", "--json")
        assert listed.returncode == 0, listed.stderr
        assert '"seq": 5' in listed.stdout
        listed = await asyncio.to_thread(_ade_audit, data_dir, "list", "--type", "task:created")
        assert listed.returncode == 0, listed.stderr
        assert "task:created" in listed.stdout

        await _execute(engine, "UPDATE audit_log SET subject = 'forged' WHERE seq = 3")
        result = await asyncio.to_thread(_ade_audit, data_dir, "verify")
        assert result.returncode == 1
        assert "audit chain BROKEN at seq 3: " in result.stdout

        await _execute(engine, "DELETE FROM audit_log WHERE seq >= 3")
        assert (await asyncio.to_thread(_ade_audit, data_dir, "verify")).returncode == 0
        result = await asyncio.to_thread(_ade_audit, data_dir, "verify", "--anchor", anchor)
        assert result.returncode == 1
        assert "audit chain BROKEN at seq 3: " in result.stdout
    finally:
        await engine.dispose()
