"""Opening a Redis client: standalone or Cluster, chosen by asking the server."""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import urlparse

import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from community_ade.errors import InvalidInput, ServiceUnavailable
from community_ade.infra.embedded_redis import CLIENT_NAME

AnyRedis: TypeAlias = "Redis | RedisCluster"

_SCHEMES = {"redis", "rediss", "unix"}


def _retry() -> Retry:
    # Ride out a restart or a dropped connection (a stale pooled socket after a Redis
    # restart fails once). Every lock script is idempotent on its request id, so a
    # command whose reply was lost may safely run again.
    return Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=4)


async def open_redis(url: str) -> AnyRedis:
    """Connect to ``url``; a node with ``cluster_enabled:1`` gives a Cluster client."""
    scheme = urlparse(url).scheme
    if scheme not in _SCHEMES:
        raise InvalidInput(
            f"unsupported Redis URL scheme {scheme!r} in {url!r}: use redis://, rediss:// or unix://"
        )
    client: Redis = Redis.from_url(
        url, decode_responses=True, client_name=CLIENT_NAME, retry=_retry()
    )
    try:
        info = await client.info("cluster")
    except (redis.RedisError, OSError) as exc:
        await client.aclose()
        raise ServiceUnavailable(f"cannot reach Redis at {url}: {exc}") from exc
    if not info.get("cluster_enabled"):
        return client
    await client.aclose()
    if scheme == "unix":
        raise InvalidInput("Redis Cluster is reached over TCP, not a unix socket")
    cluster = RedisCluster.from_url(
        url, decode_responses=True, client_name=CLIENT_NAME, retry=_retry()
    )
    try:
        await cluster.initialize()
    except (redis.RedisError, OSError) as exc:
        await cluster.aclose()
        raise ServiceUnavailable(f"cannot initialise Redis Cluster at {url}: {exc}") from exc
    return cluster
