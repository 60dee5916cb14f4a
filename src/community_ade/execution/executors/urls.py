"""URLs an ``http.request`` task may call: parsing and the allowlist match (pure).

A plain string prefix is not a safe allowlist: ``https://hooks.example.com`` would also
admit ``https://hooks.example.com.attacker.net``. So both sides are parsed: scheme, host
and port must be equal (default ports made explicit, host compared case-insensitively)
and the allowed path must be a prefix of the URL's path at a ``/`` boundary
(``/deploy`` admits ``/deploy`` and ``/deploy/eu``, not ``/deployment``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MAX_URL_CHARS = 8192
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Control, format, separator and surrogate characters: a URL must read as what it is.
_DECEPTIVE = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs", "Cs"})


@dataclass(frozen=True)
class Target:
    """A parsed absolute http(s) URL; ``endpoint`` is it without the query."""

    scheme: str
    host: str
    port: int
    path: str
    query: str

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def parse_url(url: object) -> tuple[Target | None, str | None]:
    """The parsed URL, or None and why it is not acceptable."""
    if not isinstance(url, str) or not url:
        return None, "must be a non-empty string"
    if len(url) > MAX_URL_CHARS:
        return None, f"must be at most {MAX_URL_CHARS} characters"
    if any(unicodedata.category(c) in _DECEPTIVE for c in url):
        return None, "must not contain spaces, control, format or separator characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return None, f"is not a valid URL: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None, "must be an http:// or https:// URL"
    if not parts.hostname:
        return None, "must name a host"
    if parts.username is not None or parts.password is not None:
        return None, "must not carry credentials (user:password@); send them as a header"
    if parts.fragment or url.endswith("#"):
        return None, "must not have a #fragment (it is never sent)"
    if any(segment in {".", ".."} for segment in unquote(parts.path).split("/")):
        # A server resolves them, so /allowed/../admin would leave the allowed prefix.
        return None, "must not have '.' or '..' path segments"
    return Target(
        scheme=scheme,
        host=parts.hostname.lower(),
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        path=parts.path or "/",
        query=parts.query,
    ), None


def parse_allowlist(entries: tuple[str, ...]) -> tuple[Target, ...]:
    """The parsed allowlist; ``ValueError`` naming a bad entry (a misconfiguration must be
    loud, not silently allow nothing or everything). Entries carry no query."""
    parsed: list[Target] = []
    for entry in entries:
        target, problem = parse_url(entry)
        if target is None:
            raise ValueError(f"ADE_HTTP_ALLOWLIST entry {entry!r} {problem}")
        if target.query:
            raise ValueError(f"ADE_HTTP_ALLOWLIST entry {entry!r} must not have a query")
        parsed.append(target)
    return tuple(parsed)


def allowed(url: Target, allowlist: tuple[Target, ...]) -> bool:
    """Whether ``url`` lies under one of the allowlist's prefixes."""
    return any(_under(url, prefix) for prefix in allowlist)


def _under(url: Target, prefix: Target) -> bool:
    if (url.scheme, url.host, url.port) != (prefix.scheme, prefix.host, prefix.port):
        return False
    if prefix.path.endswith("/"):
        return url.path.startswith(prefix.path)
    return url.path == prefix.path or url.path.startswith(prefix.path + "/")
