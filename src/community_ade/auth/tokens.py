"""API tokens (pure): ``ade_<prefix>_<secret>``.

- ``prefix``: 8 characters, ``[a-z0-9]``. The first says whose token it is (``u`` a user,
  ``a`` an agent), the other 7 are random. Stored in clear so people can tell their tokens
  apart in listings and secret scanners can recognise them; it is not a secret.
- ``secret``: 43 characters of ``secrets.token_urlsafe(32)`` (256 bits).

At rest only the SHA-256 (hex) of the whole plaintext is kept. A fast hash is right here:
a token carries 256 bits of randomness, so nobody can guess it from its hash however fast
the guesses; slow, salted hashes (argon2) exist for low-entropy passwords. A fast,
deterministic hash also lets the database find a token by its hash with an index.

Every malformed token is refused with one ``Unauthenticated`` message: it never says
which part was wrong.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from typing import Literal

from community_ade.errors import Unauthenticated

TokenKind = Literal["user", "agent"]

PREFIX_LENGTH = 8
SECRET_BYTES = 32  # token_urlsafe(32) -> 43 characters
_KIND_MARK: dict[TokenKind, str] = {"user": "u", "agent": "a"}
_MARK_KIND: dict[str, TokenKind] = {mark: kind for kind, mark in _KIND_MARK.items()}
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN = re.compile(r"ade_([ua][a-z0-9]{7})_([A-Za-z0-9_-]{43})")
TOKEN_LENGTH = len("ade_") + PREFIX_LENGTH + 1 + 43

INVALID_TOKEN = "invalid, expired or revoked API token"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: ``plaintext`` is shown once, ``prefix`` and ``token_hash`` are stored."""

    plaintext: str
    prefix: str
    token_hash: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"IssuedToken(prefix={self.prefix!r}, token_hash={self.token_hash!r})"


@dataclass(frozen=True, slots=True)
class ParsedToken:
    kind: TokenKind
    prefix: str
    token_hash: str


def _digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("ascii")).hexdigest()


def new_token(kind: TokenKind) -> IssuedToken:
    """A fresh random token for a user or an agent."""
    random_part = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH - 1))
    prefix = _KIND_MARK[kind] + random_part
    plaintext = f"ade_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return IssuedToken(plaintext=plaintext, prefix=prefix, token_hash=_digest(plaintext))


def parse_token(plaintext: str) -> ParsedToken:
    """Check the format; ``Unauthenticated`` (one message for every fault) if malformed."""
    match = _TOKEN.fullmatch(plaintext) if len(plaintext) == TOKEN_LENGTH else None
    if match is None:
        raise Unauthenticated(INVALID_TOKEN)
    prefix = match.group(1)
    return ParsedToken(kind=_MARK_KIND[prefix[0]], prefix=prefix, token_hash=_digest(plaintext))


def hash_token(plaintext: str) -> str:
    """The stored form of a well-formed token (SHA-256 hex)."""
    return parse_token(plaintext).token_hash
