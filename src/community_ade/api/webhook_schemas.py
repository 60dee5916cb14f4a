"""Bodies of the webhook routes. The rules (URL on the allowlist, filter syntax, lengths)
are the domain's (``webhooks.store``, ``webhooks.rules``); these models cap sizes only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from community_ade.storage.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from community_ade.webhooks import rules

Url = Annotated[str, Field(min_length=1, max_length=2048)]
Patterns = Annotated[
    list[Annotated[str, Field(max_length=rules.MAX_PATTERN_CHARS)]],
    Field(min_length=1, max_length=rules.MAX_PATTERNS, examples=[["task:*", "approval:*"]]),
]
Description = Annotated[str, Field(max_length=rules.MAX_DESCRIPTION_CHARS)]
DeliveryStatus = Literal["pending", "succeeded", "failed"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url = Field(description="An http(s) URL on ADE_HTTP_ALLOWLIST.")
    event_types: Patterns = Field(description="Event types to send; globs, e.g. 'task:*'.")
    description: Description = ""
    enabled: bool = True


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    event_types: Patterns | None = None
    description: Description | None = None
    enabled: bool | None = Field(
        default=None, description="true re-enables an endpoint the system disabled."
    )


class WebhookRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_hours: float | None = Field(
        default=None,
        ge=0,
        le=24 * 30,
        description="How long the old secret signs too (default ADE_WEBHOOK_SECRET_OVERLAP_HOURS).",
    )


class WebhookOut(BaseModel):
    """A subscription; its secret is never shown again after create or rotate."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the system disabled it (410 Gone, failing for days)."
    )
    failing_since: datetime | None
    previous_secret_until: datetime | None = Field(
        description="Until when the rotated-out secret still signs (a second signature)."
    )
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: WebhookSubscription) -> WebhookOut:
        return cls.model_validate(row)


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_…): shown this once only.")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The webhook-id header of every attempt.")
    subscription_id: uuid.UUID
    event_seq: int
    event_type: str
    subject: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryOut:
        out = cls.model_validate(row)
        if row.status != "pending":
            out.next_attempt_at = None
        return out


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    status_code: int | None = Field(description="None: timeout or no connection.")
    latency_ms: int
    response_excerpt: str
    error: str | None

    @classmethod
    def of(cls, row: WebhookAttempt) -> AttemptOut:
        return cls.model_validate(row)


class DeliveryDetail(DeliveryOut):
    payload: Any = Field(description="The body sent, parsed.")
    attempt_log: list[AttemptOut]
