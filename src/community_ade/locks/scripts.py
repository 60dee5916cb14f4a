"""The lock scripts, loaded once per client. Every script but ``fenced_write`` is the
shared library ``_lib.lua`` followed by its own body (the headers say what each takes)."""

from __future__ import annotations

from importlib import resources

from redis.commands.core import AsyncScript

from community_ade.infra.redis_client import AnyRedis

_LUA = resources.files("community_ade.locks") / "lua"


def _read(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text(encoding="utf-8")


class LockScripts:
    """Registered scripts; redis-py sends EVALSHA and reloads on NOSCRIPT (restarts)."""

    def __init__(self, redis: AnyRedis) -> None:
        lib = _read("_lib")

        def with_lib(name: str) -> AsyncScript:
            return redis.register_script(lib + "\n" + _read(name))

        self.acquire = with_lib("acquire")
        self.release = with_lib("release")
        self.cancel = with_lib("cancel")
        self.heartbeat = with_lib("heartbeat")
        self.set_capacity = with_lib("set_capacity")
        self.force_release = with_lib("force_release")
        self.inspect = with_lib("inspect")
        self.waits_for = with_lib("waits_for")
        self.abort = with_lib("abort")
        self.fenced_write: AsyncScript = redis.register_script(_read("fenced_write"))
