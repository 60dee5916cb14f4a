"""The notification rule (``notifications.preferences.decide``), exhaustively: every
channel × delivery × quiet-hours shape over every quarter hour of a day, in zones with
and without DST, plus the DST edges and the input checks."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import product
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from community_ade.notifications.preferences import (
    Channel,
    DeferUntil,
    Delivery,
    Digest,
    NotificationPreferences,
    QuietHours,
    SendNow,
    Skip,
    decide,
)

QUIETS = (
    None,
    QuietHours(start=time(22), end=time(7)),  # over midnight
    QuietHours(start=time(12), end=time(13, 30)),  # within a day
)
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata")
DAY = datetime(2026, 3, 10, tzinfo=UTC)  # no DST change in these zones that day


def _quarter_hours() -> list[datetime]:
    return [DAY + timedelta(minutes=15 * i) for i in range(96)]


def _local(moment: datetime, zone: str) -> time:
    return moment.astimezone(ZoneInfo(zone)).time()


def _quiet_at(quiet: QuietHours | None, moment: datetime, zone: str) -> bool:
    return quiet is not None and quiet.contains(_local(moment, zone))


@pytest.mark.parametrize(
    ("zone", "quiet", "delivery"), list(product(ZONES, QUIETS, list(Delivery)))
)
def test_every_combination_over_a_day(
    zone: str, quiet: QuietHours | None, delivery: Delivery
) -> None:
    prefs = NotificationPreferences(timezone=zone, quiet_hours=quiet, delivery=delivery)
    for now in _quarter_hours():
        for channel in Channel:
            plan = decide(prefs, channel, now)
            if channel is Channel.DASHBOARD:
                assert plan == SendNow()  # shown while open: no quiet hours, no digest
            elif delivery is Delivery.IMMEDIATE:
                if _quiet_at(quiet, now, zone):
                    assert isinstance(plan, DeferUntil)
                    assert quiet is not None
                    assert plan.at > now
                    assert _local(plan.at, zone) == quiet.end  # exactly when quiet ends
                    assert plan.at - now <= timedelta(hours=24)
                    # Nothing quiet-free lies between now and the deferral.
                    assert _quiet_at(quiet, plan.at - timedelta(minutes=1), zone)
                else:
                    assert plan == SendNow()
            else:
                assert isinstance(plan, Digest)
                assert plan.at > now
                assert not _quiet_at(quiet, plan.at, zone)
                if not _quiet_at(quiet, plan.at - timedelta(seconds=1), zone):
                    # Not moved by quiet hours: the regular digest time.
                    if delivery is Delivery.HOURLY:
                        assert plan.at - now <= timedelta(hours=1)
                        assert (plan.at.minute, plan.at.second) == (0, 0)
                    else:
                        assert _local(plan.at, zone) == time(prefs.digest_hour)
                        assert plan.at - now <= timedelta(hours=24)


@pytest.mark.parametrize("channel", list(Channel))
def test_a_channel_turned_off_is_skipped_whatever_else(channel: Channel) -> None:
    others = frozenset(Channel) - {channel}
    for delivery, quiet in product(Delivery, QUIETS):
        prefs = NotificationPreferences(channels=others, delivery=delivery, quiet_hours=quiet)
        for now in _quarter_hours()[::7]:
            plan = decide(prefs, channel, now)
            assert isinstance(plan, Skip)
            assert channel.value in plan.reason


def test_boundaries_of_the_quiet_hours() -> None:
    prefs = NotificationPreferences(quiet_hours=QuietHours(start=time(22), end=time(7)))
    assert decide(prefs, Channel.EMAIL, DAY.replace(hour=21, minute=59)) == SendNow()
    assert decide(prefs, Channel.EMAIL, DAY.replace(hour=22)) == DeferUntil(
        DAY.replace(hour=7) + timedelta(days=1)
    )
    assert decide(prefs, Channel.EMAIL, DAY.replace(hour=6, minute=59)) == DeferUntil(
        DAY.replace(hour=7)
    )
    assert decide(prefs, Channel.EMAIL, DAY.replace(hour=7)) == SendNow()  # end excluded


def test_hourly_digest_on_the_hour_goes_to_the_next_hour() -> None:
    prefs = NotificationPreferences(delivery=Delivery.HOURLY)
    assert decide(prefs, Channel.SLACK, DAY.replace(hour=10)) == Digest(DAY.replace(hour=11))
    assert decide(prefs, Channel.SLACK, DAY.replace(hour=10, minute=59)) == Digest(
        DAY.replace(hour=11)
    )


def test_a_digest_due_in_quiet_hours_waits_for_their_end() -> None:
    prefs = NotificationPreferences(
        delivery=Delivery.DAILY,
        digest_hour=23,
        timezone="Europe/Paris",
        quiet_hours=QuietHours(start=time(22), end=time(7, 30)),
    )
    plan = decide(prefs, Channel.EMAIL, DAY.replace(hour=12))  # 13:00 in Paris
    # 23:00 Paris is quiet: the digest goes at 07:30 Paris the next morning (06:30 UTC).
    assert plan == Digest(datetime(2026, 3, 11, 6, 30, tzinfo=UTC))


def test_across_a_daylight_saving_change() -> None:
    # Paris springs forward on 2026-03-29 at 02:00 → 03:00.
    prefs = NotificationPreferences(
        timezone="Europe/Paris", quiet_hours=QuietHours(start=time(1), end=time(2, 30))
    )
    now = datetime(2026, 3, 29, 0, 15, tzinfo=UTC)  # 01:15 Paris, quiet
    plan = decide(prefs, Channel.EMAIL, now)
    # 02:30 does not exist that night: the deferral is the instant the clocks jump to,
    # and it is after now.
    assert isinstance(plan, DeferUntil)
    assert plan.at > now
    assert plan.at <= datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    # Falling back (2026-10-25 03:00 → 02:00): a daily digest at 02:00 happens once.
    daily = NotificationPreferences(timezone="Europe/Paris", delivery=Delivery.DAILY, digest_hour=2)
    evening = datetime(2026, 10, 24, 20, tzinfo=UTC)
    digest = decide(daily, Channel.EMAIL, evening)
    assert isinstance(digest, Digest)
    assert digest.at == datetime(2026, 10, 25, 0, tzinfo=UTC)  # 02:00 CEST, the first one


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    ),
    st.sampled_from((*ZONES, "Australia/Lord_Howe", "America/St_Johns")),
    st.sampled_from(QUIETS),
    st.sampled_from(list(Delivery)),
    st.integers(0, 23),
)
def test_a_plan_is_never_in_the_past_and_never_far(
    now: datetime, zone: str, quiet: QuietHours | None, delivery: Delivery, hour: int
) -> None:
    prefs = NotificationPreferences(
        timezone=zone, quiet_hours=quiet, delivery=delivery, digest_hour=hour
    )
    plan = decide(prefs, Channel.EMAIL, now)
    if isinstance(plan, DeferUntil | Digest):
        assert now < plan.at <= now + timedelta(hours=50)
        assert not _quiet_at(quiet, plan.at, zone)


def test_invalid_preferences_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        NotificationPreferences(timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="different times"):
        QuietHours(start=time(8), end=time(8))
    with pytest.raises(ValidationError):
        NotificationPreferences(digest_hour=24)
    with pytest.raises(ValidationError):
        NotificationPreferences.model_validate({"channels": ["pager"]})
    with pytest.raises(ValidationError):
        NotificationPreferences.model_validate({"surprise": True})
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(NotificationPreferences(), Channel.EMAIL, datetime(2026, 1, 1))


def test_the_stored_document_round_trips() -> None:
    prefs = NotificationPreferences(
        channels=frozenset({Channel.EMAIL}),
        timezone="Asia/Tokyo",
        quiet_hours=QuietHours(start=time(23), end=time(6)),
        delivery=Delivery.HOURLY,
    )
    assert NotificationPreferences.model_validate(prefs.model_dump(mode="json")) == prefs
