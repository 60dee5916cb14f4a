"""Verifying the audit chain reads one snapshot and holds up no writer; over HTTP it is
rate-limited per caller."""

from __future__ import annotations

from conftest import Api
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM
from community_ade.storage import db


async def append(sessions: async_sessionmaker[AsyncSession], n: int) -> None:
    for i in range(n):
        async with sessions.begin() as session:
            await audit.append(
                session, type="task:created", actor=SYSTEM, subject="t", data={"i": i}
            )


async def test_a_verification_in_progress_holds_up_no_writer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await append(sessions, 3)
    async with db.snapshot_sessions(sessions).begin() as reading:
        assert (await audit.verify_log(reading)).checked == 3
        # Meanwhile others append: no waiting for the reader (on SQLite an ordinary session
        # holds the write lock, and this would fail after the busy timeout).
        await append(sessions, 2)
        again = await audit.verify_log(reading, batch=2)
        assert again.ok
        assert again.checked == 3  # one snapshot for the whole verification
    async with db.snapshot_sessions(sessions).begin() as later:
        assert (await audit.verify_log(later)).checked == 5


async def test_verify_is_rate_limited_per_caller(api: Api) -> None:
    limit = api.runtime.settings.audit_verify_per_minute
    for _ in range(limit):
        ok = await api.client.get("/api/v1/audit/verify", headers=api.as_("vic"))
        assert ok.status_code == 200
    refused = await api.client.get("/api/v1/audit/verify", headers=api.as_("vic"))
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["retry_after"] == int(refused.headers["retry-after"])
    # Another caller has a budget of its own.
    assert (await api.client.get("/api/v1/audit/verify", headers=api.as_("bob"))).status_code == 200
