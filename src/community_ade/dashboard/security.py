"""The dashboard's secrets, pure where possible: CSRF tokens and the server secret.

A CSRF token is ``HMAC-SHA256(secret, purpose:value)``: for a logged-in visitor the value
is their session token, before login a random nonce kept in a cookie. A forged request
from another site carries the cookie but cannot compute the token, which only pages of
this origin embed. Nothing needs to be stored on the server.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

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
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under a temporary name, then linked: a concurrent server never reads
    # a half-written file, and the first link wins.
    temporary = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return _read(path)


def _read(path: Path) -> bytes:
    secret = path.read_text().strip().encode()
    if len(secret) < 32:
        raise ValueError(f"{path} holds a secret shorter than 32 characters: delete it")
    return secret
