"""Bodies of the Slack integration's admin routes. The bot token and signing secret are
write-only: no answer carries them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class SlackConfigPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr | None = Field(
        default=None,
        max_length=255,
        description="The app's Bot User OAuth Token (xoxb-…); write-only. Omitted: kept.",
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        max_length=128,
        description="The app's Signing Secret; write-only. Omitted: kept.",
    )
    default_channel: str | None = Field(
        default=None,
        max_length=81,
        description="Channel id (or name) for tasks no rule or group route matches.",
    )
    dm_reviewers: bool = Field(
        default=False, description="Also send each eligible reviewer a direct message."
    )


class SlackChannelOut(BaseModel):
    kind: Literal["rule", "group"]
    name: str
    channel: str


class SlackUserOut(BaseModel):
    username: str
    slack_user_id: str
    source: Literal["admin", "email"]


class SlackConfigOut(BaseModel):
    """The configuration without its secrets."""

    configured: bool
    default_channel: str | None
    dm_reviewers: bool
    updated_at: datetime | None
    channels: list[SlackChannelOut]
    users: list[SlackUserOut]


class SlackChannelPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(
        max_length=81, description="Channel id (or name); null removes the route."
    )


class SlackUserPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_user_id: str | None = Field(
        max_length=32, description="The Slack member id (U…); null removes the link."
    )
