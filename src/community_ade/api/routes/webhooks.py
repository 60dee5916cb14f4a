"""Outbound webhook subscriptions, their delivery log and redelivery (admins only:
``webhook_admin``). A signing secret is answered once, at create and at rotate."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from community_ade.api.deps import PrincipalDep, RuntimeDep, SessionDep
from community_ade.api.schemas import MAX_PAGE, Page
from community_ade.api.webhook_schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryStatus,
    WebhookCreate,
    WebhookOut,
    WebhookPatch,
    WebhookRotate,
    WebhookWithSecret,
)
from community_ade.approvals.service import actor_of
from community_ade.auth.principal import Permission, require
from community_ade.secrets.keys import SecretCipher
from community_ade.webhooks import store
from community_ade.webhooks.store import WithSecret

router = APIRouter(tags=["webhooks"])
HOOKS = "/webhooks"
# A delivery is named by its webhook-id alone (unique over every subscription).
DELIVERIES = "/webhook-deliveries"
DeliveryId = Annotated[str, Path(max_length=40, pattern=r"^msg_[0-9a-f]{32}$")]
PageNo = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Limit = Annotated[int, Query(ge=1, le=100)]


def _with_secret(made: WithSecret) -> WebhookWithSecret:
    return WebhookWithSecret(**WebhookOut.of(made.subscription).model_dump(), secret=made.secret)


@router.get(HOOKS, response_model=Page[WebhookOut])
async def list_webhooks(
    principal: PrincipalDep, session: SessionDep, page: PageNo = 1, limit: Limit = 20
) -> Page[WebhookOut]:
    require(principal, Permission.WEBHOOK_ADMIN)
    rows, total = await store.list_page(session, page=page, limit=limit)
    return Page(items=[WebhookOut.of(r) for r in rows], page=page, limit=limit, total=total)


@router.post(HOOKS, response_model=WebhookWithSecret, status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookCreate, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> WebhookWithSecret:
    """Subscribe a URL (on ``ADE_HTTP_ALLOWLIST``, else 422) to event types; the answer
    holds the signing secret, which is never shown again."""
    require(principal, Permission.WEBHOOK_ADMIN)
    made = await store.create(
        session,
        SecretCipher.from_settings(runtime.settings),
        runtime.settings,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
        actor=actor_of(principal),
        user_id=principal.id,
    )
    return _with_secret(made)


@router.get(HOOKS + "/{webhook_id}", response_model=WebhookOut)
async def get_webhook(
    webhook_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> WebhookOut:
    require(principal, Permission.WEBHOOK_ADMIN)
    return WebhookOut.of(await store.get(session, webhook_id))


@router.patch(HOOKS + "/{webhook_id}", response_model=WebhookOut)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookPatch,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> WebhookOut:
    """Change the URL, filters, description, or enable / disable it."""
    require(principal, Permission.WEBHOOK_ADMIN)
    row = await store.update(
        session,
        runtime.settings,
        webhook_id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enabled=body.enabled,
        actor=actor_of(principal),
    )
    return WebhookOut.of(row)


@router.delete(HOOKS + "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(
    webhook_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Delete it, with its pending deliveries and its delivery log."""
    require(principal, Permission.WEBHOOK_ADMIN)
    await store.delete(session, webhook_id, actor=actor_of(principal))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(HOOKS + "/{webhook_id}/rotate-secret", response_model=WebhookWithSecret)
async def rotate_secret(
    webhook_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    body: WebhookRotate | None = None,
) -> WebhookWithSecret:
    """A new signing secret, shown once; the old one signs too (a second signature)
    for the overlap."""
    require(principal, Permission.WEBHOOK_ADMIN)
    hours = body.overlap_hours if body and body.overlap_hours is not None else None
    settings = runtime.settings
    made = await store.rotate(
        session,
        SecretCipher.from_settings(settings),
        webhook_id,
        overlap=timedelta(hours=settings.webhook_secret_overlap_hours if hours is None else hours),
        actor=actor_of(principal),
    )
    return _with_secret(made)


@router.get(HOOKS + "/{webhook_id}/deliveries", response_model=Page[DeliveryOut])
async def list_deliveries(
    webhook_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    status: DeliveryStatus | None = None,
    page: PageNo = 1,
    limit: Limit = 20,
) -> Page[DeliveryOut]:
    """The delivery log, newest first."""
    require(principal, Permission.WEBHOOK_ADMIN)
    rows, total = await store.deliveries(session, webhook_id, status=status, page=page, limit=limit)
    return Page(items=[DeliveryOut.of(r) for r in rows], page=page, limit=limit, total=total)


@router.get(DELIVERIES + "/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(
    delivery_id: DeliveryId, principal: PrincipalDep, session: SessionDep
) -> DeliveryDetail:
    """One delivery: its body and every attempt (status, latency, response excerpt)."""
    require(principal, Permission.WEBHOOK_ADMIN)
    row = await store.delivery(session, delivery_id)
    attempts = [AttemptOut.of(a) for a in await store.attempts(session, row.id)]
    return DeliveryDetail(
        **DeliveryOut.of(row).model_dump(), payload=json.loads(row.payload), attempt_log=attempts
    )


@router.post(
    DELIVERIES + "/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
)
async def redeliver(
    delivery_id: DeliveryId, principal: PrincipalDep, session: SessionDep
) -> DeliveryOut:
    """Send it again now, same ``webhook-id`` and body; the retry schedule starts over."""
    require(principal, Permission.WEBHOOK_ADMIN)
    row = await store.redeliver(session, delivery_id, actor=actor_of(principal))
    return DeliveryOut.of(row)
