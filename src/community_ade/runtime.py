"""One ``Runtime`` (settings, Redis, lock manager, database), opened and closed the same
way by the server, the worker and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

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
    async def open(cls, settings: Settings | None = None) -> AsyncIterator[Runtime]:
        """Connect to Redis and the database.

        Unset URLs mean the embedded defaults: a Redis started in the data directory and
        a SQLite file there, migrated to the newest schema. An explicit database must
        already be migrated (``ade db upgrade``).
        """
        settings = settings or Settings()
        lock_config = LockConfig.from_settings(settings)
        make_private(settings.data_dir)
        engine = db.create_engine(settings.database_url or db.default_url(settings.data_dir))
        try:
            await _prepare_schema(engine, automatic=settings.database_url is None)
            async with contextlib.AsyncExitStack() as stack:
                stack.push_async_callback(engine.dispose)
                embedded = None
                url = settings.redis_url
                if url is None:
                    embedded = EmbeddedRedis(settings.data_dir)
                    url = await asyncio.to_thread(embedded.ensure_started)
                    stack.push_async_callback(asyncio.to_thread, embedded.stop_if_unused)
                redis = await open_redis(url)
                stack.push_async_callback(redis.aclose)
                locks = LockManager(redis, lock_config, domain=settings.lock_domain)
                stack.push_async_callback(locks.close)
                queue = TaskQueue(redis, name=settings.queue_name)
                stack.push_async_callback(queue.drain_background)
                sessions = db.sessionmaker(engine)
                bind_queue(sessions, queue)  # approved tasks are queued once committed
                yield cls(
                    settings=settings,
                    redis=redis,
                    locks=locks,
                    engine=engine,
                    sessions=sessions,
                    queue=queue,
                    embedded=embedded,
                )
        finally:
            await engine.dispose()

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
