"""Outbound webhooks (admins only, ``webhook_admin``): subscriptions with the reason the
system disabled one, the delivery log with every attempt, redelivery, secret rotation.
A new secret is shown on the page that made it, once (docs/notifications.md)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from community_ade.api.deps import RuntimeDep, SessionDep
from community_ade.approvals.service import actor_of
from community_ade.auth.principal import Permission, require
from community_ade.dashboard.web import (
    NavItem,
    PageRoute,
    Visitor,
    VisitorDep,
    redirect,
    render,
)
from community_ade.secrets.keys import SecretCipher
from community_ade.storage.models import WebhookSubscription
from community_ade.webhooks import rules, store

router = APIRouter(route_class=PageRoute)
nav = NavItem("Webhooks", "/webhooks", Permission.WEBHOOK_ADMIN, order=70)
LOG_ROWS = 50


def _admin(visitor: Visitor) -> None:
    require(visitor.principal, Permission.WEBHOOK_ADMIN)


def _patterns(text: str) -> list[str]:
    return [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]


async def _index(
    request: Request, visitor: Visitor, session: SessionDep, made: store.WithSecret | None = None
) -> HTMLResponse:
    rows, _ = await store.list_page(session, page=1, limit=200)
    return render(
        request,
        "webhooks/index.html",
        {"rows": rows, "made": made, "max_patterns": rules.MAX_PATTERNS},
        visitor=visitor,
    )


@router.get("/webhooks")
async def webhooks_page(request: Request, visitor: VisitorDep, session: SessionDep) -> HTMLResponse:
    _admin(visitor)
    return await _index(request, visitor, session)


@router.post("/webhooks")
async def create_webhook(
    request: Request,
    visitor: VisitorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    url: Annotated[str, Form(min_length=1, max_length=store.MAX_URL_CHARS)],
    event_types: Annotated[str, Form(max_length=4000)] = "*",
    description: Annotated[str, Form(max_length=rules.MAX_DESCRIPTION_CHARS)] = "",
) -> HTMLResponse:
    """Answered with the page itself (not a redirect): it shows the secret this once."""
    _admin(visitor)
    made = await store.create(
        session,
        SecretCipher.from_settings(runtime.settings),
        runtime.settings,
        url=url,
        event_types=_patterns(event_types),
        description=description,
        enabled=True,
        actor=actor_of(visitor.principal),
        user_id=visitor.principal.id,
    )
    return await _index(request, visitor, session, made)


async def _detail(
    request: Request,
    visitor: Visitor,
    session: SessionDep,
    row: WebhookSubscription,
    made: store.WithSecret | None = None,
) -> HTMLResponse:
    deliveries, total = await store.deliveries(session, row.id, status=None, page=1, limit=LOG_ROWS)
    attempts = {d.id: await store.attempts(session, d.id) for d in deliveries}
    return render(
        request,
        "webhooks/detail.html",
        {"hook": row, "deliveries": deliveries, "total": total, "attempts": attempts, "made": made},
        visitor=visitor,
    )


@router.get("/webhooks/{webhook_id}")
async def webhook_page(
    webhook_id: uuid.UUID, request: Request, visitor: VisitorDep, session: SessionDep
) -> HTMLResponse:
    _admin(visitor)
    return await _detail(request, visitor, session, await store.get(session, webhook_id))


@router.post("/webhooks/{webhook_id}/enabled")
async def set_enabled(
    webhook_id: uuid.UUID,
    visitor: VisitorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    enabled: Annotated[bool, Form()],
) -> Response:
    _admin(visitor)
    await store.update(
        session, runtime.settings, webhook_id, enabled=enabled, actor=actor_of(visitor.principal)
    )
    return redirect(f"/webhooks/{webhook_id}", flash="Enabled." if enabled else "Disabled.")


@router.post("/webhooks/{webhook_id}/rotate")
async def rotate(
    webhook_id: uuid.UUID,
    request: Request,
    visitor: VisitorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    overlap_hours: Annotated[float, Form(ge=0, le=24 * 30)] = 24.0,
) -> HTMLResponse:
    _admin(visitor)
    made = await store.rotate(
        session,
        SecretCipher.from_settings(runtime.settings),
        webhook_id,
        overlap=timedelta(hours=overlap_hours),
        actor=actor_of(visitor.principal),
    )
    return await _detail(request, visitor, session, made.subscription, made)


@router.post("/webhooks/{webhook_id}/delete")
async def delete(webhook_id: uuid.UUID, visitor: VisitorDep, session: SessionDep) -> Response:
    _admin(visitor)
    await store.delete(session, webhook_id, actor=actor_of(visitor.principal))
    return redirect("/webhooks", flash="Webhook deleted.")


@router.post("/webhook-deliveries/{delivery_id}/redeliver")
async def redeliver(delivery_id: str, visitor: VisitorDep, session: SessionDep) -> Response:
    _admin(visitor)
    row = await store.redeliver(session, delivery_id[:40], actor=actor_of(visitor.principal))
    return redirect(f"/webhooks/{row.subscription_id}", flash=f"{row.id} is queued again.")
