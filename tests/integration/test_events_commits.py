"""Hearing audit-log commits of other processes (PostgreSQL NOTIFY, migration 0016): a
commit wakes the listener, a rollback does not, a lost listening connection is opened
again; a relay that polls once a minute still relays a commit it did not make itself at
once."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from community_ade.events.commits import hear_commits
from community_ade.events.keys import EventKeys, stream_entries
from community_ade.events.relay import Relay
from community_ade.infra.aio import wait_event
from community_ade.infra.redis_client import AnyRedis
from community_ade.storage import db

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@contextlib.asynccontextmanager
async def background(coroutine: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(coroutine)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


APPEND = """
import asyncio, sys
from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM
from community_ade.storage import db

async def main(url: str, commit: bool) -> None:
    engine = db.create_engine(url)
    async with db.sessionmaker(engine)() as session:
        await audit.append(session, type="task:created", actor=SYSTEM, subject="task:x", data={})
        await (session.commit() if commit else session.rollback())
    await engine.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2] == "commit"))
"""


async def other_process_appends(database_url: str, *, commit: bool) -> None:
    """An audit row written by another process (so no in-process wake-up can help)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", APPEND, database_url, "commit" if commit else "rollback"
    )
    assert await asyncio.wait_for(process.wait(), 60) == 0


async def test_a_commit_wakes_the_listener_and_a_rollback_does_not(
    engine: AsyncEngine, database_url: str
) -> None:
    nudge = asyncio.Event()
    async with background(hear_commits(engine, nudge)):
        assert await wait_event(nudge, 10)  # listening: it looks once for what it missed
        nudge.clear()
        await other_process_appends(database_url, commit=False)
        assert not await wait_event(nudge, 0.5)
        await other_process_appends(database_url, commit=True)
        assert await wait_event(nudge, 5)


async def test_a_lost_listening_connection_is_opened_again(
    engine: AsyncEngine, database_url: str
) -> None:
    nudge = asyncio.Event()
    async with background(hear_commits(engine, nudge)):
        assert await wait_event(nudge, 10)
        conn = await asyncpg.connect(db.async_url(database_url).replace("+asyncpg", ""))
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        finally:
            await conn.close()
        assert killed == 1
        nudge.clear()
        assert await wait_event(nudge, 10)  # listening again (and looking once)
        nudge.clear()
        await other_process_appends(database_url, commit=True)
        assert await wait_event(nudge, 5)


@pytest.mark.parametrize("backend", ["server"], indirect=True)
async def test_a_relay_relays_another_process_commit_without_waiting_for_its_poll(
    engine: AsyncEngine, database_url: str, redis_client: AnyRedis, domain: str
) -> None:
    keys = EventKeys.for_namespace(domain)
    relay = Relay(redis_client, db.sessionmaker(engine), domain, maxlen=1000)
    async with background(relay.run(60.0, listen=engine)):
        for _ in range(100):  # its first pass (a poll) has set the cursor
            if await redis_client.hget(keys.cursors, "audit") is not None:
                break
            await asyncio.sleep(0.05)
        await other_process_appends(database_url, commit=True)
        for _ in range(100):
            if stream_entries(await redis_client.xrange(keys.stream)):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("not relayed within 5 s; the next poll is a minute away")
