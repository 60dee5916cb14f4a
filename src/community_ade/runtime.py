"""One ``Runtime`` (settings, Redis, lock manager, database), opened and closed the same
way by the server, the worker and the CLI; its ``Database`` alone for the commands that
need nothing else (users, tokens), so that they work while Redis is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from community_ade.errors import ServiceUnavailable
from community_ade.execution.dispatch import bind_queue
from community_ade.execution.executors.base import PlanContext
from community_ade.execution.queue import TaskQueue
from community_ade.execution.shell_profiles import StoredShellProfiles
from community_ade.infra.data_dir import make_private
from community_ade.infra.embedded_redis import EmbeddedRedis
from community_ade.infra.redis_client import AnyRedis, open_redis
from community_ade.locks import LockConfig, LockManager
from community_ade.settings import Settings
from community_ade.storage import db

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Database:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings | None = None, *, wait: float = 0.0
    ) -> AsyncIterator[Database]:
        """Connect to the database (unset URL: a SQLite file in the data directory,
        migrated to the newest schema; an explicit database must already be migrated).

        Args:
            wait: seconds to keep trying while it is unreachable or not migrated yet.
        """
        settings = settings or Settings()
        make_private(settings.data_dir)
        engine = db.create_engine(
            settings.database_url or db.default_url(settings.data_dir),
            pool_size=settings.database_pool_size,
        )
        try:
            automatic = settings.database_url is None
            await until_available(
                "the database", lambda: _prepare_schema(engine, automatic=automatic), wait
            )
            yield cls(settings=settings, engine=engine, sessions=db.sessionmaker(engine))
        finally:
            await engine.dispose()


@dataclass
class Runtime:
    settings: Settings
    redis: AnyRedis
    locks: LockManager
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    queue: TaskQueue
    embedded: EmbeddedRedis | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings | None = None, *, wait: float = 0.0
    ) -> AsyncIterator[Runtime]:
        """Connect to Redis and the database (``Database.open``).

        Unset URLs mean the embedded defaults: a Redis started in the data directory and
        a SQLite file there.

        Args:
            wait: seconds to keep trying while either is unreachable (a service started
                together with them); 0 fails at once.
        """
        settings = settings or Settings()
        lock_config = LockConfig.from_settings(settings)
        async with (
            Database.open(settings, wait=wait) as database,
            contextlib.AsyncExitStack() as stack,
        ):
            embedded = None
            url = settings.redis_url
            if url is None:
                embedded = EmbeddedRedis(settings.data_dir)
                url = await asyncio.to_thread(embedded.ensure_started)
                stack.push_async_callback(asyncio.to_thread, embedded.stop_if_unused)
            redis_url = url
            redis = await until_available(
                f"Redis at {redis_url}", lambda: open_redis(redis_url), wait
            )
            stack.push_async_callback(redis.aclose)
            locks = LockManager(redis, lock_config, domain=settings.lock_domain)
            stack.push_async_callback(locks.close)
            queue = TaskQueue(redis, name=settings.queue_name)
            stack.push_async_callback(queue.drain_background)
            bind_queue(database.sessions, queue)  # approved tasks are queued once committed
            yield cls(
                settings=settings,
                redis=redis,
                locks=locks,
                engine=database.engine,
                sessions=database.sessions,
                queue=queue,
                embedded=embedded,
            )

    def plan_context(self, session: AsyncSession | None = None) -> PlanContext:
        """What executors plan and apply under: the settings' roots and limits, and the
        stored shell profiles, read in ``session`` when given (inside a transaction),
        else each in a short session of its own."""
        profiles = (
            StoredShellProfiles.of(db.read_sessions(self.sessions))
            if session is None
            else StoredShellProfiles.in_session(session)
        )
        return PlanContext.from_settings(self.settings, shell_profiles=profiles)


async def until_available(what: str, connect: Callable[[], Awaitable[T]], wait: float) -> T:
    """``await connect()``, tried again while it raises ``ServiceUnavailable`` until
    ``wait`` seconds have passed; the wait is logged once, with its reason."""
    deadline = time.monotonic() + wait
    pause = 0.25
    waited = False
    while True:
        try:
            result = await connect()
        except ServiceUnavailable as exc:
            if time.monotonic() + pause > deadline:
                raise
            if not waited:
                log.warning(
                    "waiting for %s (up to %.0f s): %s",
                    what,
                    deadline - time.monotonic(),
                    exc.message,
                )
                waited = True
            await asyncio.sleep(pause)
            pause = min(5.0, pause * 2)
            continue
        if waited:
            log.warning("%s is available", what)
        return result


async def _prepare_schema(engine: AsyncEngine, *, automatic: bool) -> None:
    if automatic:
        await db.upgrade(engine)
        return
    current, head = await db.current_revision(engine), db.head_revision()
    if current != head:
        raise ServiceUnavailable(
            f"the database schema is at revision {current or 'none'}, this version needs "
            f"{head}: run `ade db upgrade`"
        )
