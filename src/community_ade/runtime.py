"""One ``Runtime`` (settings, Redis, lock manager; later the database), opened and closed
the same way by the server, the worker and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from community_ade.infra.embedded_redis import EmbeddedRedis
from community_ade.infra.redis_client import AnyRedis, open_redis
from community_ade.locks import LockConfig, LockManager
from community_ade.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    redis: AnyRedis
    locks: LockManager
    embedded: EmbeddedRedis | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings | None = None) -> AsyncIterator[Runtime]:
        """Connect to Redis (starting the embedded one if ``ADE_REDIS_URL`` is unset)."""
        settings = settings or Settings()
        lock_config = LockConfig.from_settings(settings)
        embedded = None
        url = settings.redis_url
        if url is None:
            embedded = EmbeddedRedis(settings.data_dir)
            url = await asyncio.to_thread(embedded.ensure_started)
        redis = await open_redis(url)
        runtime = cls(
            settings=settings,
            redis=redis,
            locks=LockManager(redis, lock_config, domain=settings.lock_domain),
            embedded=embedded,
        )
        try:
            yield runtime
        finally:
            await runtime.locks.close()
            await redis.aclose()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop_if_unused)
