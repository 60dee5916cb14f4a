"""The e-mail sender: a background loop of ``ade serve`` (IO: SQL, SMTP).

Each pass (``EmailSender.run_once``):

1. turns new review-request events into outbox rows (``email_outbox.dispatch``);
2. leases the rows whose time came (``claim_due``), committed before any SMTP traffic;
3. reads each task again: a row whose task was decided, or whose recipient may no
   longer decide it, is skipped; the others become messages (``email_message``), each
   task with this reviewer's own signed decision link (``email_links``);
4. sends them over one SMTP connection (``aiosmtplib``) and records each outcome:
   sent; refused for good (5xx) → failed; anything else → retried with backoff
   (``ADE_EMAIL_BACKOFF_*``) up to ``ADE_EMAIL_MAX_ATTEMPTS``.

Delivery is at least once: a server that dies after the SMTP server accepted a message
and before step 4 committed sends it again once the lease lapsed.

A commit of this process that appended audit rows wakes the loop at once (the same
signal as the events relay); other processes' commits and deferred rows are found by
polling every ``ADE_EMAIL_POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import quote

import aiosmtplib
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.review_request import Person, ReviewRequest, gather
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState
from community_ade.audit.log import APPENDED
from community_ade.dashboard.security import load_secret
from community_ade.errors import NotFound
from community_ade.infra.aio import Incident, wait_event
from community_ade.notifications import email_links
from community_ade.notifications.email_message import Item, review_message
from community_ade.notifications.email_outbox import Claimed, Outcome, claim_due, dispatch, settle
from community_ade.runtime import Runtime
from community_ade.secrets.store import SecretVault
from community_ade.settings import Settings
from community_ade.storage.models import utcnow

log = logging.getLogger(__name__)

CONFIRM_PATH = "/email/decide"


@dataclass(frozen=True)
class Built:
    """A claimed group as a message (None: nothing left to tell), with the rows it tells
    and the rows it leaves untold (skipped)."""

    message: EmailMessage | None
    told: tuple[uuid.UUID, ...]
    untold: tuple[uuid.UUID, ...]


def decide_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{CONFIRM_PATH}?t={quote(token, safe='')}"


class EmailSender:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if settings.smtp_host is None:
            raise ValueError("ADE_SMTP_HOST is not set: e-mail is off")
        self.settings = settings
        self.sessions = sessions
        self.now = now
        self.link_key = email_links.link_key(load_secret(settings))
        self.vault = SecretVault(sessions, settings)

    @property
    def lease(self) -> timedelta:
        # Longer than one pass can spend on SMTP, so no other server sends the same rows.
        return timedelta(seconds=self.settings.smtp_timeout_seconds * 4 + 30)

    async def run_once(self) -> int:
        """One pass; the number of messages the SMTP server accepted."""
        now = self.now()
        try:
            async with self.sessions.begin() as session:
                await dispatch(session, public_url=self.settings.public_url, now=now)
        except IntegrityError:
            log.debug("another process dispatched the same review requests first")
        async with self.sessions.begin() as session:
            claimed = await claim_due(session, now=now, lease=self.lease)
        if not claimed:
            return 0
        async with self.sessions() as session:
            # One read per task, however many of its reviewers this pass tells.
            requests: dict[uuid.UUID, ReviewRequest | None] = {}
            built = [await self._message(session, group, now, requests) for group in claimed]
        results = iter(await self._send([b.message for b in built if b.message is not None]))
        sent = 0
        async with self.sessions.begin() as session:
            for message in built:
                if message.message is not None:
                    outcome, error = next(results)
                    sent += outcome == "sent"
                    await self._settle(session, message.told, outcome, error)
                await self._settle(session, message.untold, "skipped", None)
        return sent

    async def _settle(
        self, session: AsyncSession, ids: Sequence[uuid.UUID], outcome: Outcome, error: str | None
    ) -> None:
        if not ids:
            return
        await settle(
            session,
            ids,
            outcome,
            now=self.now(),
            error=error,
            max_attempts=self.settings.email_max_attempts,
            backoff=(
                self.settings.email_backoff_base_seconds,
                self.settings.email_backoff_cap_seconds,
            ),
        )

    async def _message(
        self,
        session: AsyncSession,
        group: Claimed,
        now: datetime,
        requests: dict[uuid.UUID, ReviewRequest | None],
    ) -> Built:
        """The message of ``group``: the rows whose task still waits on the person are
        told; the others (decided, or no longer theirs to decide) are not."""
        person: Person | None = None
        items, told, untold = [], [], []
        expires = now + timedelta(hours=self.settings.email_link_ttl_hours)
        for row in group.rows:
            if row.task_id not in requests:
                try:
                    requests[row.task_id] = await gather(
                        session, row.task_id, public_url=self.settings.public_url
                    )
                except NotFound:
                    requests[row.task_id] = None
            request = requests[row.task_id]
            if request is None:
                untold.append(row.id)
                continue
            me = next((p for p in request.reviewers if p.id == str(row.user_id)), None)
            still_open = TaskState(request.state) in OPEN_FOR_REVIEW
            if not still_open or me is None or not me.email or request.digest is None:
                untold.append(row.id)
                continue
            person = me
            link = email_links.new_link(row.user_id, row.task_id, request.digest, expires)
            token = email_links.sign(self.link_key, link)
            items.append(Item(request, row.kind, decide_url(self.settings.public_url, token)))
            told.append(row.id)
        if person is None:
            return Built(None, (), tuple(untold))
        message = review_message(self.settings.smtp_from, person, items, now=now)
        return Built(message, tuple(told), tuple(untold))

    async def _send(self, messages: Sequence[EmailMessage]) -> list[tuple[Outcome, str | None]]:
        """Send over one connection; one outcome per message, in order."""
        if not messages:
            return []
        try:
            client = await self._client()
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            return [_failure(exc)] * len(messages)
        outcomes = []
        try:
            for message in messages:
                try:
                    await client.send_message(message)
                except (aiosmtplib.SMTPException, OSError) as exc:
                    outcomes.append(_failure(exc))
                    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | OSError):
                        break
                else:
                    outcomes.append(("sent", None))
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
        lost = len(messages) - len(outcomes)
        return outcomes + [("retry", "the SMTP connection was lost")] * lost

    async def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        password = None
        if s.smtp_password is not None:
            password = s.smtp_password.get_secret_value()
        elif s.smtp_password_secret is not None:
            password = (await self.vault.reveal([s.smtp_password_secret]))[s.smtp_password_secret]
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_user,
            password=password,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout_seconds,
            tls_context=ssl.create_default_context(),
        )


def _failure(exc: BaseException) -> tuple[Outcome, str | None]:
    """Refused for good (a 5xx answer) or worth another try (anything else)."""
    code = getattr(exc, "code", None)
    permanent = isinstance(code, int) and 500 <= code < 600
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        permanent = all(500 <= r.code < 600 for r in exc.recipients)
    return ("failed" if permanent else "retry"), f"{type(exc).__name__}: {exc}"


async def email_forever(runtime: Runtime) -> None:
    """``ade serve``'s e-mail loop; returns at once when ``ADE_SMTP_HOST`` is unset."""
    if runtime.settings.smtp_host is None:
        log.info("e-mail notifications are off (ADE_SMTP_HOST is not set)")
        return
    sender = EmailSender(runtime.settings, runtime.sessions)
    incident = Incident("e-mail sender", log)
    nudge = asyncio.Event()
    with APPENDED.waking(nudge):
        while True:
            nudge.clear()
            try:
                sent = await sender.run_once()
            except Exception as exc:  # a database or secrets hiccup: the next pass retries
                await asyncio.sleep(incident.failed(exc))
                continue
            incident.cleared()
            if sent:
                log.info("sent %d notification e-mail(s)", sent)
            await wait_event(nudge, runtime.settings.email_poll_seconds)
