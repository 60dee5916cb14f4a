"""Lua scripts kept as package data: read once, registered with a client, sent by EVALSHA
(redis-py reloads a script on NOSCRIPT, after a restart or failover)."""

from __future__ import annotations

from importlib import resources

from redis.commands.core import AsyncScript

from community_ade.infra.redis_client import AnyRedis


def read_lua(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua``."""
    return (resources.files(package) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def register_lua(redis: AnyRedis, package: str, name: str, *, prelude: str = "") -> AsyncScript:
    """``<package>/lua/<name>.lua`` (after ``prelude``, e.g. a shared library) as a script."""
    body = read_lua(package, name)
    return redis.register_script(f"{prelude}\n{body}" if prelude else body)
