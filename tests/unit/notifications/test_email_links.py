"""Signed decision links (``notifications.email_links``), pure: a link verifies only as
signed, with the key that signed it, before its expiry; every alteration is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from community_ade.notifications.email_links import (
    MAX_TOKEN_LENGTH,
    LinkRefused,
    link_key,
    new_link,
    sign,
    verify,
)

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
KEY = link_key(b"s" * 64)


def _link(expires: datetime = NOW + timedelta(hours=1)) -> tuple[str, object]:
    link = new_link(uuid.uuid4(), uuid.uuid4(), "ab" * 32, expires)
    return sign(KEY, link), link


def test_a_signed_link_verifies_to_what_was_signed() -> None:
    token, link = _link()
    assert verify(KEY, token, now=NOW) == link
    assert len(token) < MAX_TOKEN_LENGTH
    assert token.isascii()
    assert "=" not in token  # no padding to escape in a URL


def test_each_link_has_its_own_nonce() -> None:
    reviewer, task = uuid.uuid4(), uuid.uuid4()
    nonces = {new_link(reviewer, task, "d", NOW).nonce for _ in range(100)}
    assert len(nonces) == 100


def test_expiry_is_exclusive() -> None:
    token, _ = _link(NOW)
    with pytest.raises(LinkRefused, match="expired"):
        verify(KEY, token, now=NOW)
    assert verify(KEY, token, now=NOW - timedelta(seconds=1))


def test_another_key_or_purpose_refuses() -> None:
    token, _ = _link()
    with pytest.raises(LinkRefused, match="altered"):
        verify(link_key(b"t" * 64), token, now=NOW)
    # The server secret itself (e.g. what signs CSRF tokens) is not the links' key.
    assert link_key(b"s" * 64) != b"s" * 64


@given(st.data())
def test_any_single_character_change_is_refused(data: st.DataObject) -> None:
    token, _ = _link()
    at = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[at]))
    altered = token[:at] + replacement + token[at + 1 :]
    try:
        link = verify(KEY, altered, now=NOW)
    except LinkRefused:
        return
    # Base64's last character may carry unused bits: the same bytes, the same link.
    assert sign(KEY, link) == token


@pytest.mark.parametrize(
    "token",
    ["", ".", "a.b", "a.b.c", "x" * (MAX_TOKEN_LENGTH + 1), "é.é", "%%%.%%%", "a." + "A" * 43],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(LinkRefused):
        verify(KEY, token, now=NOW)
