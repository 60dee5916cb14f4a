"""The Slack app configuration an admin sets (IO): the bot token and signing secret
(sealed with the secrets key, never returned), where review requests go (a default
channel, a channel per policy rule or per reviewer group, optional DMs) and which Slack
account is which ADE user (an explicit link, or the same e-mail address)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.audit import log as audit
from community_ade.audit.chain import Actor
from community_ade.errors import InvalidInput, NotFound
from community_ade.secrets.keys import SecretCipher
from community_ade.storage.db import flush_unique
from community_ade.storage.models import (
    AuditEvent,
    NotificationCursor,
    SlackChannel,
    SlackSettings,
    SlackUserLink,
    User,
    utcnow,
)

SETTINGS_ID = 1
# The poster's row in ``notification_cursors`` (how far it has read the audit log).
CURSOR = "slack"


class RouteKind(StrEnum):
    """What a channel route is keyed by."""

    RULE = "rule"
    GROUP = "group"


_BOT_TOKEN = re.compile(r"xoxb-[A-Za-z0-9-]{10,250}")
_SIGNING_SECRET = re.compile(r"[A-Za-z0-9]{16,128}")
_CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,30}")
# What a Web API call may fail with: Slack's refusal, or no answer in time.
SLACK_FAILURES = (SlackApiError, aiohttp.ClientError, TimeoutError)
# Bound the sealed values to their purpose: a token sealed as one cannot open as the other.
_TOKEN_AAD, _SECRET_AAD = "slack:bot_token", "slack:signing_secret"


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str
    signing_secret: str
    default_channel: str | None
    dm_reviewers: bool


def check_channel(channel: str) -> str:
    channel = channel.strip().lstrip("#")
    if not _CHANNEL.fullmatch(channel):
        raise InvalidInput(f"{channel!r} is not a Slack channel id or name", field="channel")
    return channel


def check_slack_user(slack_user_id: str) -> str:
    if not _SLACK_USER.fullmatch(slack_user_id):
        raise InvalidInput(
            f"{slack_user_id!r} is not a Slack user id (U… or W…)", field="slack_user_id"
        )
    return slack_user_id


async def load(session: AsyncSession, cipher: SecretCipher) -> SlackConfig | None:
    """The configuration with its secrets opened; None until an admin sets one."""
    row = await session.get(SlackSettings, SETTINGS_ID)
    if row is None:
        return None
    return SlackConfig(
        bot_token=cipher.open(_TOKEN_AAD, row.bot_token),
        signing_secret=cipher.open(_SECRET_AAD, row.signing_secret),
        default_channel=row.default_channel,
        dm_reviewers=row.dm_reviewers,
    )


async def configure(
    session: AsyncSession,
    cipher: SecretCipher,
    *,
    bot_token: str | None,
    signing_secret: str | None,
    default_channel: str | None,
    dm_reviewers: bool,
    actor: Actor,
    user_id: uuid.UUID | None,
) -> SlackSettings:
    """Set the configuration; a secret given as None keeps the stored one (both are
    needed the first time)."""
    if bot_token is not None and not _BOT_TOKEN.fullmatch(bot_token):
        raise InvalidInput("the bot token is a Slack bot token (xoxb-…)", field="bot_token")
    if signing_secret is not None and not _SIGNING_SECRET.fullmatch(signing_secret):
        raise InvalidInput(
            "the signing secret is the app's 'Signing Secret' (letters and digits)",
            field="signing_secret",
        )
    channel = check_channel(default_channel) if default_channel else None
    row = await session.get(SlackSettings, SETTINGS_ID, with_for_update=True)
    if row is None:
        if bot_token is None or signing_secret is None:
            raise InvalidInput("the first configuration needs the bot token and signing secret")
        if await session.get(NotificationCursor, CURSOR) is None:
            # The poster reads the audit log from here on: history is not announced.
            head = await session.scalar(select(func.max(AuditEvent.seq)))
            session.add(NotificationCursor(name=CURSOR, seq=head or 0))
        row = SlackSettings(
            id=SETTINGS_ID,
            bot_token=cipher.seal(_TOKEN_AAD, bot_token),
            signing_secret=cipher.seal(_SECRET_AAD, signing_secret),
        )
        session.add(row)
    if bot_token is not None:
        row.bot_token = cipher.seal(_TOKEN_AAD, bot_token)
    if signing_secret is not None:
        row.signing_secret = cipher.seal(_SECRET_AAD, signing_secret)
    row.default_channel, row.dm_reviewers = channel, dm_reviewers
    row.updated_by, row.updated_at = user_id, utcnow()
    await flush_unique(session, "the Slack configuration")
    changed = [
        name for name, v in (("bot_token", bot_token), ("signing_secret", signing_secret)) if v
    ]
    await audit.append(
        session,
        type="slack:configured",
        actor=actor,
        subject="integration:slack",
        data={"default_channel": channel, "dm_reviewers": dm_reviewers, "secrets_set": changed},
    )
    return row


async def remove(session: AsyncSession, *, actor: Actor) -> None:
    """Forget the configuration (secrets included): nothing is posted any more."""
    row = await session.get(SlackSettings, SETTINGS_ID)
    if row is None:
        raise NotFound("Slack is not configured")
    await session.delete(row)
    await session.flush()
    await audit.append(
        session, type="slack:removed", actor=actor, subject="integration:slack", data={}
    )


async def describe(session: AsyncSession) -> dict[str, Any]:
    """What an admin may read back: everything but the secrets."""
    row = await session.get(SlackSettings, SETTINGS_ID)
    channels = await session.scalars(
        select(SlackChannel).order_by(SlackChannel.kind, SlackChannel.name)
    )
    links = await session.execute(
        select(User.username, SlackUserLink.slack_user_id, SlackUserLink.source)
        .join(User, User.id == SlackUserLink.user_id)
        .order_by(User.username)
    )
    return {
        "configured": row is not None,
        "default_channel": row.default_channel if row else None,
        "dm_reviewers": row.dm_reviewers if row else False,
        "updated_at": row.updated_at if row else None,
        "channels": [{"kind": c.kind, "name": c.name, "channel": c.channel} for c in channels],
        "users": [
            {"username": name, "slack_user_id": slack, "source": source}
            for name, slack, source in links
        ],
    }


async def set_channel(
    session: AsyncSession, kind: str, name: str, channel: str | None, *, actor: Actor
) -> None:
    """Post the review requests of tasks that matched policy rule ``name`` (or need
    reviewer group ``name``) to ``channel``; None removes the route."""
    if kind not in set(RouteKind) or not 1 <= len(name) <= 200:
        raise InvalidInput("a route names a policy rule or a group (1-200 characters)")
    await session.execute(
        delete(SlackChannel).where(SlackChannel.kind == kind, SlackChannel.name == name)
    )
    if channel is not None:
        session.add(SlackChannel(kind=kind, name=name, channel=check_channel(channel)))
    await session.flush()
    await audit.append(
        session,
        type="slack:channel_set",
        actor=actor,
        subject="integration:slack",
        data={"kind": kind, "name": name, "channel": channel},
    )


async def channels_for(
    session: AsyncSession, rules: Iterable[str], groups: Iterable[str], default: str | None
) -> list[str]:
    """The channels a task's review request goes to: those of its matched rules and its
    reviewer groups, else the default channel."""
    rules, groups = list(rules), list(groups)
    rows = await session.scalars(
        select(SlackChannel.channel).where(
            ((SlackChannel.kind == "rule") & SlackChannel.name.in_(rules))
            | ((SlackChannel.kind == "group") & SlackChannel.name.in_(groups))
        )
    )
    found = list(dict.fromkeys(rows))
    return found or ([default] if default else [])


async def link_user(
    session: AsyncSession, user_id: uuid.UUID, slack_user_id: str, *, source: str = "admin"
) -> None:
    """Slack account ``slack_user_id`` is ADE user ``user_id`` (replacing earlier links
    of either)."""
    check_slack_user(slack_user_id)
    await session.execute(
        delete(SlackUserLink).where(
            (SlackUserLink.user_id == user_id) | (SlackUserLink.slack_user_id == slack_user_id)
        )
    )
    session.add(SlackUserLink(user_id=user_id, slack_user_id=slack_user_id, source=source))
    await flush_unique(session, f"a link of Slack user {slack_user_id}")


async def unlink_user(session: AsyncSession, user_id: uuid.UUID) -> bool:
    result = await session.execute(delete(SlackUserLink).where(SlackUserLink.user_id == user_id))
    return bool(getattr(result, "rowcount", 0))


async def ade_user_of(
    session: AsyncSession, client: AsyncWebClient, slack_user_id: str
) -> User | None:
    """The ADE user behind a Slack account: its link, else the enabled user with the
    e-mail address of the Slack profile (``users.info``), then linked."""
    check_slack_user(slack_user_id)
    linked = await session.scalar(
        select(User)
        .join(SlackUserLink, SlackUserLink.user_id == User.id)
        .where(SlackUserLink.slack_user_id == slack_user_id)
    )
    if linked is not None:
        return linked
    try:
        answer = await client.users_info(user=slack_user_id)
    except SLACK_FAILURES:
        return None
    email = ((answer.get("user") or {}).get("profile") or {}).get("email")
    if not isinstance(email, str) or not email:
        return None
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is not None:
        await link_user(session, user.id, slack_user_id, source="email")
    return user


async def slack_user_of(
    session: AsyncSession, client: AsyncWebClient, user_id: uuid.UUID, email: str | None
) -> str | None:
    """The Slack account of an ADE user: its link, else ``users.lookupByEmail``."""
    linked = await session.scalar(
        select(SlackUserLink.slack_user_id).where(SlackUserLink.user_id == user_id)
    )
    if linked is not None or email is None:
        return linked
    try:
        answer = await client.users_lookupByEmail(email=email)
    except SlackApiError:  # users_not_found: this reviewer is not in the workspace
        return None
    slack_id = (answer.get("user") or {}).get("id")
    if not isinstance(slack_id, str) or not _SLACK_USER.fullmatch(slack_id):
        return None
    async with session.begin_nested():
        await link_user(session, user_id, slack_id, source="email")
    return slack_id
