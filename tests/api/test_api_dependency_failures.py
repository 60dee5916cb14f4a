"""The API under a dropped database connection: a transient connection error is a 503
with ``Retry-After`` (the client retries), never a 500; the next request works."""

from __future__ import annotations

import pytest
from conftest import Api
from sqlalchemy import text

from community_ade.storage import db

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def kill_other_connections(database_url: str) -> int:
    """``pg_terminate_backend`` every other connection to the test's database."""
    killer = db.create_engine(database_url)
    try:
        async with killer.connect() as connection:
            killed = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        return int(killed or 0)
    finally:
        await killer.dispose()


async def test_a_connection_killed_under_the_api_is_a_503_with_retry_after(
    api: Api, database_url: str
) -> None:
    assert (await api.client.get("/api/v1/tasks", headers=api.as_("alice"))).status_code == 200
    assert await kill_other_connections(database_url) >= 1
    # Used a moment ago, so not pinged: the request meets the dead connection.
    dropped = await api.client.get("/api/v1/tasks", headers=api.as_("alice"))
    assert dropped.status_code == 503, dropped.text
    assert dropped.headers["Retry-After"] == "1"
    assert dropped.json()["type"] == "service_unavailable"
    again = await api.client.get("/api/v1/tasks", headers=api.as_("alice"))
    assert again.status_code == 200, again.text
