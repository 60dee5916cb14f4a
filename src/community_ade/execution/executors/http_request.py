"""``http.request``: one HTTP request (a webhook call) to a URL on the allowlist.

Payload::

    {"method": "POST", "url": "https://hooks.example.com/deploy?env=prod",
     "headers": {"Authorization": "Bearer ..."},
     "body": {"service": "api"},            # JSON; a string is sent as text
     "timeout_seconds": 30,
     "rollback": {"method": "DELETE", "url": "https://hooks.example.com/deploy/api"}}

``plan`` sends nothing: the preview is the request exactly as it will be sent (method,
URL, every header, the body bytes), with the values of secret-bearing headers
(``Authorization``, cookies, anything named like a token, key or password) shown as
``<redacted>``. The precondition fingerprint covers the unredacted request, so a secret
changed after approval is noticed too. A JSON body is encoded once, canonically (sorted
keys, two-space indent), and those bytes are what is both shown and sent.

``apply`` adds ``X-ADE-Task`` and ``X-ADE-Fence`` (the remote side can refuse an old
fence itself), sends the request without following redirects (a redirect could leave the
allowlist) and records the status and a bounded part of the response. 2xx is success;
5xx, 408, 429, timeouts and connection errors are transient (retried with backoff, so a
receiver should deduplicate on ``X-ADE-Task``); every other status is a permanent failure.
``rollback`` sends the optional ``rollback`` request the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from community_ade.execution.executors import fencing, urls
from community_ade.execution.executors.base import (
    ApplyContext,
    ApplyFailed,
    ApplyingExecutor,
    ApplyResult,
    FieldError,
    Payload,
    Plan,
    PlanContext,
    RollbackOutcome,
    Snapshot,
    ValidationReport,
    invalid,
    parsed_for_apply,
)

TASK_TYPE = "http.request"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_HEADERS = 100
MAX_HEADER_VALUE_CHARS = 8192
MAX_BODY_BYTES = 1024 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TIMEOUT_SECONDS = 300.0
DEFAULT_TIMEOUT_SECONDS = 30.0
USER_AGENT = "community-ade"
REDACTED = "<redacted>"
TRANSIENT_STATUSES = frozenset({408, 429})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Set by the client or by the apply itself; a payload may not choose them.
_RESERVED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
     "te", "trailer", "proxy-connection", "x-ade-task", "x-ade-fence"}
)  # fmt: skip
_SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
_SECRET_PARTS = ("token", "secret", "passw", "key", "auth", "session", "credential", "signature")
_REQUEST_KEYS = frozenset({"method", "url", "headers", "body"})
_PAYLOAD_KEYS = _REQUEST_KEYS | {"timeout_seconds", "rollback"}


@dataclass(frozen=True)
class Request:
    """One validated request: headers sorted by name, the body already encoded."""

    method: str
    url: str
    target: urls.Target
    headers: tuple[tuple[str, str], ...]
    body: bytes | None

    def canonical(self) -> dict[str, Any]:
        """Everything sent, secrets included (for the fingerprint only, never shown)."""
        body = None if self.body is None else self.body.decode("utf-8")
        return {"method": self.method, "url": self.url, "headers": self.headers, "body": body}

    def render(self) -> str:
        """The request as the preview shows it, secret header values redacted."""
        lines = [f"{self.method} {self.url}"]
        lines += [
            f"{name}: {REDACTED if is_secret(name) else value}" for name, value in self.headers
        ]
        lines += ["X-ADE-Fence: <the apply's fencing token>", "X-ADE-Task: <the task id>"]
        if self.body is not None:
            lines += ["", self.body.decode("utf-8")]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class HttpTask:
    """A validated payload."""

    request: Request
    timeout_seconds: float
    rollback: Request | None


def is_secret(name: str) -> bool:
    """Whether a header's value is a credential the preview must not show."""
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def parse(payload: object) -> tuple[HttpTask | None, tuple[FieldError, ...]]:
    """The validated payload, or None and every problem found. Pure: no network, no
    allowlist (that is configuration, checked by ``plan``)."""
    if not isinstance(payload, Mapping):
        return None, (FieldError("", "payload must be an object"),)
    errors = [FieldError(str(key), "unknown field") for key in payload if key not in _PAYLOAD_KEYS]
    request = _parse_request("", payload, errors)
    rollback = None
    raw_rollback = payload.get("rollback")
    if raw_rollback is not None:
        if isinstance(raw_rollback, Mapping):
            errors.extend(
                FieldError(f"rollback.{key}", "unknown field")
                for key in raw_rollback
                if key not in _REQUEST_KEYS
            )
            rollback = _parse_request("rollback.", raw_rollback, errors)
        else:
            errors.append(FieldError("rollback", "must be an object (a request)"))
    timeout = payload.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        errors.append(FieldError("timeout_seconds", "must be a number of seconds"))
    elif not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        errors.append(
            FieldError(
                "timeout_seconds", f"must be more than 0 and at most {MAX_TIMEOUT_SECONDS:g}"
            )
        )
    if errors or request is None:
        return None, tuple(errors)
    return HttpTask(request, float(timeout), rollback), ()


def _parse_request(where: str, raw: Mapping[str, Any], errors: list[FieldError]) -> Request | None:
    before = len(errors)
    method = raw.get("method")
    if not isinstance(method, str) or method not in METHODS:
        errors.append(FieldError(f"{where}method", f"must be one of {', '.join(sorted(METHODS))}"))
    target, problem = urls.parse_url(raw.get("url"))
    if problem is not None:
        errors.append(FieldError(f"{where}url", problem))
    headers = _parse_headers(f"{where}headers", raw.get("headers", {}), errors)
    body, content_type = _encode_body(f"{where}body", raw.get("body"), errors)
    if len(errors) > before or target is None or headers is None:
        return None
    names = {name.lower() for name, _ in headers}
    if body is not None and "content-type" not in names:
        headers.append(("Content-Type", content_type))
    if "user-agent" not in names:
        headers.append(("User-Agent", USER_AGENT))
    headers.sort(key=lambda item: item[0].lower())
    return Request(str(method), str(raw["url"]), target, tuple(headers), body)


def _parse_headers(
    where: str, raw: object, errors: list[FieldError]
) -> list[tuple[str, str]] | None:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(where, "must be an object of header names to values"))
        return None
    if len(raw) > MAX_HEADERS:
        errors.append(FieldError(where, f"must have at most {MAX_HEADERS} headers"))
        return None
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in raw.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            errors.append(FieldError(at, "is not a valid header name"))
        elif name.lower() in _RESERVED:
            errors.append(FieldError(at, "is set by Community ADE or the HTTP client, not a task"))
        elif name.lower() in seen:
            errors.append(FieldError(at, "is given twice (header names ignore case)"))
        elif not isinstance(value, str) or not _VALUE.fullmatch(value):
            errors.append(FieldError(at, "must be a string of printable ASCII characters"))
        elif len(value) > MAX_HEADER_VALUE_CHARS:
            errors.append(FieldError(at, f"must be at most {MAX_HEADER_VALUE_CHARS} characters"))
        else:
            seen.add(name.lower())
            found.append((name, value))
    return found


def _encode_body(where: str, body: object, errors: list[FieldError]) -> tuple[bytes | None, str]:
    """The bytes to send and their default content type: a string as UTF-8 text,
    anything else as canonical JSON."""
    if body is None:
        return None, ""
    try:
        if isinstance(body, str):
            encoded, content_type = body.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            text = json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            encoded, content_type = text.encode("utf-8"), "application/json"
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        errors.append(FieldError(where, f"cannot be encoded: {exc}"))
        return None, ""
    if len(encoded) > MAX_BODY_BYTES:
        errors.append(FieldError(where, f"must be at most {MAX_BODY_BYTES} bytes"))
        return None, ""
    return encoded, content_type


def refused_urls(spec: HttpTask, context: PlanContext) -> list[FieldError]:
    """The requests whose URL is not on the allowlist."""
    allowlist = context.http_targets
    named = [("url", spec.request), ("rollback.url", spec.rollback)]
    return [
        FieldError(where, f"{request.url} is not on the allowlist (ADE_HTTP_ALLOWLIST)")
        for where, request in named
        if request is not None and not urls.allowed(request.target, allowlist)
    ]


@dataclass(frozen=True)
class Response:
    status: int
    body: str


async def send(request: Request, *, timeout: float, context: ApplyContext) -> Response:
    """Send ``request`` with the ADE headers, redirects not followed, the response body
    read up to ``MAX_RESPONSE_BYTES``. Network failures are transient ``ApplyFailed``."""
    headers = [
        *request.headers,
        ("X-ADE-Task", context.task_id),
        ("X-ADE-Fence", str(context.fence)),
    ]
    try:
        # trust_env=False: no proxy or .netrc from the worker's environment joins in.
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                request.method, request.url, headers=headers, content=request.body
            ) as reply,
        ):
            kept = bytearray()
            async for chunk in reply.aiter_bytes():  # decoded, as the receiver meant it
                kept += chunk[: MAX_RESPONSE_BYTES - len(kept)]
                if len(kept) >= MAX_RESPONSE_BYTES:
                    break
            return Response(reply.status_code, kept.decode("utf-8", "replace"))
    except httpx.HTTPError as exc:
        raise ApplyFailed(
            f"{request.method} {request.url} failed: {type(exc).__name__}: {exc}", transient=True
        ) from None


def failure(request: Request, response: Response) -> ApplyFailed | None:
    """None for a 2xx response; else the failure, transient for 5xx, 408 and 429."""
    if 200 <= response.status < 300:
        return None
    transient = response.status >= 500 or response.status in TRANSIENT_STATUSES
    return ApplyFailed(
        f"{request.method} {request.url} answered {response.status}",
        transient=transient,
        status=response.status,
        output=response.body,
    )


class HttpRequestExecutor:
    """``http.request``: validate, plan (no request sent), snapshot, apply, rollback."""

    task_type = TASK_TYPE

    def validate(self, payload: Payload) -> ValidationReport:
        return ValidationReport.of(parse(payload)[1])

    async def plan(self, payload: Payload, context: PlanContext) -> Plan:
        spec, errors = parse(payload)
        if spec is None:
            raise invalid(TASK_TYPE, errors)
        refused = refused_urls(spec, context)
        if refused:
            raise invalid(TASK_TYPE, refused)
        rollback = "none" if spec.rollback is None else "\n" + spec.rollback.render().rstrip("\n")
        preview = (
            f"{spec.request.render()}\n"
            f"timeout: {spec.timeout_seconds:g} s; redirects are not followed\n"
            f"rollback request: {rollback}\n"
        )
        world = {
            "request": spec.request.canonical(),
            "rollback": None if spec.rollback is None else spec.rollback.canonical(),
            "timeout": spec.timeout_seconds,
        }
        encoded = json.dumps(world, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        body_lines = 0 if spec.request.body is None else spec.request.body.count(b"\n") + 1
        return Plan.build(
            preview=preview,
            format="text",
            precondition_fingerprint=hashlib.sha256(encoded.encode("utf-8")).hexdigest(),
            lines_changed=1 + body_lines,
            summary=f"{spec.request.method} {spec.request.url}"[:300],
        )

    async def snapshot(self, payload: Payload, plan: Plan, context: ApplyContext) -> Snapshot:
        # Nothing to read: what a remote endpoint holds is only its own to undo.
        return Snapshot(TASK_TYPE, {"url": _spec(payload, context).request.url})

    async def apply(
        self, payload: Payload, plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult:
        spec = _spec(payload, context)
        response = await _send_fenced(spec.request, spec, context)
        problem = failure(spec.request, response)
        if problem is not None:
            raise problem
        return ApplyResult(
            summary=f"{spec.request.method} {spec.request.url} answered {response.status}"[:300],
            details={"status": str(response.status), "response": response.body},
        )

    async def rollback(
        self, payload: Payload, snapshot: Snapshot, context: ApplyContext
    ) -> RollbackOutcome:
        spec = _spec(payload, context)
        if spec.rollback is None:
            return "nothing_to_roll_back"
        try:
            response = await _send_fenced(spec.rollback, spec, context)
        except ApplyFailed:
            return "rollback_failed"
        return "rolled_back" if failure(spec.rollback, response) is None else "rollback_failed"


if TYPE_CHECKING:  # mypy proves the class fits the protocol the registry expects
    _conforms: ApplyingExecutor = HttpRequestExecutor()


def _spec(payload: Payload, context: ApplyContext) -> HttpTask:
    """The payload, parsed again and checked against today's allowlist."""
    spec = parsed_for_apply(TASK_TYPE, parse(payload))
    refused = refused_urls(spec, context.plan_context)
    if refused:
        raise ApplyFailed("; ".join(str(e) for e in refused))
    return spec


async def _send_fenced(request: Request, spec: HttpTask, context: ApplyContext) -> Response:
    """Check and advance the endpoint's fence record (its URL without the query), then
    send. The request is not held under the record's lock: it may take seconds."""
    fence_dir = context.plan_context.fence_dir
    if fence_dir is None:
        raise ApplyFailed("no fence directory is configured for HTTP endpoints")
    record = fencing.record_path(fence_dir / "http", request.target.endpoint)
    await fencing.advance([record], context.fence, target=request.target.endpoint)
    return await send(request, timeout=spec.timeout_seconds, context=context)
