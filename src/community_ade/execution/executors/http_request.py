"""``http.request``: one HTTP request (a webhook call) to a URL on the allowlist.

Payload::

    {"method": "POST", "url": "https://hooks.example.com/deploy?env=prod",
     "headers": {"Authorization": {"secret": "deploy-token", "prefix": "Bearer "}},
     "query": {"api_key": {"secret": "hooks-key"}, "region": "eu"},  # added to the URL
     "body": {"service": "api"},            # JSON; a string is sent as text
     "timeout_seconds": 30,
     "rollback": {"method": "DELETE", "url": "https://hooks.example.com/deploy/api"}}

Credentials are never written into the payload: a header or query parameter named like
one (``Authorization``, cookies, anything named like a token, key or password:
``secrets.references.secret_bearing_name``) must hold a secret reference, and a URL must
not carry one (no ``user:password@``, no ``?token=``); task creation refuses inline
values (docs/secrets.md).

``plan`` sends nothing: the preview is the request exactly as it will be sent (method,
URL, every header, the body bytes), with each secret shown as its reference
(``Authorization: Bearer {secret:deploy-token}``); digest and fingerprint cover the
references, not the values, so an admin may rotate a secret without a new review. A JSON
body is encoded once, canonically (sorted keys, two-space indent), and those bytes are
what is both shown and sent. ``apply`` resolves the references (a secret deleted since
is a permanent failure) and scrubs their values from everything it records.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

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
    model_errors,
    parsed_for_apply,
)
from community_ade.secrets.references import (
    SecretRef,
    SecretReference,
    SecretUse,
    UsesSecrets,
    Value,
    combined,
    names_in,
    parse_value,
    resolve,
    reveal_for_apply,
    scrub,
    secret_bearing_name,
    shown,
    use_of,
)

TASK_TYPE = "http.request"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_HEADERS = 100
MAX_QUERY_PARAMETERS = 100
MAX_HEADER_VALUE_CHARS = 8192
MAX_BODY_BYTES = 1024 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TIMEOUT_SECONDS = 300.0
DEFAULT_TIMEOUT_SECONDS = 30.0
USER_AGENT = "community-ade"
TRANSIENT_STATUSES = frozenset({408, 429})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Set by the client or by the apply itself; a payload may not choose them.
_RESERVED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
     "te", "trailer", "proxy-connection", "x-ade-task", "x-ade-fence"}
)  # fmt: skip
_REQUEST_KEYS = frozenset({"method", "url", "query", "headers", "body"})
_PAYLOAD_KEYS = _REQUEST_KEYS | {"timeout_seconds", "rollback"}
# What ``urls.parse_url`` needs at least: an http(s) scheme, a host, no space, no fragment.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s#/?][^\s#]*$"
HeaderValue = Annotated[
    str, Field(max_length=MAX_HEADER_VALUE_CHARS, pattern=f"^{_VALUE.pattern}$")
]
QueryValue = Annotated[str, Field(max_length=MAX_HEADER_VALUE_CHARS)]


class HttpCall(BaseModel):
    """One HTTP request."""

    # Its JSON Schema. ``parse`` checks first, and what a schema cannot say (reserved or
    # repeated headers, credentials inline, the rest of ``urls.parse_url``); this model last.
    model_config = ConfigDict(extra="forbid")

    method: Literal["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
    url: str = Field(
        min_length=1,
        max_length=urls.MAX_URL_CHARS,
        pattern=URL_PATTERN,
        description="An absolute http(s) URL on the allowlist (ADE_HTTP_ALLOWLIST), without "
        "credentials, fragment or '.'/'..' segments; a query parameter named like a "
        "credential belongs in query, as a secret reference.",
    )
    query: dict[str, QueryValue | SecretReference] = Field(
        default_factory=dict,
        max_length=MAX_QUERY_PARAMETERS,
        json_schema_extra={"propertyNames": {"minLength": 1}},
        description="Query parameters added to the URL. A parameter named like a credential "
        "(token, key, secret, password, ...) must be a secret reference.",
    )
    headers: dict[str, HeaderValue | SecretReference] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        json_schema_extra={"propertyNames": {"pattern": f"^{_TOKEN.pattern}$"}},
        description="Request headers (names unique ignoring case; Host, Content-Length, "
        "Connection, X-ADE-* and the like are set by Community ADE). A header named like a "
        "credential (Authorization, Cookie, *-Token, *-Key, ...) must be a secret reference.",
    )
    body: Any = Field(
        default=None,
        description=f"A string is sent as UTF-8 text, any other JSON value as JSON (at most "
        f"{MAX_BODY_BYTES} bytes encoded).",
    )


class HttpRequestPayload(HttpCall):
    """One HTTP request (a webhook call), and optionally the request that undoes it."""

    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT_SECONDS,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="How long the request may take.",
    )
    rollback: HttpCall | None = Field(
        default=None, description="Sent, the same way, if the apply has to be rolled back."
    )


@dataclass(frozen=True)
class Request:
    """One validated request: headers sorted by name, the body already encoded. Header
    and ``query`` values may be secret references, resolved only by ``sent``."""

    method: str
    url: str
    target: urls.Target
    query: tuple[tuple[str, Value], ...]
    headers: tuple[tuple[str, Value], ...]
    body: bytes | None

    @property
    def secret_names(self) -> frozenset[str]:
        return names_in(value for _, value in (*self.query, *self.headers))

    def shown_url(self) -> str:
        """The URL as previews and messages show it: references, never values."""

        def text(value: Value) -> str:
            if isinstance(value, SecretRef):  # the reference itself stays readable
                return f"{quote(value.prefix, safe='')}{{secret:{value.name}}}"
            return quote(value, safe="")

        return self._url(text)

    def canonical(self) -> dict[str, Any]:
        """Everything sent, references as shown (for the fingerprint)."""
        body = None if self.body is None else self.body.decode("utf-8")
        headers = [(name, shown(value)) for name, value in self.headers]
        return {"method": self.method, "url": self.shown_url(), "headers": headers, "body": body}

    def render(self) -> str:
        """The request as the preview shows it."""
        lines = [f"{self.method} {self.shown_url()}"]
        lines += [f"{name}: {shown(value)}" for name, value in self.headers]
        lines += ["X-ADE-Fence: <the apply's fencing token>", "X-ADE-Task: <the task id>"]
        if self.body is not None:
            lines += ["", self.body.decode("utf-8")]
        return "\n".join(lines) + "\n"

    def sent(self, revealed: Mapping[str, str]) -> tuple[str, list[tuple[str, str]]]:
        """The URL and headers with the secrets' values; a value that cannot be a header
        value (a line break would inject headers) is a permanent ``ApplyFailed``."""
        headers = [(name, resolve(value, revealed)) for name, value in self.headers]
        for (name, value), (_, raw) in zip(headers, self.headers, strict=True):
            if isinstance(raw, SecretRef) and not _VALUE.fullmatch(value):
                raise ApplyFailed(
                    f"secret {raw.name!r} cannot be sent as header {name}: it holds characters "
                    "other than printable ASCII"
                )
        return self._url(lambda value: quote(resolve(value, revealed), safe="")), headers

    def _url(self, text_of: Callable[[Value], str]) -> str:
        if not self.query:
            return self.url
        added = "&".join(f"{quote(name, safe='')}={text_of(value)}" for name, value in self.query)
        joint = "&" if self.target.query else "" if self.url.endswith("?") else "?"
        return f"{self.url}{joint}{added}"


@dataclass(frozen=True)
class HttpTask:
    """A validated payload."""

    request: Request
    timeout_seconds: float
    rollback: Request | None


def secret_use(payload: object) -> SecretUse:
    """Where a payload (however malformed) refers to secrets, and its inline credentials."""
    if not isinstance(payload, Mapping):
        return SecretUse()
    rollback = payload.get("rollback")
    requests = [("", payload)] + (
        [("rollback.", rollback)] if isinstance(rollback, Mapping) else []
    )
    return combined(
        use
        for where, raw in requests
        for use in (
            use_of(f"{where}headers", raw.get("headers")),
            use_of(f"{where}query", raw.get("query")),
            SecretUse(problems=tuple(_url_credentials(f"{where}url", raw.get("url")))),
        )
    )


def _url_credentials(where: str, url: object) -> list[FieldError]:
    """A URL's query parameters named like credentials (their values are inline)."""
    if not isinstance(url, str):
        return []
    try:
        pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    except ValueError:
        return []  # parse_url reports it
    return [
        FieldError(
            where,
            f"carries the credential {name!r} inline in its query (tasks and previews are "
            "readable by every viewer): store it with `ade secrets set NAME` and send it as "
            f'"query": {{"{name}": {{"secret": "NAME"}}}}',
        )
        for name, _ in pairs
        if secret_bearing_name(name)
    ]


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
    errors = errors or model_errors(HttpRequestPayload, payload)
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
    errors.extend(_url_credentials(f"{where}url", raw.get("url")))
    query = _parse_values(f"{where}query", raw.get("query", {}), MAX_QUERY_PARAMETERS, errors)
    headers = _parse_headers(f"{where}headers", raw.get("headers", {}), errors)
    body, content_type = _encode_body(f"{where}body", raw.get("body"), errors)
    if len(errors) > before or target is None or headers is None or query is None:
        return None
    names = {name.lower() for name, _ in headers}
    if body is not None and "content-type" not in names:
        headers.append(("Content-Type", content_type))
    if "user-agent" not in names:
        headers.append(("User-Agent", USER_AGENT))
    headers.sort(key=lambda item: item[0].lower())
    return Request(str(method), str(raw["url"]), target, tuple(query), tuple(headers), body)


def _parse_headers(
    where: str, raw: object, errors: list[FieldError]
) -> list[tuple[str, Value]] | None:
    found = _parse_values(where, raw, MAX_HEADERS, errors)
    if found is None:
        return None
    kept: list[tuple[str, Value]] = []
    seen: set[str] = set()
    for name, value in found:
        at = f"{where}.{name}"
        if not _TOKEN.fullmatch(name):
            errors.append(FieldError(at, "is not a valid header name"))
        elif name.lower() in _RESERVED:
            errors.append(FieldError(at, "is set by Community ADE or the HTTP client, not a task"))
        elif name.lower() in seen:
            errors.append(FieldError(at, "is given twice (header names ignore case)"))
        elif isinstance(value, str) and not _VALUE.fullmatch(value):
            errors.append(FieldError(at, "must be a string of printable ASCII characters"))
        else:
            seen.add(name.lower())
            kept.append((name, value))
    return kept


def _parse_values(
    where: str, raw: object, limit: int, errors: list[FieldError]
) -> list[tuple[str, Value]] | None:
    """Names to strings or secret references (headers, query parameters): a credential
    inline is refused, a value is bounded."""
    if not isinstance(raw, Mapping):
        errors.append(FieldError(where, "must be an object of names to values"))
        return None
    if len(raw) > limit:
        errors.append(FieldError(where, f"must have at most {limit} entries"))
        return None
    found: list[tuple[str, Value]] = []
    for name, raw_value in raw.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not name:
            errors.append(FieldError(at, "must be a non-empty name"))
            continue
        value, problems = parse_value(at, raw_value, secret_bearing=secret_bearing_name(name))
        if problems:
            errors.extend(problems)
        elif not isinstance(value, str | SecretRef):
            errors.append(FieldError(at, 'must be a string or a secret reference {"secret": NAME}'))
        elif isinstance(value, str) and len(value) > MAX_HEADER_VALUE_CHARS:
            errors.append(FieldError(at, f"must be at most {MAX_HEADER_VALUE_CHARS} characters"))
        else:
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
        FieldError(where, f"{request.shown_url()} is not on the allowlist (ADE_HTTP_ALLOWLIST)")
        for where, request in named
        if request is not None and not urls.allowed(request.target, allowlist)
    ]


@dataclass(frozen=True)
class Response:
    status: int
    body: str


async def send(
    request: Request, revealed: Mapping[str, str], *, timeout: float, context: ApplyContext
) -> Response:
    """Send ``request`` (its secrets resolved from ``revealed``) with the ADE headers,
    redirects not followed, the response body read up to ``MAX_RESPONSE_BYTES`` and
    scrubbed of the secrets. Network failures are transient ``ApplyFailed``."""
    url, headers = request.sent(revealed)
    headers += [("X-ADE-Task", context.task_id), ("X-ADE-Fence", str(context.fence))]
    try:
        # trust_env=False: no proxy or .netrc from the worker's environment joins in.
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(request.method, url, headers=headers, content=request.body) as reply,
        ):
            kept = bytearray()
            async for chunk in reply.aiter_bytes():  # decoded, as the receiver meant it
                kept += chunk[: MAX_RESPONSE_BYTES - len(kept)]
                if len(kept) >= MAX_RESPONSE_BYTES:
                    break
            return Response(reply.status_code, scrub(kept.decode("utf-8", "replace"), revealed))
    except httpx.HTTPError as exc:
        problem = scrub(f"{type(exc).__name__}: {exc}", revealed)
        raise ApplyFailed(
            f"{request.method} {request.shown_url()} failed: {problem}", transient=True
        ) from None


def failure(request: Request, response: Response) -> ApplyFailed | None:
    """None for a 2xx response; else the failure, transient for 5xx, 408 and 429."""
    if 200 <= response.status < 300:
        return None
    transient = response.status >= 500 or response.status in TRANSIENT_STATUSES
    return ApplyFailed(
        f"{request.method} {request.shown_url()} answered {response.status}",
        transient=transient,
        status=response.status,
        output=response.body,
    )


class HttpRequestExecutor:
    """``http.request``: validate, plan (no request sent), snapshot, apply, rollback."""

    task_type = TASK_TYPE
    payload_model = HttpRequestPayload

    def validate(self, payload: Payload) -> ValidationReport:
        return ValidationReport.of(parse(payload)[1])

    def secret_use(self, payload: Payload) -> SecretUse:
        return secret_use(payload)

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
            summary=f"{spec.request.method} {spec.request.shown_url()}"[:300],
        )

    async def snapshot(self, payload: Payload, plan: Plan, context: ApplyContext) -> Snapshot:
        # Nothing to read: what a remote endpoint holds is only its own to undo.
        return Snapshot(TASK_TYPE, {"url": _spec(payload, context).request.shown_url()})

    async def apply(
        self, payload: Payload, plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult:
        spec = _spec(payload, context)
        response = await _send_fenced(spec.request, spec, context)
        problem = failure(spec.request, response)
        if problem is not None:
            raise problem
        summary = f"{spec.request.method} {spec.request.shown_url()} answered {response.status}"
        return ApplyResult(
            summary=summary[:300],
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


if TYPE_CHECKING:  # mypy proves the class fits the protocols its callers expect
    _conforms: ApplyingExecutor = HttpRequestExecutor()
    _refers: UsesSecrets = HttpRequestExecutor()


def _spec(payload: Payload, context: ApplyContext) -> HttpTask:
    """The payload, parsed again and checked against today's allowlist."""
    spec = parsed_for_apply(TASK_TYPE, parse(payload))
    refused = refused_urls(spec, context.plan_context)
    if refused:
        raise ApplyFailed("; ".join(str(e) for e in refused))
    return spec


async def _send_fenced(request: Request, spec: HttpTask, context: ApplyContext) -> Response:
    """Reveal the request's secrets, check and advance the endpoint's fence record (its
    URL without the query), then send. The request is not held under the record's lock:
    it may take seconds."""
    fence_dir = context.plan_context.fence_dir
    if fence_dir is None:
        raise ApplyFailed("no fence directory is configured for HTTP endpoints")
    revealed = await reveal_for_apply(context.secrets, request.secret_names)
    record = fencing.record_path(fence_dir / "http", request.target.endpoint)
    await fencing.advance([record], context.fence, target=request.target.endpoint)
    return await send(request, revealed, timeout=spec.timeout_seconds, context=context)
