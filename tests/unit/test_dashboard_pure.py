"""The dashboard's pure pieces: CSRF tokens, the login redirect target, the server
secret's file, and the template filters."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from community_ade.dashboard.filters import ago, highlight_diff, risk_level
from community_ade.dashboard.security import (
    SECRET_FILE,
    csrf_matches,
    csrf_token,
    load_secret,
    safe_next,
)
from community_ade.settings import Settings

SECRET = b"s" * 64


def test_a_csrf_token_is_bound_to_its_secret_purpose_and_value() -> None:
    token = csrf_token(SECRET, "session", "ade_abc")
    assert csrf_matches(SECRET, "session", "ade_abc", token)
    assert not csrf_matches(SECRET, "session", "ade_abd", token)  # another session
    assert not csrf_matches(SECRET, "login", "ade_abc", token)  # another purpose
    assert not csrf_matches(b"t" * 64, "session", "ade_abc", token)  # another server
    assert not csrf_matches(SECRET, "session", "ade_abc", None)
    assert not csrf_matches(SECRET, "session", "ade_abc", "")
    assert not csrf_matches(SECRET, "session", "ade_abc", token.upper())


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/"),
        ("", "/"),
        ("/tasks?state=APPROVED", "/tasks?state=APPROVED"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("tasks", "/"),
    ],
)
def test_after_login_only_paths_of_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_the_secret_is_generated_once_private_and_shared(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_secret(settings))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1  # concurrent first starts agree on one secret
    assert len(results[0]) >= 32
    mode = stat.S_IMODE(os.stat(tmp_path / SECRET_FILE).st_mode)
    assert mode == 0o600
    assert load_secret(settings) == results[0]
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]  # no temporary left


def test_an_explicit_secret_wins_and_a_short_file_is_refused(tmp_path: Path) -> None:
    explicit = Settings(data_dir=tmp_path, secret_key=SecretStr("k" * 40))
    assert load_secret(explicit) == b"k" * 40
    assert not (tmp_path / SECRET_FILE).exists()
    (tmp_path / SECRET_FILE).write_text("short\n")
    with pytest.raises(ValueError, match="shorter than 32"):
        load_secret(Settings(data_dir=tmp_path))


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (None, "none"),
        (0.0, "low"),
        (49.9, "low"),
        (50.0, "medium"),
        (74.9, "medium"),
        (75.0, "high"),
        (100.0, "high"),
    ],
)
def test_risk_levels_are_the_quorum_bands(score: float | None, level: str) -> None:
    assert risk_level(score) == level


def test_relative_times() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert ago(None, now) == "—"
    assert ago(now - timedelta(seconds=5), now) == "5 s ago"
    assert ago(now - timedelta(minutes=3, seconds=20), now) == "3 min ago"
    assert ago(now + timedelta(hours=23, minutes=59), now) == "in 23 h"
    assert ago(now - timedelta(days=2), now) == "2 d ago"


def test_a_diff_is_highlighted_and_escaped() -> None:
    html = str(
        highlight_diff("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-<b>old</b>\n+<script>new</script>\n")
    )
    assert '<span class="gi">+&lt;script&gt;new&lt;/script&gt;</span>' in html
    assert '<span class="gd">-&lt;b&gt;old&lt;/b&gt;</span>' in html
    assert "<script>" not in html
