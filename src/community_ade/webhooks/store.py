"""Webhook subscriptions, the delivery log and redelivery (IO).

Signing secrets are sealed with the secrets store's cipher (``secrets.keys``, the key
``ADE_SECRETS_KEY``) under the associated data ``webhook:<id>``, which no named secret can
have (names hold no ``:``); a secret is returned in clear once, by ``create`` and
``rotate``. Changes are audited (``webhook:created``, ``…:updated``, ``…:deleted``,
``…:secret_rotated``, ``…:redelivered``, ``…:disabled``) without the secret. Callers check
``webhook_admin``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.audit import log as audit
from community_ade.audit.chain import Actor
from community_ade.errors import InvalidInput, NotFound
from community_ade.execution.executors import urls
from community_ade.secrets.keys import SecretCipher
from community_ade.settings import Settings
from community_ade.storage.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
    utcnow,
)
from community_ade.webhooks import rules

MAX_URL_CHARS = 2048
SYSTEM = Actor("system", "webhooks")


def secret_name(subscription_id: uuid.UUID) -> str:
    """The associated data a subscription's secret is sealed under."""
    return f"webhook:{subscription_id}"


def check_url(url: str, settings: Settings) -> str:
    """``url`` when it is an http(s) URL on ``ADE_HTTP_ALLOWLIST`` (the allowlist of
    ``http.request``), else ``InvalidInput`` naming the setting."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"url must be at most {MAX_URL_CHARS} characters")
    target, problem = urls.parse_url(url)
    if target is None:
        raise InvalidInput(f"url {problem}")
    if not urls.allowed(target, urls.parse_allowlist(tuple(settings.http_allowlist))):
        raise InvalidInput(
            f"{url[:200]} is not on the allowlist (ADE_HTTP_ALLOWLIST): an admin of the "
            "deployment must add its prefix before it can receive webhooks",
            setting="ADE_HTTP_ALLOWLIST",
        )
    return url


def _check_description(description: str) -> str:
    if len(description) > rules.MAX_DESCRIPTION_CHARS:
        raise InvalidInput(f"description must be at most {rules.MAX_DESCRIPTION_CHARS} characters")
    return description


@dataclass(frozen=True)
class WithSecret:
    """A subscription and its secret in clear: answered once, at create and rotate."""

    subscription: WebhookSubscription
    secret: str


async def create(
    session: AsyncSession,
    cipher: SecretCipher,
    settings: Settings,
    *,
    url: str,
    event_types: Sequence[str],
    description: str,
    enabled: bool,
    actor: Actor,
    user_id: uuid.UUID | None,
) -> WithSecret:
    row = WebhookSubscription(
        id=uuid.uuid4(),
        url=check_url(url, settings),
        event_types=rules.check_patterns(event_types),
        description=_check_description(description),
        enabled=enabled,
        created_by=user_id,
    )
    secret = rules.new_secret()
    row.secret = cipher.seal(secret_name(row.id), secret)
    session.add(row)
    await session.flush()
    await _audit(session, "webhook:created", row, actor)
    return WithSecret(row, secret)


async def get(session: AsyncSession, subscription_id: uuid.UUID) -> WebhookSubscription:
    row = await session.get(WebhookSubscription, subscription_id)
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return row


async def list_page(
    session: AsyncSession, *, page: int, limit: int
) -> tuple[list[WebhookSubscription], int]:
    total = await session.scalar(select(func.count()).select_from(WebhookSubscription)) or 0
    rows = await session.scalars(
        select(WebhookSubscription)
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return list(rows), total


async def update(
    session: AsyncSession,
    settings: Settings,
    subscription_id: uuid.UUID,
    *,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    actor: Actor,
) -> WebhookSubscription:
    """Change what is given. Enabling clears the reason it was disabled and its failure
    streak; its pending deliveries are then sent."""
    row = await session.get(WebhookSubscription, subscription_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    if url is not None:
        row.url = check_url(url, settings)
    if event_types is not None:
        row.event_types = rules.check_patterns(event_types)
    if description is not None:
        row.description = _check_description(description)
    if enabled is not None:
        if enabled and not row.enabled:
            row.disabled_reason, row.failing_since = None, None
            row.receives_since = utcnow()
        row.enabled = enabled
    row.updated_at = utcnow()
    await session.flush()
    await _audit(session, "webhook:updated", row, actor)
    return row


async def delete(session: AsyncSession, subscription_id: uuid.UUID, *, actor: Actor) -> None:
    """Delete a subscription with its pending deliveries and delivery log."""
    row = await get(session, subscription_id)
    await session.delete(row)
    await session.flush()
    await _audit(session, "webhook:deleted", row, actor)


async def rotate(
    session: AsyncSession,
    cipher: SecretCipher,
    subscription_id: uuid.UUID,
    *,
    overlap: timedelta,
    actor: Actor,
) -> WithSecret:
    """A new signing secret; the current one keeps signing too (a second signature in
    ``webhook-signature``) for ``overlap``, so receivers can switch without a gap."""
    row = await session.get(WebhookSubscription, subscription_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    now = utcnow()
    name = secret_name(row.id)
    if overlap > timedelta(0):
        row.previous_secret = cipher.seal(name, cipher.open(name, row.secret))
        row.previous_secret_until = now + overlap
    else:
        row.previous_secret, row.previous_secret_until = None, None
    secret = rules.new_secret()
    row.secret = cipher.seal(name, secret)
    row.updated_at = now
    await session.flush()
    until = row.previous_secret_until
    await _audit(
        session,
        "webhook:secret_rotated",
        row,
        actor,
        previous_signs_until=until.isoformat() if until else None,
    )
    return WithSecret(row, secret)


def signing_secrets(row: WebhookSubscription, cipher: SecretCipher, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one
    during its overlap."""
    name = secret_name(row.id)
    found = [cipher.open(name, row.secret)]
    until = row.previous_secret_until
    if row.previous_secret is not None and until is not None and now < until:
        found.append(cipher.open(name, row.previous_secret))
    return found


async def disable(session: AsyncSession, row: WebhookSubscription, reason: str) -> None:
    """Disable an endpoint the system gave up on; the audit event tells the admins (the
    dashboard shows the reason)."""
    row.enabled, row.disabled_reason, row.updated_at = False, reason, utcnow()
    await session.flush()
    await _audit(session, "webhook:disabled", row, SYSTEM, reason=reason)


async def deliveries(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    *,
    status: str | None,
    page: int,
    limit: int,
) -> tuple[list[WebhookDelivery], int]:
    """A subscription's deliveries, newest first."""
    await get(session, subscription_id)
    where = [WebhookDelivery.subscription_id == subscription_id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    total = await session.scalar(select(func.count()).where(*where)) or 0
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(*where)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.event_seq.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return list(rows), total


async def delivery(session: AsyncSession, delivery_id: str) -> WebhookDelivery:
    row = await session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id[:40]!r}")
    return row


async def attempts(session: AsyncSession, delivery_id: str) -> list[WebhookAttempt]:
    rows = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.id)
    )
    return list(rows)


async def redeliver(session: AsyncSession, delivery_id: str, *, actor: Actor) -> WebhookDelivery:
    """Send a delivery again now, with the same ``webhook-id`` and body (a receiver that
    deduplicates sees it once). A pending one is just moved up; the retry schedule
    starts over."""
    row = await delivery(session, delivery_id)
    row.status, row.attempts, row.claim = "pending", 0, None
    row.next_attempt_at, row.finished_at = utcnow(), None
    await session.flush()
    subscription = await get(session, row.subscription_id)
    await _audit(session, "webhook:redelivered", subscription, actor, delivery=row.id)
    return row


async def _audit(
    session: AsyncSession,
    event_type: str,
    row: WebhookSubscription,
    actor: Actor,
    **extra: object,
) -> None:
    await audit.append(
        session,
        type=event_type,
        actor=actor,
        subject=f"webhook:{row.id}",
        data={
            "id": str(row.id),
            "url": row.url,
            "event_types": list(row.event_types),
            "enabled": row.enabled,
            **extra,
        },
    )
