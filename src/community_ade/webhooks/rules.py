"""Outbound webhooks, pure (no IO): the retry schedule with jitter, what an attempt's
answer means, event-type filters, and the Standard Webhooks headers.

Retries follow ``ADE_WEBHOOK_RETRY_SCHEDULE`` (default Svix's: immediately, 5 s, 5 min,
30 min, 2 h, 5 h, 10 h, 10 h): entry *n* is the pause before attempt *n* + 1, counted
from the failure of attempt *n*. Each pause gets ±``JITTER`` so that endpoints coming
back after an outage are not hit by every sender in the same second.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from standardwebhooks import Webhook

from community_ade.errors import InvalidInput

JITTER = 0.1
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
MAX_PATTERNS = 50
MAX_PATTERN_CHARS = 64
MAX_EXCERPT_CHARS = 1024
MAX_DESCRIPTION_CHARS = 500
# Event types are ``<topic>:<name>`` of a-z, digits and _ . - ; a filter adds * and ?.
_PATTERN = re.compile(r"[a-z0-9_.*?:-]+")

Status = Literal["pending", "succeeded", "failed"]


def delay_before(attempt: int, schedule: Sequence[float], unit: float) -> float | None:
    """Seconds to wait before attempt number ``attempt`` (0 = the first) after the
    previous one failed; None once the schedule is used up. ``unit`` is a uniform random
    number in [0, 1) choosing the jitter (pure: the caller draws it)."""
    if not 0 <= unit < 1:
        raise ValueError("unit must be in [0, 1)")
    if attempt < 0 or attempt >= len(schedule):
        return None
    base = schedule[attempt]
    return base * (1 - JITTER + 2 * JITTER * unit)


@dataclass(frozen=True)
class Step:
    """What follows an attempt: the delivery's new status, the pause before the next
    attempt (pending only) and why the endpoint must be disabled (None: it stays)."""

    status: Status
    delay: float | None = None
    disable: str | None = None


def after_attempt(
    attempts: int,
    status_code: int | None,
    schedule: Sequence[float],
    unit: float,
    *,
    failing_since: datetime | None,
    now: datetime,
    disable_after: timedelta,
) -> Step:
    """The step after attempt number ``attempts`` (1 = the first) answered
    ``status_code`` (None: timeout or no connection). 2xx succeeds; 410 Gone fails and
    disables the endpoint; anything else is retried on schedule, and disables the
    endpoint once it has been failing (``failing_since``, this failure included) for
    ``disable_after``."""
    if status_code is not None and 200 <= status_code < 300:
        return Step("succeeded")
    if status_code == 410:
        return Step("failed", disable="the endpoint answered 410 Gone")
    since = failing_since or now
    if now - since >= disable_after:
        hours = disable_after.total_seconds() / 3600
        return Step("failed", disable=f"every delivery failed for {hours:g} hours")
    delay = delay_before(attempts, schedule, unit)
    return Step("failed") if delay is None else Step("pending", delay=delay)


def check_patterns(patterns: Sequence[str]) -> list[str]:
    """Event-type filters, e.g. ``task:*``, ``approval:approved``, ``*``; deduplicated in
    their order. ``InvalidInput`` unless 1 to ``MAX_PATTERNS`` well-formed ones."""
    if not 1 <= len(patterns) <= MAX_PATTERNS:
        raise InvalidInput(f"event_types must hold 1 to {MAX_PATTERNS} filters, e.g. ['task:*']")
    for pattern in patterns:
        if not (
            isinstance(pattern, str)
            and len(pattern) <= MAX_PATTERN_CHARS
            and _PATTERN.fullmatch(pattern)
        ):
            raise InvalidInput(
                f"event type filter {str(pattern)[:80]!r} must be 1-{MAX_PATTERN_CHARS} "
                "characters a-z 0-9 _ . - : with * and ? as wildcards, e.g. 'task:*'"
            )
    return list(dict.fromkeys(patterns))


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether an event type passes a subscription's filters (shell-style globs)."""
    return any(fnmatchcase(event_type, pattern) for pattern in patterns)


def new_secret() -> str:
    """A signing secret: ``whsec_`` and 24 random bytes in base64 (Standard Webhooks)."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, at: datetime, body: str) -> str:
    """``webhook-signature``: one ``v1,<base64 HMAC-SHA256>`` per secret, space
    separated (two while a rotated-out secret still signs)."""
    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


def headers(secrets: Sequence[str], msg_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (``at``: the attempt's time)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature_header(secrets, msg_id, at, body),
        "content-type": "application/json",
    }


def excerpt(body: bytes) -> str:
    """The start of a response body as the delivery log keeps it."""
    text = body[: MAX_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return text[:MAX_EXCERPT_CHARS]
