"""A CommitSignal wakes this process's waiters after a commit that marked it, never
after a rollback or an unmarked commit."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.storage.commit_signal import CommitSignal

SIGNAL = CommitSignal("tests.commit_signal")


async def test_only_a_marked_commit_wakes(sessions: async_sessionmaker[AsyncSession]) -> None:
    nudge = asyncio.Event()
    with SIGNAL.waking(nudge):
        async with sessions.begin() as session:
            await session.execute(text("SELECT 1"))
        await asyncio.sleep(0)
        assert not nudge.is_set()
        async with sessions() as session:
            await session.begin()
            SIGNAL.mark(session)
            await session.rollback()
            await session.begin()  # the same session: the rolled-back mark is forgotten
            await session.execute(text("SELECT 1"))
            await session.commit()
        await asyncio.sleep(0)
        assert not nudge.is_set()
        async with sessions.begin() as session:
            SIGNAL.mark(session)
            await session.execute(text("SELECT 1"))
        await asyncio.wait_for(nudge.wait(), 5)
    nudge.clear()
    async with sessions.begin() as session:  # no longer waiting: nothing to wake
        SIGNAL.mark(session)
    await asyncio.sleep(0)
    assert not nudge.is_set()
