"""Signed decision links for e-mail (pure: no IO).

A link names one reviewer, one task and the preview digest the e-mail showed, an
expiry and a random nonce, signed with HMAC-SHA256 under a key derived from the server
secret (``ADE_SECRET_KEY`` or the data directory's ``secret.key``, as the dashboard's
CSRF tokens). ``verify`` refuses a token that was altered, is malformed or has expired;
single use (the nonce recorded once in SQL) and "is the logged-in person the one the
link names" are checked by the page that takes the decision.

A token is ``<payload>.<signature>``, both URL-safe base64 without padding; the payload
is compact JSON. Tokens are short (about 250 characters) and bounded before decoding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from community_ade.errors import InvalidInput

MAX_TOKEN_LENGTH = 512
_PURPOSE = b"community-ade e-mail decision link v1"
_DIGEST_MAX = 128


class LinkRefused(InvalidInput):
    """A decision link that cannot be used: altered, malformed, expired, used or not
    the visitor's. The message says which, for the page that shows it."""

    code = "link_refused"


@dataclass(frozen=True)
class DecisionLink:
    reviewer: uuid.UUID
    task: uuid.UUID
    digest: str
    expires: datetime
    nonce: str


def link_key(server_secret: bytes) -> bytes:
    """The links' own key: the server secret never signs two kinds of thing directly."""
    return hmac.new(server_secret, _PURPOSE, hashlib.sha256).digest()


def new_link(reviewer: uuid.UUID, task: uuid.UUID, digest: str, expires: datetime) -> DecisionLink:
    return DecisionLink(reviewer, task, digest, expires, secrets.token_urlsafe(16))


def sign(key: bytes, link: DecisionLink) -> str:
    payload = json.dumps(
        {
            "r": str(link.reviewer),
            "t": str(link.task),
            "d": link.digest,
            "e": int(link.expires.timestamp()),
            "n": link.nonce,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    body = _b64(payload)
    return f"{body}.{_b64(_mac(key, body))}"


def verify(key: bytes, token: str, *, now: datetime) -> DecisionLink:
    """The link ``token`` carries, if this server signed it and it has not expired."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise LinkRefused("this link is not a decision link of this server")
    body, signature = token.split(".")
    try:
        offered = _unb64(signature)
    except ValueError:
        raise LinkRefused("this link is not a decision link of this server") from None
    if not hmac.compare_digest(offered, _mac(key, body)):
        raise LinkRefused("this link was altered or not issued by this server")
    try:
        fields = json.loads(_unb64(body))
        link = DecisionLink(
            reviewer=uuid.UUID(fields["r"]),
            task=uuid.UUID(fields["t"]),
            digest=str(fields["d"])[:_DIGEST_MAX],
            expires=datetime.fromtimestamp(int(fields["e"]), UTC),
            nonce=str(fields["n"]),
        )
    except (ValueError, KeyError, TypeError):  # signed by us, so only an old format
        raise LinkRefused("this link is not a decision link of this server") from None
    if now >= link.expires:
        raise LinkRefused(
            "this link has expired: open the task in the dashboard to decide",
            task_id=str(link.task),
        )
    return link


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc
