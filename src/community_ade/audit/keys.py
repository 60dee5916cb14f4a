"""Ed25519 keys kept as base64 of their seed: the log's checkpoint key and a witness's
own key (docs/audit.md). No database: ``ade audit witness`` uses them offline."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from community_ade.errors import InvalidInput
from community_ade.infra.keyfile import read_or_create


def decode_key(encoded: str, where: str) -> Ed25519PrivateKey:
    """The Ed25519 key whose 32-byte seed ``encoded`` holds in base64 (``where`` names
    the setting or file in the error)."""
    try:
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(encoded, validate=True))
    except ValueError:
        raise InvalidInput(f"{where} is not base64 of a 32-byte Ed25519 seed") from None


def ed25519_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key in ``path`` (base64 of its seed), generated there once (0600)."""
    encoded = read_or_create(
        path,
        lambda: base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode(),
    )
    return decode_key(encoded, str(path))
