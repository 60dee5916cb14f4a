"""A real HTTP server that receives webhooks for tests (the receiver is outside the
system under test, so a local server stands in for it): ``http.server`` in a thread,
recording every request and answering what the test sets (status, a delay per request).

    with Receiver() as hooks:
        hooks.url                 # http://127.0.0.1:PORT/hooks
        hooks.status = 503        # answer 503 from now on
        await hooks.wait_for(lambda got: len(got) >= 3)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

WAIT = 20.0


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    at: float  # time.time() when the request had been read (before any delay)


@dataclass
class Receiver:
    status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                at = time.time()
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                with receiver._lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, status, at)
                    )
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answered {status}".encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    def got(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def accepted(self) -> list[Received]:
        return [r for r in self.got() if 200 <= r.status < 300]

    async def wait_for(
        self, done: Callable[[list[Received]], bool], timeout: float = WAIT
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while not done(got := self.got()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver did not get what was expected: {got}")
            await asyncio.sleep(0.05)
        return got
