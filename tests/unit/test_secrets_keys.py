"""The secrets store's cipher and keys: sealing binds a value to its name, rotation keeps
old values readable until they are sealed again, and a bad key is said plainly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from community_ade.errors import ServiceUnavailable
from community_ade.secrets.keys import KEY_FILE, SecretCipher, SecretUnreadable, new_key
from community_ade.settings import Settings, parse_secrets_keys

VALUE = "hunter2-but-longer"


def cipher(*keys: str) -> SecretCipher:
    return SecretCipher(parse_secrets_keys(",".join(keys), source="test"))


def test_a_sealed_value_opens_under_its_own_name_only() -> None:
    key = new_key()
    sealed = cipher(key).seal("deploy-token", VALUE)
    assert VALUE.encode() not in sealed
    assert cipher(key).open("deploy-token", sealed) == VALUE
    # Copied to another row, it does not open: the name is associated data.
    with pytest.raises(SecretUnreadable, match="'prod-password'"):
        cipher(key).open("prod-password", sealed)
    # Sealing twice gives two ciphertexts (a fresh nonce each time).
    assert cipher(key).seal("deploy-token", VALUE) != sealed


def test_rotation_opens_old_values_and_seals_with_the_first_key() -> None:
    old, new = new_key(), new_key()
    sealed_old = cipher(old).seal("t", VALUE)
    rotated = cipher(new, old)
    assert rotated.open("t", sealed_old) == VALUE
    resealed = rotated.seal("t", rotated.open("t", sealed_old))
    assert cipher(new).open("t", resealed) == VALUE
    with pytest.raises(SecretUnreadable):
        cipher(new).open("t", sealed_old)
    with pytest.raises(SecretUnreadable):
        cipher(old).open("t", resealed)


@pytest.mark.parametrize(
    "bad",
    ["", "short", "A" * 44, new_key() + ",", new_key()[:-4]],
    ids=["empty", "short", "not-base64", "trailing-comma", "truncated"],
)
def test_a_malformed_key_setting_is_refused_when_settings_are_read(bad: str) -> None:
    with pytest.raises(ValidationError, match="ADE_SECRETS_KEY must hold keys of 32 bytes"):
        Settings(secrets_key=bad)


def test_without_a_setting_the_key_is_generated_once_into_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    sealed = SecretCipher.from_settings(settings).seal("t", VALUE)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SecretCipher.from_settings(settings).open("t", sealed) == VALUE  # the same key
    path.write_text("damaged\n")
    with pytest.raises(ServiceUnavailable, match=r"secrets\.key must hold keys"):
        SecretCipher.from_settings(settings)


def test_the_setting_wins_over_the_key_file(tmp_path: Path) -> None:
    key = new_key()
    sealed = SecretCipher.from_settings(Settings(data_dir=tmp_path, secrets_key=key)).seal(
        "t", VALUE
    )
    assert not (tmp_path / KEY_FILE).exists()
    assert cipher(key).open("t", sealed) == VALUE
