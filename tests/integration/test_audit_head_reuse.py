"""A transaction that appends several audit events locks and reads the chain's head once
(audit/log.py): the chain stays whole under concurrent writers and across savepoints."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from community_ade.audit import Actor
from community_ade.audit import log as audit_log

ADA = Actor("human", "ada")


def head_reads(engine: AsyncEngine) -> list[str]:
    """Every read of the chain's head the engine sends, from now on."""
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        flat = " ".join(statement.split())
        # PostgreSQL locks and reads it in one function call, SQLite with a SELECT.
        if "ade_audit_lock_head(" in flat or "FROM audit_log ORDER BY audit_log.seq DESC" in flat:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    return seen


async def append(session: AsyncSession, label: str) -> int:
    appended = await audit_log.append(
        session, type="task:created", actor=ADA, subject="task:1", data={"label": label}
    )
    return appended.seq


async def verified_seqs(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessions() as session:
        report = await audit_log.verify_log(session)
        assert report.ok, report
        rows = await audit_log.list_events(session, limit=1000)
    return sorted(row.seq for row in rows)


async def test_concurrent_transactions_of_several_appends_read_the_head_once_each(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reads = head_reads(engine)

    async def three(n: int) -> list[int]:
        async with sessions.begin() as session:
            return [await append(session, f"{n}.{i}") for i in range(3)]

    runs = await asyncio.gather(*(three(n) for n in range(8)))
    assert all(seqs == list(range(seqs[0], seqs[0] + 3)) for seqs in runs)  # contiguous
    assert len(reads) == 8
    assert await verified_seqs(sessions) == list(range(1, 25))


async def test_a_savepoint_rolled_back_takes_its_events_and_the_noted_head_with_it(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    reads = head_reads(engine)
    async with sessions.begin() as session:
        assert await append(session, "kept") == 1
        savepoint = await session.begin_nested()
        assert await append(session, "undone") == 2
        await savepoint.rollback()
        # The head is read again: seq 2 is free, and it links to the kept row.
        assert await append(session, "after") == 2
    assert len(reads) == 2
    assert await verified_seqs(sessions) == [1, 2]


async def test_appends_after_a_released_savepoint_continue_the_chain(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        async with session.begin_nested():
            assert await append(session, "inside") == 1
        assert await append(session, "outside") == 2
    async with sessions.begin() as session:
        assert await append(session, "next") == 3
    assert await verified_seqs(sessions) == [1, 2, 3]
