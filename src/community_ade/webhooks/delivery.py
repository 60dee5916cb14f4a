"""Sending webhook deliveries (IO): claim due rows of the outbox, POST them signed, log
each attempt and schedule the next (``rules.after_attempt``).

Claims: a sender takes a due delivery by moving its ``next_attempt_at`` past a lease
(the timeout and a margin) under a claim token, in a short transaction (PostgreSQL:
``FOR UPDATE SKIP LOCKED``; both: the update re-checks that the row is still due), so
several processes never send the same attempt, and a process that dies mid-attempt only
delays that delivery until its lease ends. At least once: a receiver may see a delivery
twice (a crash after the request, before its result was stored); it deduplicates on
``webhook-id``.

Isolation: each process sends at most ``ADE_WEBHOOK_CONCURRENCY`` requests at once and
at most ``ADE_WEBHOOK_ENDPOINT_CONCURRENCY`` to one endpoint, and claims per endpoint, so
an endpoint that answers slowly fills its own slots only; the others keep theirs.

``run_webhooks`` is the loop ``ade serve`` and ``ade worker`` run: the outbox is filled
as soon as an event reaches the events stream (a blocking read wakes it) and the
deliveries it queued are sent at once; retries and other processes' deliveries are
found by polling every ``ADE_WEBHOOK_POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade import __version__
from community_ade.audit.checkpoints import log_signer
from community_ade.events.keys import EventKeys, stream_entries
from community_ade.infra.aio import Incident, cancel_and_wait, stop_if_cancelled
from community_ade.runtime import Runtime
from community_ade.secrets.keys import SecretCipher
from community_ade.settings import Settings
from community_ade.storage.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
    utcnow,
)
from community_ade.webhooks import rules, store
from community_ade.webhooks.outbox import Outbox

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_MARGIN_SECONDS = 30.0
PRUNE_EVERY_SECONDS = 300.0
BLOCK_MS = 1000
BATCH_WAKE = 1000  # stream entries read only to learn that there are new ones
USER_AGENT = f"community-ade-webhooks/{__version__}"


@dataclass(frozen=True)
class Claimed:
    """A delivery taken for one attempt, with what sending it needs."""

    id: str
    subscription_id: uuid.UUID
    url: str
    payload: str
    attempts: int
    claim: str


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    latency_ms: int
    excerpt: str
    error: str | None


class Dispatcher:
    """Claims and sends this process's share of the due deliveries (module doc)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        client: httpx.AsyncClient,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.client = client
        self.cipher: SecretCipher | None = None
        self.in_flight: Counter[uuid.UUID] = Counter()
        self.sending: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()  # set whenever a send finishes: a slot is free

    def _cipher(self) -> SecretCipher:
        if self.cipher is None:
            self.cipher = SecretCipher.from_settings(self.settings)
        return self.cipher

    def free(self) -> int:
        return self.settings.webhook_concurrency - len(self.sending)

    async def claim(self) -> list[Claimed]:
        """Take the due deliveries this process has room for, per endpoint."""
        free = self.free()
        if free <= 0:
            return []
        now = utcnow()
        lease = now + timedelta(
            seconds=self.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS
        )
        token = uuid.uuid4().hex
        due = (
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            WebhookSubscription.enabled.is_(True),
        )
        per_endpoint = self.settings.webhook_endpoint_concurrency
        async with self.sessions.begin() as session:
            endpoints = await session.execute(
                select(WebhookDelivery.subscription_id, func.min(WebhookDelivery.next_attempt_at))
                .join(WebhookSubscription)
                .where(*due)
                .group_by(WebhookDelivery.subscription_id)
                .order_by(func.min(WebhookDelivery.next_attempt_at))
            )
            taken: list[str] = []
            for subscription_id, _oldest in endpoints.all():
                room = min(per_endpoint - self.in_flight[subscription_id], free - len(taken))
                if room <= 0:
                    continue
                ids = await session.scalars(
                    select(WebhookDelivery.id)
                    .join(WebhookSubscription)
                    .where(*due, WebhookDelivery.subscription_id == subscription_id)
                    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_seq)
                    .limit(room)
                    .with_for_update(skip_locked=True, of=WebhookDelivery)
                )
                taken += ids
                if len(taken) >= free:
                    break
            if not taken:
                return []
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id.in_(taken),
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(claim=token, next_attempt_at=lease)
            )
            rows = await session.execute(
                select(
                    WebhookDelivery.id,
                    WebhookDelivery.subscription_id,
                    WebhookSubscription.url,
                    WebhookDelivery.payload,
                    WebhookDelivery.attempts,
                )
                .join(WebhookSubscription)
                .where(WebhookDelivery.claim == token)
                .order_by(WebhookDelivery.event_seq)
            )
            return [Claimed(*row, claim=token) for row in rows.all()]

    def start(self, claimed: list[Claimed]) -> None:
        """Send each claimed delivery in a task of its own."""
        for delivery in claimed:
            self.in_flight[delivery.subscription_id] += 1
            task = asyncio.create_task(self._send_and_record(delivery), name="ade-webhook-send")
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def run_once(self) -> int:
        """Claim and start what is due; how many sends were started."""
        claimed = await self.claim()
        self.start(claimed)
        return len(claimed)

    async def _send_and_record(self, delivery: Claimed) -> None:
        try:
            async with self.sessions() as session:
                row = await session.get(WebhookSubscription, delivery.subscription_id)
                secrets = (
                    store.signing_secrets(row, self._cipher(), utcnow()) if row is not None else []
                )
            answer = await self.send(delivery, secrets) if secrets else None
            if answer is not None:
                await self.record(delivery, answer)
        except Exception:
            # The lease brings the delivery back; this attempt is not lost, only late.
            log.exception("webhook delivery %s: the attempt was not recorded", delivery.id)
        finally:
            self.in_flight[delivery.subscription_id] -= 1
            if self.in_flight[delivery.subscription_id] <= 0:
                del self.in_flight[delivery.subscription_id]
            self.done.set()

    async def send(self, delivery: Claimed, secrets: list[str]) -> Answer:
        """One POST of the delivery, signed now; never follows a redirect."""
        at = utcnow()
        headers = rules.headers(secrets, delivery.id, at, delivery.payload)
        headers["user-agent"] = USER_AGENT
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_seconds):
                async with self.client.stream(
                    "POST", delivery.url, content=delivery.payload.encode(), headers=headers
                ) as response:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) >= rules.MAX_EXCERPT_CHARS * 4:
                            break
                    status: int | None = response.status_code
                    error = None
        except TimeoutError:
            status, body = None, b""
            error = f"no answer within {self.settings.webhook_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            status, body, error = None, b"", f"{type(exc).__name__}: {exc}"[:500]
        latency = int((time.perf_counter() - started) * 1000)
        return Answer(status, latency, rules.excerpt(body), error)

    async def record(self, delivery: Claimed, answer: Answer) -> None:
        """Log the attempt and move the delivery on (next attempt, done, given up), and
        the endpoint's failure streak; disable the endpoint if the rules say so."""
        now = utcnow()
        async with self.sessions.begin() as session:
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    at=now,
                    status_code=answer.status_code,
                    latency_ms=answer.latency_ms,
                    response_excerpt=answer.excerpt,
                    error=answer.error,
                )
            )
            row = await session.get(WebhookDelivery, delivery.id, with_for_update=True)
            if row is None or row.claim != delivery.claim:
                return  # deleted, or redelivered meanwhile: its new owner decides
            subscription = await session.get(WebhookSubscription, delivery.subscription_id)
            if subscription is None:
                return
            ok = answer.status_code is not None and 200 <= answer.status_code < 300
            failing_since = None if ok else subscription.failing_since or now
            step = rules.after_attempt(
                delivery.attempts + 1,
                answer.status_code,
                self.settings.webhook_retry_schedule,
                random.random(),
                failing_since=failing_since,
                now=now,
                disable_after=timedelta(hours=self.settings.webhook_disable_after_hours),
            )
            row.attempts, row.last_status, row.claim = (
                delivery.attempts + 1,
                answer.status_code,
                None,
            )
            row.status = step.status
            if step.delay is not None:
                row.next_attempt_at = now + timedelta(seconds=step.delay)
            else:
                row.finished_at = now
            if subscription.failing_since != failing_since:
                subscription.failing_since = failing_since
            if step.disable is not None and subscription.enabled:
                await store.disable(session, subscription, step.disable)

    async def prune(self) -> int:
        """Forget finished deliveries past ``ADE_WEBHOOK_RETENTION_DAYS``."""
        cutoff = utcnow() - timedelta(days=self.settings.webhook_retention_days)
        async with self.sessions.begin() as session:
            done = await session.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.status != "pending", WebhookDelivery.finished_at < cutoff
                )
            )
        return int(done.rowcount)  # type: ignore[attr-defined]

    async def drain(self) -> None:
        """Wait for the sends in flight (at shutdown: their results are stored)."""
        if self.sending:
            await asyncio.gather(*tuple(self.sending), return_exceptions=True)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The client every delivery of a process goes through: no redirects (one could
    leave the allowlist), no proxies from the environment, pooled connections."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=settings.webhook_timeout_seconds,
        limits=httpx.Limits(max_connections=settings.webhook_concurrency),
    )


async def _whole(work: Awaitable[T]) -> T:
    """Run a pass over the database to its end even if cancelled meanwhile, then stop: a
    connection cancelled mid-query (aiosqlite) is left closing forever and hangs the
    event loop's shutdown."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _fill_forever(runtime: Runtime, outbox: Outbox, queued: asyncio.Event) -> None:
    """Fill the outbox whenever the events stream grows (a blocking read wakes it), and
    at least every poll."""
    keys = EventKeys.for_namespace(runtime.settings.lock_domain)
    incident = Incident("webhook outbox", log)
    last_id: str | None = None
    while True:
        stop_if_cancelled()
        try:
            if await _whole(outbox.fan_out()):
                queued.set()
            if last_id is None:
                newest = stream_entries(await runtime.redis.xrevrange(keys.stream, count=1))
                last_id = newest[0][0] if newest else "0-0"
            reply: list[tuple[str, Any]] = await runtime.redis.xread(  # type: ignore[assignment]
                {keys.stream: last_id}, count=BATCH_WAKE, block=BLOCK_MS
            )
        except Exception as exc:
            await asyncio.sleep(incident.failed(exc))
            continue
        incident.cleared()
        for _stream, entries in reply or ():
            read = stream_entries(entries)
            if read:
                last_id = read[-1][0]


async def _send_forever(dispatcher: Dispatcher, queued: asyncio.Event, poll: float) -> None:
    incident = Incident("webhook deliveries", log)
    next_prune = time.monotonic()
    while True:
        stop_if_cancelled()
        queued.clear()
        dispatcher.done.clear()
        try:
            await _whole(dispatcher.run_once())
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                await _whole(dispatcher.prune())
        except Exception as exc:
            await asyncio.sleep(incident.failed(exc))
            continue
        incident.cleared()
        # Woken by new deliveries, or by a free slot when work was left for lack of one.
        wake = asyncio.create_task(queued.wait())
        freed = asyncio.create_task(dispatcher.done.wait())
        try:
            await asyncio.wait((wake, freed), timeout=poll, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            freed.cancel()


async def run_webhooks(runtime: Runtime) -> None:
    """Fill the outbox and send deliveries until cancelled (``ade serve`` and
    ``ade worker`` run it; any number of processes may); sends in flight finish first."""
    settings = runtime.settings
    outbox = Outbox(runtime.redis, runtime.sessions, settings.lock_domain, log_signer(settings))
    queued = asyncio.Event()
    async with http_client(settings) as client:
        dispatcher = Dispatcher(runtime.sessions, settings, client)
        loops = [
            asyncio.create_task(_fill_forever(runtime, outbox, queued), name="ade-webhook-outbox"),
            asyncio.create_task(
                _send_forever(dispatcher, queued, settings.webhook_poll_seconds),
                name="ade-webhook-sender",
            ),
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            await cancel_and_wait(loops)
            with contextlib.suppress(Exception):
                await dispatcher.drain()
