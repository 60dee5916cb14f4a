"""The secrets store's keys and cipher: AES-256-GCM from ``cryptography``.

``ADE_SECRETS_KEY`` holds one key or several separated by commas, each 32 random bytes
in URL-safe base64 (``ade secrets new-key`` prints one). The first key seals every value
stored from now on; every key is tried when a value is opened. Unset, a key is generated
once into ``<data dir>/secrets.key`` (mode 0600), which serves every process of one
machine; servers and workers on several machines must share ``ADE_SECRETS_KEY``.

Rotation: put a new key first and keep the old one after it (``NEW,OLD``), run
``ade secrets rekey`` (re-seals every value with the first key), then drop ``OLD``.

Each value is sealed with the secret's name as associated data, so a ciphertext copied
to another row does not open there: a database writer cannot make ``deploy-token`` send
the value of ``prod-db-password``.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from community_ade.errors import ServiceUnavailable
from community_ade.infra.keyfile import read_or_create
from community_ade.settings import SECRETS_KEY_BYTES, Settings, parse_secrets_keys

KEY_FILE = "secrets.key"
_NONCE_BYTES = 12
_FORMAT = b"\x01"  # the layout below: format, nonce, ciphertext with its 16-byte tag


class SecretUnreadable(ServiceUnavailable):
    """A stored value opens with none of the configured keys (a misconfiguration)."""


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(SECRETS_KEY_BYTES)).decode()


class SecretCipher:
    """Seals values under the first key, opens them under any."""

    def __init__(self, keys: tuple[bytes, ...]) -> None:
        if not keys:
            raise ValueError("a secret cipher needs at least one key")
        self._keys = tuple(AESGCM(key) for key in keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretCipher:
        """The configured keys; a damaged key file is ``ServiceUnavailable`` (secrets cannot
        be stored or sent until an operator repairs it)."""
        if settings.secrets_key is not None:
            text, source = settings.secrets_key.get_secret_value(), "ADE_SECRETS_KEY"
        else:
            path = settings.data_dir / KEY_FILE
            text, source = read_or_create(path, new_key), str(path)
        try:
            return cls(parse_secrets_keys(text, source=source))
        except ValueError as exc:
            raise ServiceUnavailable(str(exc)) from None

    def seal(self, name: str, value: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT + nonce + self._keys[0].encrypt(nonce, value.encode(), _aad(name))

    def open(self, name: str, sealed: bytes) -> str:
        if sealed[:1] == _FORMAT:
            nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
            for key in self._keys:
                try:
                    return key.decrypt(nonce, body, _aad(name)).decode()
                except InvalidTag:
                    continue
        raise SecretUnreadable(
            f"secret {name!r} opens with none of the configured keys (ADE_SECRETS_KEY or "
            "the data directory's secrets.key): was the key changed without `ade secrets rekey`?"
        )


def _aad(name: str) -> bytes:
    return b"community-ade secret:" + name.encode()
