"""Domain errors to ``application/problem+json`` (RFC 9457), in one table.

The domain raises errors with a stable ``code``; this module alone knows which HTTP
status each code means. Anything else is a bug: logged, answered 500 without details.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from community_ade.errors import AdeError, FreshAuthRequired, RateLimited

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_CODE: dict[str, int] = {
    "validation_failed": 422,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "invalid_transition": 409,
    "stale_preview": 409,
    "already_decided": 409,
    "lock_conflict": 409,
    "not_eligible": 403,
    "self_review": 403,
    "fresh_auth_required": 401,
    "lock_timeout": 409,
    "deadlock_detected": 409,
    "lock_lost": 409,
    "fence_rejected": 409,
    "service_unavailable": 503,
    "rate_limited": 429,
    "link_refused": 403,
}

TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": code, "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    # A detail never replaces a member of the document itself (an error's ``type=``
    # detail once turned a 409's type into a task type).
    body.update({k: v for k, v in extra.items() if v is not None and k not in body})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class PayloadTooLarge(StarletteHTTPException):
    """Raised from a request's ``receive`` once its body passes the limit
    (``api/body_limit.py``). An ``HTTPException``, so FastAPI's body parsing passes it
    on unchanged instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds this route's limit of {limit} bytes")
        self.limit = limit


def payload_too_large(limit: int) -> JSONResponse:
    """413 ``payload_too_large``."""
    return problem(
        413,
        "payload_too_large",
        f"the request body exceeds this route's limit of {limit} bytes",
        limit=limit,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into a problem document."""

    @app.exception_handler(AdeError)
    async def domain_error(request: Request, exc: AdeError) -> JSONResponse:
        status = STATUS_BY_CODE.get(exc.code, 400)
        headers = _headers_for(exc, status)
        details = {k: v for k, v in exc.details.items() if _json_safe(v)}
        return problem(status, exc.code, exc.message, headers=headers, **details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem(422, "validation_failed", "the request is not valid", errors=errors)

    @app.exception_handler(PayloadTooLarge)
    async def too_large(request: Request, exc: PayloadTooLarge) -> JSONResponse:
        return payload_too_large(exc.limit)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def dependency_error(request: Request, exc: Exception) -> JSONResponse:
        if not transient(exc):
            return await unexpected(request, exc)
        log.warning("dependency unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem(
            503,
            "service_unavailable",
            "the database or Redis is busy or unreachable; retry in a moment",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "an unexpected error occurred; it has been logged")


def _headers_for(exc: AdeError, status: int) -> dict[str, str] | None:
    if isinstance(exc, FreshAuthRequired):  # RFC 9470 step-up challenge
        max_age = exc.details.get("max_age")
        return {
            "WWW-Authenticate": 'Bearer error="insufficient_user_authentication", '
            f'error_description="a more recent login is required", max_age={max_age}'
        }
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    return None


def transient(exc: BaseException) -> bool:
    """A dependency's error that retrying can cure: Redis unreachable, the database
    unreachable or busy, a connection closed under the request (killed, the server
    restarted; SQLAlchemy replaces the pool's connections), or asyncpg's "another
    operation is in progress" on a connection a cancelled request left mid-statement."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    )


def _json_safe(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | list | dict) or value is None
