"""The pure core of webhooks: the retry schedule with its jitter, what each answer
leads to, event-type filters and the Standard Webhooks headers (checked with the
library's own verifier)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from community_ade.errors import InvalidInput
from community_ade.settings import Settings
from community_ade.webhooks import rules

SVIX = [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DAYS5 = timedelta(days=5)


def test_the_default_schedule_is_svixs() -> None:
    assert Settings().webhook_retry_schedule == SVIX


@pytest.mark.parametrize("attempt", range(len(SVIX)))
@pytest.mark.parametrize("unit", [0.0, 0.25, 0.5, 0.999999])
def test_each_pause_is_the_schedules_within_ten_percent(attempt: int, unit: float) -> None:
    delay = rules.delay_before(attempt, SVIX, unit)
    assert delay is not None
    base = SVIX[attempt]
    assert base * 0.9 <= delay <= base * 1.1
    if unit == 0.5:
        assert delay == pytest.approx(base)


def test_jitter_spreads_both_ways_and_the_schedule_ends() -> None:
    assert rules.delay_before(1, SVIX, 0.0) == pytest.approx(4.5)
    assert rules.delay_before(1, SVIX, 0.999999) == pytest.approx(5.5, rel=1e-5)
    assert rules.delay_before(len(SVIX), SVIX, 0.5) is None
    assert rules.delay_before(-1, SVIX, 0.5) is None
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match=r"unit must be in \[0, 1\)"):
            rules.delay_before(0, SVIX, bad)


def step(attempts: int, status: int | None, *, failing_for: timedelta | None = None) -> rules.Step:
    since = None if failing_for is None else NOW - failing_for
    return rules.after_attempt(
        attempts, status, SVIX, 0.5, failing_since=since, now=NOW, disable_after=DAYS5
    )


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
@pytest.mark.parametrize("attempts", [1, 4, 8])
def test_any_2xx_succeeds(status: int, attempts: int) -> None:
    assert step(attempts, status, failing_for=DAYS5 * 2) == rules.Step("succeeded")


@pytest.mark.parametrize(
    "status", [None, 100, 199, 300, 301, 302, 304, 400, 404, 408, 429, 500, 503]
)
@pytest.mark.parametrize("attempts", range(1, len(SVIX) + 2))
def test_other_answers_are_retried_on_schedule_until_it_ends(
    status: int | None, attempts: int
) -> None:
    got = step(attempts, status)
    if attempts < len(SVIX):
        assert got == rules.Step("pending", delay=pytest.approx(SVIX[attempts]))
    else:
        assert got == rules.Step("failed")


@pytest.mark.parametrize("attempts", [1, 8, 9])
def test_410_gone_fails_and_disables_at_once(attempts: int) -> None:
    got = step(attempts, 410)
    assert got.status == "failed"
    assert got.delay is None
    assert got.disable == "the endpoint answered 410 Gone"


@pytest.mark.parametrize(
    ("failing_for", "disabled"),
    [
        (None, False),
        (timedelta(0), False),
        (DAYS5 - timedelta(seconds=1), False),
        (DAYS5, True),
        (DAYS5 * 3, True),
    ],
)
def test_an_endpoint_failing_for_five_days_is_disabled(
    failing_for: timedelta | None, disabled: bool
) -> None:
    got = step(2, 500, failing_for=failing_for)
    if disabled:
        assert got == rules.Step("failed", disable="every delivery failed for 120 hours")
    else:
        assert got.status == "pending"
        assert got.disable is None


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "task:created", True),
        (["task:*"], "task:created", True),
        (["task:*"], "taskforce:created", False),
        (["task:*"], "approval:approved", False),
        (["approval:approved"], "approval:approved", True),
        (["approval:approved"], "approval:approved2", False),
        (["approval:?ejected"], "approval:rejected", True),
        (["lock:*", "agent:health"], "agent:health", True),
        (["TASK:*"], "task:created", False),  # case matters (and is refused at create)
    ],
)
def test_filters_are_globs_over_the_whole_type(
    patterns: list[str], event_type: str, expected: bool
) -> None:
    assert rules.matches(patterns, event_type) is expected


def test_filters_are_checked_and_deduplicated() -> None:
    assert rules.check_patterns(["task:*", "approval:*", "task:*"]) == ["task:*", "approval:*"]
    for bad in ([], ["TASK:*"], ["task *"], [""], ["x" * 65], ["a"] * 51, ["task:[ab]"]):
        with pytest.raises(InvalidInput):
            rules.check_patterns(bad)


def test_headers_verify_with_the_library_and_a_rotation_signs_twice() -> None:
    old, new = rules.new_secret(), rules.new_secret()
    assert old.startswith("whsec_")
    assert old != new
    body = '{"type":"task:created"}'
    now = datetime.now(UTC)
    one = rules.headers([new], "msg_1", now, body)
    assert one["webhook-id"] == "msg_1"
    assert one["webhook-timestamp"] == str(int(now.timestamp()))
    assert one["webhook-signature"].startswith("v1,")
    Webhook(new).verify(body, one)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, one)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + " ", one)
    both = rules.headers([new, old], "msg_1", now, body)
    assert len(both["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(body, both)
    Webhook(old).verify(body, both)


def test_the_excerpt_is_bounded_and_never_fails_to_decode() -> None:
    assert rules.excerpt(b"ok") == "ok"
    assert len(rules.excerpt(b"x" * 100_000)) == rules.MAX_EXCERPT_CHARS
    assert rules.excerpt(b"\xff\xfe") == "\ufffd\ufffd"


def test_a_schedule_setting_outside_its_range_is_refused() -> None:
    with pytest.raises(ValueError, match="ADE_WEBHOOK_RETRY_SCHEDULE"):
        Settings(webhook_retry_schedule=[0, -1])
    with pytest.raises(ValueError, match="at least 1 item"):
        Settings(webhook_retry_schedule=[])
