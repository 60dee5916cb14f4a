"""Hearing audit-log commits of every process: PostgreSQL ``LISTEN``.

A trigger on ``audit_log`` (migration 0016) notifies ``ade_audit_appended`` in each
appending transaction; PostgreSQL delivers it when that transaction commits, to every
listening connection of every process. The relay of an ``ade serve`` thus wakes for
the worker's commits (and the other servers') at once instead of at its next poll. The
in-process wake-up (``audit.APPENDED``) stays: SQLite has no NOTIFY, and polling still
covers a listening connection that was lost until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from community_ade.infra.aio import Incident

log = logging.getLogger(__name__)

CHANNEL = "ade_audit_appended"


async def hear_commits(engine: AsyncEngine, nudge: asyncio.Event) -> None:
    """Set ``nudge`` at each audit-log commit of any process, until cancelled; the
    connection is opened again when lost. Returns at once where there is no NOTIFY."""
    if engine.dialect.name != "postgresql":
        return
    incident = Incident("listening for audit-log commits", log, cap=10.0)
    while True:
        try:
            async with _listening(engine, nudge) as lost:
                incident.cleared()
                nudge.set()  # whatever committed while nobody listened
                await lost.wait()
            raise ConnectionError("the listening connection was closed")
        except Exception as exc:
            await asyncio.sleep(incident.failed(exc))


@contextlib.asynccontextmanager
async def _listening(engine: AsyncEngine, nudge: asyncio.Event) -> AsyncIterator[asyncio.Event]:
    """A connection of ``engine`` listening on the channel; yields an event set when
    the connection is lost."""
    lost = asyncio.Event()

    def heard(*_args: Any) -> None:
        nudge.set()

    def terminated(*_args: Any) -> None:
        lost.set()

    async with engine.connect() as conn:
        listener = (await conn.get_raw_connection()).driver_connection
        assert listener is not None
        listener.add_termination_listener(terminated)
        await listener.add_listener(CHANNEL, heard)
        try:
            yield lost
        finally:
            if not listener.is_closed():
                with contextlib.suppress(Exception):
                    await listener.remove_listener(CHANNEL, heard)
            listener.remove_termination_listener(terminated)
