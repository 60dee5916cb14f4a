"""The webhook outbox: events of the events stream (``events.relay``) become delivery
rows in SQL, one per event and matching subscription, each exactly once (IO).

The stream is Redis; the deliveries, their retries and the cursor saying how far the
stream was taken are SQL, so what is queued survives a restart of every process. The
cursor moves in the transaction that inserts the deliveries, and only from the value
that transaction read (compare and set; on PostgreSQL the cursor row is also locked, so
concurrent passes queue up instead of repeating work): several ``ade serve`` and
``ade worker`` processes may run a pass at once and still queue each event once.

A cursor is made by the first pass ever and starts at the stream's newest event: the
history before webhooks existed is not delivered. A subscription gets the events that
happen while it is enabled (``receives_since``: its creation or its last enabling), also
when the outbox takes them later. An event older
than what the stream retains (``ADE_EVENTS_MAXLEN``) when the outbox gets to it is lost
to webhooks; at the default length that takes a long stop of every process.

The body of a delivery is ``{"type", "timestamp", "data", "receipt"?}``: ``data`` is the
events envelope with its ``seq``; events that have a transparency receipt
(``audit.checkpoints.RECEIPT_TYPES``: submission, decisions, apply) carry it, made now
(a new signed checkpoint when the newest does not cover the entry yet), so a receiver can
check offline that the decision is in the log.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.audit import checkpoints
from community_ade.audit.notes import Signer
from community_ade.events.envelope import seq_of
from community_ade.events.keys import EventKeys, stream_entries
from community_ade.infra.redis_client import AnyRedis
from community_ade.storage.models import WebhookCursor, WebhookDelivery, WebhookSubscription
from community_ade.webhooks import rules

log = logging.getLogger(__name__)

CURSOR = "events"
BATCH = 500


class CursorMoved(Exception):
    """Another process queued the same events first; this pass's work is rolled back."""


def new_delivery_id() -> str:
    """A ``webhook-id``: ``msg_`` and 32 hex digits."""
    return f"msg_{uuid.uuid4().hex}"


def _body(seq: int, fields: dict[str, str], receipt: dict[str, Any] | None) -> str:
    envelope = json.loads(fields["e"])
    document: dict[str, Any] = {
        "type": fields["type"],
        "timestamp": envelope.get("ts"),
        "data": {"seq": seq, **envelope},
    }
    if receipt is not None:
        document["receipt"] = receipt
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _event_time(fields: dict[str, str]) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(fields["e"])["ts"])
    except (ValueError, KeyError, TypeError):
        return None


class Outbox:
    def __init__(
        self,
        redis_client: AnyRedis,
        sessions: async_sessionmaker[AsyncSession],
        namespace: str,
        signer: Signer,
        *,
        batch: int = BATCH,
    ) -> None:
        self.redis = redis_client
        self.sessions = sessions
        self.keys = EventKeys.for_namespace(namespace)
        self.signer = signer
        self.batch = batch

    async def fan_out(self) -> int:
        """Queue the deliveries of every event past the cursor; how many were queued."""
        total = 0
        while True:
            try:
                queued, more = await self._pass()
            except CursorMoved:
                continue  # read the cursor again: what it moved past is queued already
            total += queued
            if not more:
                return total

    async def _pass(self) -> tuple[int, bool]:
        epoch = str(await self.redis.get(self.keys.epoch) or "")
        async with self.sessions.begin() as session:
            cursor = await session.get(WebhookCursor, CURSOR, with_for_update=True)
            if cursor is None:
                newest = int(await self.redis.get(self.keys.sequence) or 0)
                session.add(WebhookCursor(name=CURSOR, epoch=epoch, seq=newest))
                return 0, False
            read_epoch, read_seq = cursor.epoch, cursor.seq
            # A new epoch: the stream was lost and its seqs started over from 1.
            after = read_seq if read_epoch == epoch else 0
            entries = stream_entries(
                await self.redis.xrange(self.keys.stream, min=f"({after}-0", count=self.batch)
            )
            if str(await self.redis.get(self.keys.epoch) or "") != epoch:
                # The first event (or a new sequence) arrived between the two reads: these
                # entries may not be of the epoch read before them. Read both again.
                raise CursorMoved
            if not entries and read_epoch == epoch:
                return 0, False
            subscriptions = list(
                await session.scalars(
                    select(WebhookSubscription).where(WebhookSubscription.enabled.is_(True))
                )
            )
            queued = 0
            for entry_id, fields in entries:
                queued += await self._queue(session, subscriptions, seq_of(entry_id), fields)
            last = seq_of(entries[-1][0]) if entries else 0
            moved = await session.execute(
                update(WebhookCursor)
                .where(
                    WebhookCursor.name == CURSOR,
                    WebhookCursor.epoch == read_epoch,
                    WebhookCursor.seq == read_seq,
                )
                .values(epoch=epoch, seq=last)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise CursorMoved
            return queued, len(entries) == self.batch

    async def _queue(
        self,
        session: AsyncSession,
        subscriptions: list[WebhookSubscription],
        seq: int,
        fields: dict[str, str],
    ) -> int:
        event_type = fields.get("type", "")
        at = _event_time(fields)
        wanted = [
            s
            for s in subscriptions
            if rules.matches(s.event_types, event_type) and (at is None or at >= s.receives_since)
        ]
        if not wanted:
            return 0
        body = _body(seq, fields, await self._receipt(session, event_type, fields))
        for subscription in wanted:
            session.add(
                WebhookDelivery(
                    id=new_delivery_id(),
                    subscription_id=subscription.id,
                    event_seq=seq,
                    event_type=event_type[:64],
                    subject=fields.get("subject", "")[:200],
                    payload=body,
                )
            )
        await session.flush()
        return len(wanted)

    async def _receipt(
        self, session: AsyncSession, event_type: str, fields: dict[str, str]
    ) -> dict[str, Any] | None:
        if event_type not in checkpoints.RECEIPT_TYPES:
            return None
        audit_seq = json.loads(fields["e"]).get("audit_seq")
        if not isinstance(audit_seq, int):
            return None
        return await checkpoints.receipt(session, self.signer, audit_seq)
