"""Per-user notification preferences and the one rule that reads them (pure: no IO).

A person chooses the channels that may reach them (e-mail, Slack, the dashboard's
browser notification), quiet hours in their own time zone, and whether e-mail and Slack
arrive one message per task or as an hourly or daily digest. ``decide`` turns those
preferences and the current time into what a sender does with one notification:

- ``SendNow``: send it now;
- ``DeferUntil(at)``: send it, alone, at ``at`` (the end of the quiet hours);
- ``Digest(at)``: send it inside the digest that goes out at ``at``;
- ``Skip(reason)``: never send it on this channel.

The dashboard channel is shown while the person has the dashboard open, so it knows
no quiet hours and no digest: it is on or off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)


class Channel(StrEnum):
    EMAIL = "email"
    SLACK = "slack"
    DASHBOARD = "dashboard"


class Delivery(StrEnum):
    """How e-mail and Slack messages arrive: one each, or gathered into a digest."""

    IMMEDIATE = "immediate"
    HOURLY = "hourly"
    DAILY = "daily"


class QuietHours(BaseModel):
    """Local times between which nothing is sent (``start`` included, ``end`` not); a
    ``start`` later than ``end`` spans midnight (22:00–07:00)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours must start and end at different times")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local times: give the time zone in `timezone`")
        return self

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class NotificationPreferences(BaseModel):
    """One person's preferences; the defaults are what a person who never chose gets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: frozenset[Channel] = Field(
        default=frozenset(Channel), description="Channels that may reach this person."
    )
    timezone: str = Field(
        default="UTC",
        max_length=64,
        description="IANA time zone of the quiet hours and the daily digest, e.g. Europe/Paris.",
    )
    quiet_hours: QuietHours | None = Field(
        default=None, description="Local times during which nothing is sent (None: never quiet)."
    )
    delivery: Delivery = Field(
        default=Delivery.IMMEDIATE,
        description="E-mail and Slack: one message per task, or an hourly or daily digest.",
    )
    digest_hour: int = Field(
        default=9, ge=0, le=23, description="Local hour at which the daily digest is sent."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _zones():
            raise ValueError(f"unknown time zone {value!r}: use an IANA name like Europe/Paris")
        return value

    @field_serializer("channels")
    def _channels_in_order(self, channels: frozenset[Channel]) -> list[str]:
        return [c.value for c in Channel if c in channels]  # a stable document

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_ZONES: frozenset[str] = frozenset()


def _zones() -> frozenset[str]:
    global _ZONES
    if not _ZONES:
        try:
            _ZONES = frozenset(available_timezones()) | {"UTC"}
        except ZoneInfoNotFoundError:  # pragma: no cover - a system without tz data
            _ZONES = frozenset({"UTC"})
    return _ZONES


@dataclass(frozen=True)
class SendNow:
    pass


@dataclass(frozen=True)
class DeferUntil:
    at: datetime


@dataclass(frozen=True)
class Digest:
    at: datetime


@dataclass(frozen=True)
class Skip:
    reason: str


Plan = SendNow | DeferUntil | Digest | Skip


def decide(prefs: NotificationPreferences, channel: Channel, now: datetime) -> Plan:
    """What to do now (an aware datetime) with one notification on ``channel``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if channel not in prefs.channels:
        return Skip(f"{channel.value} notifications are turned off")
    if channel is Channel.DASHBOARD:
        return SendNow()
    zone = prefs.zone
    if prefs.delivery is Delivery.IMMEDIATE:
        if prefs.quiet_hours is not None and _is_quiet(prefs.quiet_hours, now, zone):
            return DeferUntil(_next_local(now, prefs.quiet_hours.end, zone))
        return SendNow()
    if prefs.delivery is Delivery.HOURLY:
        at = _next_full_hour(now)
    else:
        at = _next_local(now, time(prefs.digest_hour), zone)
    if prefs.quiet_hours is not None and _is_quiet(prefs.quiet_hours, at, zone):
        at = _next_local(at, prefs.quiet_hours.end, zone)
    return Digest(at)


def _is_quiet(quiet: QuietHours, moment: datetime, zone: ZoneInfo) -> bool:
    return quiet.contains(moment.astimezone(zone).time().replace(tzinfo=None))


def _next_full_hour(now: datetime) -> datetime:
    """The next hour boundary strictly after ``now`` (every zone in use has whole-hour or
    half-hour offsets; an hourly digest on UTC hours is one per hour everywhere)."""
    start = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start + timedelta(hours=1)


def _next_local(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first instant strictly after ``now`` whose local time in ``zone`` is ``at``
    (a local time skipped by a DST change counts as the instant the clocks jump to)."""
    local_day = now.astimezone(zone).date()
    for days in range(3):  # today, tomorrow, or (across a DST gap) the day after
        candidate = datetime.combine(local_day + timedelta(days=days), at, zone)
        # Round-trip through UTC: a non-existent local time becomes the real instant.
        instant = candidate.astimezone(UTC)
        if instant > now:
            return instant
    raise AssertionError("unreachable: a local time recurs within two days")  # pragma: no cover
