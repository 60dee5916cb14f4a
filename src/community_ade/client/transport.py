"""HTTP for the SDK: one request, its problem document as an exception, and retries
with backoff only where a retry cannot act twice.

A call is retried after a network error or a ``503`` only when it is idempotent: a
``GET``, a ``DELETE``, a call that carries an ``Idempotency-Key`` (the server replays its
first answer), or one the caller marks idempotent (a lease heartbeat renews the same
lease however often it arrives). A connection that could not even be opened is retried
for every call: nothing was sent. A ``409 conflict`` saying that the same key is still
being processed (``in_progress``) is retried too: the next try gets the stored answer.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx

from community_ade.client.errors import problem_for

API_PREFIX = "/api/v1"
PROBLEM_JSON = "application/problem+json"
# Nothing was sent on these: any call may be tried again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Backoff:
    """How idempotent calls are retried: ``attempts`` tries in all, sleeping
    ``base * 2**n`` (at most ``cap``, with full jitter) or the server's ``Retry-After``."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cap)
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _problem_document(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error answer; one made up from the status when the
    answer is not one (a proxy's HTML page, say)."""
    if response.headers.get("content-type", "").startswith(("application/", "text/json")):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("type"), str):
            return body
    code = "service_unavailable" if response.status_code == 503 else "http_error"
    return {
        "type": code,
        "title": response.reason_phrase,
        "status": response.status_code,
        "detail": response.text[:500] or response.reason_phrase,
    }


def _transient(response: httpx.Response, document: dict[str, Any]) -> bool:
    if response.status_code in (502, 503, 504):
        return True
    return document.get("type") == "conflict" and document.get("in_progress") is True


class Transport:
    """Requests under ``/api/v1`` with the bearer token; answers as JSON or exceptions."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.backoff = backoff or Backoff()
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        idempotent: bool = False,
    ) -> Any:
        """The decoded JSON answer (``None`` for 204), or the problem as an exception.

        Raises:
            AdeProblem: the server's problem document, by its ``type``.
            httpx.TransportError: the network failed and the call may not be retried
                (or every retry failed too).
        """
        headers = dict(self.auth_headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        retry = idempotent or method in ("GET", "DELETE") or idempotency_key is not None
        attempt = 0
        while True:
            try:
                response = await self.http.request(
                    method, API_PREFIX + path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                if (retry or isinstance(exc, _NOT_SENT)) and attempt + 1 < self.backoff.attempts:
                    await asyncio.sleep(self.backoff.delay(attempt))
                    attempt += 1
                    continue
                raise
            if response.is_success:
                return None if response.status_code == 204 else response.json()
            document = _problem_document(response)
            if retry and _transient(response, document) and attempt + 1 < self.backoff.attempts:
                await asyncio.sleep(self.backoff.delay(attempt, _retry_after(response)))
                attempt += 1
                continue
            raise problem_for(document)
