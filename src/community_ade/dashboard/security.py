"""The dashboard's secrets, pure where possible: CSRF tokens and the server secret.

A CSRF token is ``HMAC-SHA256(secret, purpose:value)``: for a logged-in visitor the value
is their session token, before login a random nonce kept in a cookie. A forged request
from another site carries the cookie but cannot compute the token, which only pages of
this origin embed. Nothing needs to be stored on the server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from community_ade.infra.keyfile import read_or_create
from community_ade.settings import Settings

SECRET_FILE = "secret.key"


def csrf_token(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def csrf_matches(secret: bytes, purpose: str, value: str, offered: str | None) -> bool:
    if not offered:
        return False
    return hmac.compare_digest(csrf_token(secret, purpose, value), offered)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path of this site only (never ``//host`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def load_secret(settings: Settings) -> bytes:
    """``ADE_SECRET_KEY``, else ``<data dir>/secret.key``, created once (mode 0600)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = settings.data_dir / SECRET_FILE
    secret = read_or_create(path, lambda: secrets.token_hex(32)).encode()
    if len(secret) < 32:
        raise ValueError(f"{path} holds a secret shorter than 32 characters: delete it")
    return secret
