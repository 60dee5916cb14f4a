"""Throttling callers, in Redis so every server process shares the counts.

- ``LoginThrottle``: failed password logins per account and per client address, with
  the exponential backoff of ``auth.backoff``. Unknown usernames are counted exactly like
  known ones, so the throttle does not tell them apart either.
- ``RateLimit``: at most ``limit`` calls per ``window`` per caller (a fixed window), for
  costly reads such as verifying the whole audit chain.

Keys (one hash tag per deployment, so each MULTI touches one Cluster slot):

- ``ade:throttle:{<namespace>}:login:user:<sha256 of the username>`` HASH failures, last
  (unix seconds of the newest failure); expires ``memory`` seconds after it.
- ``ade:throttle:{<namespace>}:login:addr:<address>`` the same, per client address.
- ``ade:throttle:{<namespace>}:rate:<name>:<caller>`` STRING calls in the current window;
  expires with the window.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from community_ade.auth.backoff import Backoff
from community_ade.errors import RateLimited, ServiceUnavailable
from community_ade.infra.redis_client import AnyRedis
from community_ade.settings import Settings


def _prefix(namespace: str) -> str:
    return f"ade:throttle:{{{namespace}}}:"


async def _in_one_transaction(client: AnyRedis, queue: Callable[[Any], None]) -> list[Any]:
    """Run the commands ``queue`` adds to a MULTI pipeline; their replies. Without Redis
    nothing can be counted: refuse (503) rather than let attempts through uncounted."""
    try:
        async with client.pipeline(transaction=True) as pipe:
            queue(pipe)
            replies: list[Any] = await pipe.execute()
    except (redis.RedisError, OSError) as exc:
        raise ServiceUnavailable(
            f"Redis is unreachable, attempts cannot be counted: {exc}"
        ) from exc
    return replies


@dataclass(frozen=True, slots=True)
class LoginFailure:
    """What one more failure did: the counts after it, and whether it started a lockout
    of the account or of the address (worth an audit event, once per episode)."""

    account_failures: int
    address_failures: int
    locks_account: bool
    locks_address: bool


@dataclass(frozen=True)
class LoginThrottle:
    redis: AnyRedis
    namespace: str
    account: Backoff
    address: Backoff
    memory_seconds: float

    @classmethod
    def from_settings(cls, redis: AnyRedis, settings: Settings) -> LoginThrottle:
        base, cap = settings.login_backoff_base_seconds, settings.login_backoff_cap_seconds
        return cls(
            redis,
            settings.lock_domain,
            Backoff(settings.login_free_failures_per_account, base, cap),
            Backoff(settings.login_free_failures_per_address, base, cap),
            settings.login_failure_memory_seconds,
        )

    def _keys(self, username: str, address: str) -> tuple[str, str]:
        name = hashlib.sha256(username.strip().lower().encode()).hexdigest()
        where = hashlib.sha256(address.encode()).hexdigest()[:32]
        prefix = _prefix(self.namespace) + "login:"
        return prefix + "user:" + name, prefix + "addr:" + where

    async def wait(self, username: str, address: str, *, now: float | None = None) -> float:
        """Seconds before this username may try again from this address (0: now)."""
        now = time.time() if now is None else now
        account_key, address_key = self._keys(username, address)

        def queue(pipe: Any) -> None:
            pipe.hmget(account_key, "failures", "last")
            pipe.hmget(address_key, "failures", "last")

        (
            (account_failures, account_last),
            (address_failures, address_last),
        ) = await _in_one_transaction(self.redis, queue)
        return max(
            self.account.remaining(int(account_failures or 0), float(account_last or 0), now),
            self.address.remaining(int(address_failures or 0), float(address_last or 0), now),
        )

    async def failed(
        self, username: str, address: str, *, now: float | None = None
    ) -> LoginFailure:
        """Count one failed login of ``username`` from ``address``."""
        now = time.time() if now is None else now
        memory_ms = math.ceil(self.memory_seconds * 1000)

        def queue(pipe: Any) -> None:
            for key in self._keys(username, address):
                pipe.hincrby(key, "failures", 1)
                pipe.hset(key, "last", repr(now))
                pipe.pexpire(key, memory_ms)

        replies = await _in_one_transaction(self.redis, queue)
        account_failures, address_failures = int(replies[0]), int(replies[3])
        return LoginFailure(
            account_failures,
            address_failures,
            locks_account=self.account.starts_lockout(account_failures),
            locks_address=self.address.starts_lockout(address_failures),
        )

    async def succeeded(self, username: str) -> int:
        """Forget the account's failures (not the address's: one good password must not
        let an address go on guessing others'); how many there were."""
        account_key, _ = self._keys(username, "")

        def queue(pipe: Any) -> None:
            pipe.hget(account_key, "failures")
            pipe.delete(account_key)

        failures, _deleted = await _in_one_transaction(self.redis, queue)
        return int(failures or 0)


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` calls per ``window_seconds`` for each caller of ``name``."""

    redis: AnyRedis
    namespace: str
    name: str
    limit: int
    window_seconds: float

    async def hit(self, caller: str) -> None:
        """Count a call; ``RateLimited`` (with the seconds to wait) past the limit."""
        key = f"{_prefix(self.namespace)}rate:{self.name}:{caller}"

        def queue(pipe: Any) -> None:
            pipe.set(key, 0, px=math.ceil(self.window_seconds * 1000), nx=True)
            pipe.incr(key)
            pipe.pttl(key)

        _created, calls, ttl_ms = await _in_one_transaction(self.redis, queue)
        if int(calls) > self.limit:
            retry_after = max(1, math.ceil(int(ttl_ms) / 1000))
            raise RateLimited(
                f"at most {self.limit} {self.name} per {self.window_seconds:g} s; "
                f"retry in {retry_after} s",
                retry_after=retry_after,
            )
