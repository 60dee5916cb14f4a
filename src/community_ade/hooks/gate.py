"""``ade hook``: ask Community ADE before a coding agent runs a tool.

A harness (Claude Code, Cursor) starts the hook once per tool call with the call on
stdin. The hook proposes it as an ``agent.call`` task (``POST /tasks`` and ``/submit``,
as the agent whose token is ``ADE_TOKEN``); policy decides. Auto-approved (the built-in
policy's read-only tools): "allow" at once. Otherwise it long-polls
``GET /tasks/{id}/decision`` until a reviewer decides or ``ADE_HOOK_WAIT_SECONDS`` pass
(keep it below the harness's hook timeout): allow / deny with the reviewer's comment, or
"ask" with the task left in the queue. Once the answer is out, an allowed call is
claimed and reported complete ("the harness runs it"), so it does not linger as
approved-but-unapplied; that happens in a detached child, as the harness waits for the
hook to exit.

When the harness gives up (it signals the hook, or exits itself) the task is cancelled,
so the queue does not fill with stale prompts. Server unreachable, no token, a refusal:
"ask" with the reason, so the harness falls back to its own prompt (the person at the
terminal decides; headless ``claude -p`` runs nothing). Never "allow" without a decision.

Standard library only (``http.client``): a hook runs for every tool call, so starting
fast matters more than sharing the SDK's retries (a failed call here simply asks).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import IO, Any
from urllib.parse import urlsplit

from community_ade.defaults import DEFAULT_URL
from community_ade.hooks.harness import ANSWERS, EVENTS, BadEvent, ToolCall, Verdict, verdict_of

API = "/api/v1"
DEFAULT_WAIT_SECONDS = 50.0  # Claude Code's default hook timeout is 60 s
POLL_SECONDS = 5.0  # each long-poll; between them the hook checks its harness is alive
MAX_EVENT_BYTES = 1 << 20
REQUEST_TIMEOUT = 10.0


class GaveUp(Exception):
    """The harness signalled the hook to stop."""


class Unavailable(Exception):
    """The server cannot be asked (unreachable, refuses the token, an odd answer)."""


class Server:
    """One keep-alive connection to the API with the agent's token."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Unavailable(f"ADE_URL must be an http(s) URL, got {url!r}")
        connection = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self.prefix = parts.path.rstrip("/") + API
        self.connection = connection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """The JSON answer, or ``Unavailable`` naming the problem."""
        self.connection.timeout = timeout or REQUEST_TIMEOUT
        if self.connection.sock is not None:
            self.connection.sock.settimeout(self.connection.timeout)
        data = None if body is None else json.dumps(body).encode()
        try:
            self.connection.request(method, self.prefix + path, data, self.headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            raise Unavailable(
                f"Community ADE at {self.connection.host} is unreachable: {exc}"
            ) from None
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if response.status >= 400:
            detail = answer.get("detail") if isinstance(answer, dict) else None
            raise Unavailable(f"Community ADE refused ({response.status}): {detail or raw[:200]!r}")
        return answer

    def close(self) -> None:
        self.connection.close()


@contextlib.contextmanager
def _harness_signals() -> Iterator[None]:
    """SIGTERM / SIGINT / SIGHUP from the harness become ``GaveUp`` in the waiting code."""

    names = ("SIGTERM", "SIGINT", "SIGHUP")
    signals = [sig for name in names if (sig := getattr(signal, name, None)) is not None]

    def give_up(signum: int, frame: FrameType | None) -> None:
        for sig in signals:  # once: a second signal must not cut the cancelling short
            signal.signal(sig, signal.SIG_IGN)
        raise GaveUp

    previous = {sig: signal.signal(sig, give_up) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Gate:
    """One tool call through review."""

    def __init__(self, server: Server, wait_seconds: float, *, parent: int | None = None):
        self.server = server
        self.wait_seconds = wait_seconds
        self.parent = parent if parent is not None else os.getppid()
        self.task_id: str | None = None

    def decide(self, call: ToolCall) -> Verdict:
        created = self.server.call("POST", "/tasks", call.task())
        self.task_id = _task_id(created)
        submitted = self.server.call("POST", f"/tasks/{self.task_id}/submit")
        if submitted.get("auto_approved"):
            status = {"task_id": self.task_id, "outcome": "approved", "decided": True}
        else:
            status = self._wait()
        verdict = verdict_of(status, waited=self.wait_seconds)
        if status.get("outcome") == "changes_requested":
            # Back in DRAFT, but the harness moves on (it asks anew): do not leave it behind.
            self.cancel("denied with the reviewers' comments; the agent asks anew")
        return verdict

    def _wait(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            left = deadline - time.monotonic()
            poll = max(0.0, min(POLL_SECONDS, left))
            status: dict[str, Any] = self.server.call(
                "GET", f"/tasks/{self.task_id}/decision?wait_seconds={poll:.3f}", timeout=poll + 10
            )
            if status.get("decided") or left <= 0:
                return status
            if os.getppid() != self.parent:  # the harness exited without a word
                raise GaveUp

    def hand_over(self) -> None:
        """Record that the harness runs the allowed call: claim it and report it done
        (an ``agent.call`` is applied by the agent; the harness is that agent)."""
        try:
            claim = self.server.call("POST", f"/tasks/{self.task_id}/claim", {})
            self.server.call(
                "POST",
                f"/tasks/{self.task_id}/complete",
                {"fence": claim["fence"], "summary": "allowed; the coding agent runs the tool"},
            )
        except (Unavailable, KeyError, TypeError) as exc:  # the answer stands: it was approved
            sys.stderr.write(f"ade hook: could not record the hand-over: {exc}\n")

    def cancel(self, reason: str) -> None:
        if self.task_id is None:
            return
        self.server.close()  # a request may have been cut off mid-way: start afresh
        try:
            self.server.call("POST", f"/tasks/{self.task_id}/cancel", {"reason": reason})
        except Unavailable as exc:
            sys.stderr.write(f"ade hook: could not cancel task {self.task_id}: {exc}\n")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _task_id(created: Any) -> str:
    """The new task's id, checked to be a UUID before it goes into a URL path."""
    task_id = created.get("id") if isinstance(created, dict) else None
    if not isinstance(task_id, str) or not _UUID.fullmatch(task_id):
        raise Unavailable(f"Community ADE answered no task id: {created!r:.200}")
    return task_id


def _ask(reason: str) -> Verdict:
    return Verdict("ask", f"Community ADE could not decide: {reason}")


def run(
    harness: str,
    stdin: IO[str] = sys.stdin,
    stdout: IO[str] = sys.stdout,
    env: dict[str, str] | None = None,
) -> int:
    """The hook command: one tool call in, one answer out. The exit code is 0 whenever
    an answer was printed (the harnesses read the decision from the JSON); 143 when the
    harness gave up (nothing printed, the task cancelled)."""
    env = dict(os.environ) if env is None else env
    answer: Callable[[Verdict], dict[str, Any]] = ANSWERS[harness]
    verdict, gate = _verdict(harness, stdin, env)
    if verdict is None:
        return 143
    stdout.write(json.dumps(answer(verdict)) + "\n")
    stdout.flush()
    if gate is not None:
        if verdict.decision == "allow":
            _after_answer(gate.hand_over)
        gate.server.close()
    return 0


def _verdict(
    harness: str, stdin: IO[str], env: dict[str, str]
) -> tuple[Verdict | None, Gate | None]:
    """The answer, and the gate that proposed the call (None when nothing was)."""
    try:
        raw = stdin.read(MAX_EVENT_BYTES + 1)
        if len(raw) > MAX_EVENT_BYTES:
            raise BadEvent(f"larger than {MAX_EVENT_BYTES} characters")
        event = json.loads(raw or "null")
        if not isinstance(event, dict):
            raise BadEvent("the hook input must be a JSON object")
        call = EVENTS[harness](event)
    except (ValueError, BadEvent) as exc:
        return _message(_ask(f"unreadable hook input ({exc})")), None
    token = env.get("ADE_TOKEN", "").strip()
    if not token:
        return _message(_ask("set ADE_TOKEN to the agent's API token")), None
    try:
        wait = float(env.get("ADE_HOOK_WAIT_SECONDS") or DEFAULT_WAIT_SECONDS)
        if not 0 <= wait <= 3600:
            raise ValueError
    except ValueError:
        message = "ADE_HOOK_WAIT_SECONDS must be a number of seconds, 0 to 3600"
        return _message(_ask(message)), None
    try:
        server = Server(env.get("ADE_URL") or DEFAULT_URL, token)
    except Unavailable as exc:
        return _message(_ask(str(exc))), None
    gate = Gate(server, wait)
    with _harness_signals():
        try:
            return gate.decide(call), gate
        except GaveUp:
            gate.cancel("the coding agent stopped waiting for the decision")
            return None, gate
        except Unavailable as exc:  # the harness asks its user instead: no stale task
            gate.cancel(f"the hook could not finish: {exc}"[:1000])
            return _message(_ask(str(exc))), gate


def _after_answer(work: Callable[[], None]) -> None:
    """Do ``work`` once the harness has its answer. A harness waits for the hook to
    exit, so where there is ``fork`` the work goes on in a detached child that lets go
    of stdin/stdout/stderr at once; elsewhere it is done here, before exiting."""
    if not hasattr(os, "fork"):
        work()
        return
    sys.stderr.flush()
    if os.fork() != 0:
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        work()
    finally:
        os._exit(0)


def _message(verdict: Verdict) -> Verdict:
    """Say why on stderr too: a harness shows it to the person at the terminal."""
    sys.stderr.write(f"ade hook: {verdict.reason}\n")
    return verdict
