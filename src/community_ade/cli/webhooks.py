"""``ade webhooks``: outbound webhook subscriptions, their delivery log and redelivery
(docs/notifications.md). Changes are attributed to the admin named with ``--as``; the
signing secret is printed once, by ``create`` and ``rotate-secret``."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Annotated

import typer
from rich.box import SIMPLE
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.service import actor_of
from community_ade.auth import service as auth
from community_ade.auth.principal import Permission, Principal, require
from community_ade.cli.common import console, run_database
from community_ade.runtime import Database
from community_ade.secrets.keys import SecretCipher
from community_ade.storage.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from community_ade.webhooks import store

app = typer.Typer(
    help="Manage outbound webhooks (Standard Webhooks): subscriptions, deliveries, redelivery.",
    no_args_is_help=True,
)

ActingAdmin = Annotated[str, typer.Option("--as", help="The admin making the change.")]
WebhookId = Annotated[uuid.UUID, typer.Argument(help="The subscription's id (ade webhooks list).")]
DeliveryId = Annotated[str, typer.Argument(help="The delivery's id, its webhook-id (msg_…).")]
EventTypes = Annotated[
    list[str] | None,
    typer.Option("--event", help="An event type or glob, e.g. 'task:*'; repeat for more."),
]


async def _admin(session: AsyncSession, username: str) -> Principal:
    principal = await auth.human_principal(session, await auth.get_user_by_name(session, username))
    require(principal, Permission.WEBHOOK_ADMIN)
    return principal


def _when(row: WebhookSubscription) -> str:
    return row.updated_at.strftime("%Y-%m-%d %H:%M")


def _print_secret(made: store.WithSecret, verb: str) -> None:
    console.print(f"{verb} webhook {made.subscription.id} → {made.subscription.url}")
    console.print(f"signing secret (shown once, keep it now): {made.secret}")


@app.command("create")
def create(
    url: Annotated[str, typer.Argument(help="An http(s) URL on ADE_HTTP_ALLOWLIST.")],
    acting: ActingAdmin,
    event: EventTypes = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
) -> None:
    """Subscribe a URL to event types (default every event: '*'); prints the secret."""

    async def action(database: Database) -> store.WithSecret:
        async with database.sessions.begin() as session:
            admin = await _admin(session, acting)
            return await store.create(
                session,
                SecretCipher.from_settings(database.settings),
                database.settings,
                url=url,
                event_types=event or ["*"],
                description=description,
                enabled=not disabled,
                actor=actor_of(admin),
                user_id=admin.id,
            )

    _print_secret(run_database(action), "created")


@app.command("list")
def list_webhooks() -> None:
    """Every subscription: URL, filters, enabled, why it was disabled."""

    async def action(database: Database) -> list[WebhookSubscription]:
        async with database.sessions() as session:
            rows, _ = await store.list_page(session, page=1, limit=10_000)
            return rows

    table = Table(box=SIMPLE)
    for column in ("id", "url", "events", "enabled", "updated", "description"):
        table.add_column(column)
    for row in run_database(action):
        state = "yes" if row.enabled else f"no: {row.disabled_reason or 'by an admin'}"
        table.add_row(
            str(row.id), row.url, " ".join(row.event_types), state, _when(row), row.description
        )
    console.print(table)


@app.command("update")
def update(
    webhook_id: WebhookId,
    acting: ActingAdmin,
    url: Annotated[str | None, typer.Option(help="A new URL (on the allowlist).")] = None,
    event: EventTypes = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Enable (resume) or disable it.")
    ] = None,
) -> None:
    """Change a subscription; --enable also re-enables one the system disabled."""

    async def action(database: Database) -> WebhookSubscription:
        async with database.sessions.begin() as session:
            admin = await _admin(session, acting)
            return await store.update(
                session,
                database.settings,
                webhook_id,
                url=url,
                event_types=event,
                description=description,
                enabled=enabled,
                actor=actor_of(admin),
            )

    row = run_database(action)
    console.print(f"updated webhook {row.id}: {'enabled' if row.enabled else 'disabled'}")


@app.command("delete")
def delete(webhook_id: WebhookId, acting: ActingAdmin) -> None:
    """Delete a subscription with its pending deliveries and its delivery log."""

    async def action(database: Database) -> None:
        async with database.sessions.begin() as session:
            admin = await _admin(session, acting)
            await store.delete(session, webhook_id, actor=actor_of(admin))

    run_database(action)
    console.print(f"deleted webhook {webhook_id}")


@app.command("rotate-secret")
def rotate_secret(
    webhook_id: WebhookId,
    acting: ActingAdmin,
    overlap_hours: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=24 * 30,
            help="How long the old secret signs too (default ADE_WEBHOOK_SECRET_OVERLAP_HOURS).",
        ),
    ] = None,
) -> None:
    """A new signing secret (printed once); the old one keeps signing for the overlap."""

    async def action(database: Database) -> store.WithSecret:
        settings = database.settings
        hours = settings.webhook_secret_overlap_hours if overlap_hours is None else overlap_hours
        async with database.sessions.begin() as session:
            admin = await _admin(session, acting)
            return await store.rotate(
                session,
                SecretCipher.from_settings(settings),
                webhook_id,
                overlap=timedelta(hours=hours),
                actor=actor_of(admin),
            )

    _print_secret(run_database(action), "rotated the secret of")


@app.command("deliveries")
def deliveries(
    webhook_id: WebhookId,
    status: Annotated[
        str | None, typer.Option(help="Only pending, succeeded or failed deliveries.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
) -> None:
    """The delivery log of a subscription, newest first."""
    if status not in (None, "pending", "succeeded", "failed"):
        raise typer.BadParameter("pending, succeeded or failed", param_hint="--status")

    async def action(database: Database) -> list[WebhookDelivery]:
        async with database.sessions() as session:
            rows, _ = await store.deliveries(
                session, webhook_id, status=status, page=1, limit=limit
            )
            return rows

    table = Table(box=SIMPLE)
    for column in ("id", "event", "seq", "status", "attempts", "last answer", "created"):
        table.add_column(column)
    for row in run_database(action):
        table.add_row(
            row.id,
            row.event_type,
            str(row.event_seq),
            row.status,
            str(row.attempts),
            "-" if row.last_status is None else str(row.last_status),
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@app.command("show-delivery")
def show_delivery(delivery_id: DeliveryId) -> None:
    """One delivery: its body and every attempt (status, latency, response excerpt)."""

    async def action(database: Database) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
        async with database.sessions() as session:
            row = await store.delivery(session, delivery_id)
            return row, await store.attempts(session, row.id)

    row, attempts = run_database(action)
    console.print(f"{row.id}: {row.event_type} (seq {row.event_seq}), {row.status}")
    console.print_json(json.dumps(json.loads(row.payload)))
    table = Table(box=SIMPLE)
    for column in ("at", "status", "latency ms", "answer / error"):
        table.add_column(column)
    for attempt in attempts:
        table.add_row(
            attempt.at.strftime("%Y-%m-%d %H:%M:%S"),
            "-" if attempt.status_code is None else str(attempt.status_code),
            str(attempt.latency_ms),
            attempt.error or attempt.response_excerpt[:200],
        )
    console.print(table)


@app.command("redeliver")
def redeliver(delivery_id: DeliveryId, acting: ActingAdmin) -> None:
    """Send a delivery again now: same webhook-id and body; its schedule starts over."""

    async def action(database: Database) -> None:
        async with database.sessions.begin() as session:
            admin = await _admin(session, acting)
            await store.redeliver(session, delivery_id, actor=actor_of(admin))

    run_database(action)
    console.print(f"delivery {delivery_id} is queued again (a running server sends it)")
