"""The Slack poster: keeps every task's Slack messages in step with the task (IO).

It reads the audit log from a cursor kept in SQL (``notification_cursors``, row
``slack``; every state change of a task, every review request, reminder and escalation
is an audit event), marks each task concerned as a job (``slack_jobs``, the outbox),
then brings each due job's messages up to date: post the review request to the
channels of its rules and groups (and DM each eligible reviewer when configured) while
it is open, reply in thread on a reminder or escalation, and ``chat.update`` every
message already posted (buttons gone once decided). A job is claimed with a
compare-and-set lease, so several processes never work on the same task at once;
posted messages are remembered as (channel, ts) as soon as they are posted, so a
restart neither loses nor repeats them. Delivery is at least once: a process killed
between a post and its commit posts that message again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.review_request import ReviewRequest, gather
from community_ade.approvals.reviews import ReviewService
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState
from community_ade.audit import log as audit
from community_ade.infra.aio import Incident
from community_ade.integrations.slack import config
from community_ade.integrations.slack.blocks import (
    Decided,
    reminder_text,
    review_blocks,
    summary_text,
)
from community_ade.notifications.preference_store import preferences_of
from community_ade.notifications.preferences import Channel, SendNow, decide
from community_ade.secrets.keys import SecretCipher
from community_ade.settings import Settings
from community_ade.storage.models import (
    AuditEvent,
    NotificationCursor,
    SlackJob,
    SlackMessage,
    SlackSettings,
    Task,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

SCAN_BATCH = 500
CLAIM_BATCH = 20
CLAIM_SECONDS = 60.0
MAX_ATTEMPTS = 10
SLACK_TIMEOUT_SECONDS = 10
# Events about a draft say nothing reviewers need.
QUIET_EVENTS = frozenset({"task:created", "task:updated"})
# "Tell them again": reply in thread and DM the eligible reviewers once more.
REMIND_EVENTS = frozenset({"approval:reminder", "approval:escalated"})
APPROVED_STATES = frozenset({"APPROVED", "APPLYING", "COMPLETED", "FAILED"})


@dataclass(frozen=True)
class Claimed:
    task_id: uuid.UUID
    generation: int
    remind: bool
    attempts: int


class SlackPoster:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._cipher: SecretCipher | None = None

    @property
    def cipher(self) -> SecretCipher:
        if self._cipher is None:
            self._cipher = SecretCipher.from_settings(self.settings)
        return self._cipher

    def client(self, slack: config.SlackConfig) -> AsyncWebClient:
        return AsyncWebClient(
            token=slack.bot_token,
            base_url=self.settings.slack_api_url,
            timeout=SLACK_TIMEOUT_SECONDS,
        )

    async def run_forever(self) -> None:
        """Work while there is work; then wait for a commit of this process that appended
        to the audit log, or the poll interval (other processes' commits)."""
        nudge = asyncio.Event()
        incident = Incident("Slack poster", log)
        with audit.APPENDED.waking(nudge):
            while True:
                nudge.clear()
                try:
                    busy = await self.run_once()
                    incident.cleared()
                except Exception as exc:  # the loop outlives every error of what it uses
                    await asyncio.sleep(incident.failed(exc))
                    continue
                if busy:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudge.wait(), self.settings.slack_poll_seconds)

    async def run_once(self) -> bool:
        """One pass: scan the audit log, then bring the due jobs up to date. True when
        it found anything (there may be more)."""
        scanned = await self.scan()
        claimed = await self.claim()
        if claimed:
            await asyncio.gather(*(self.work(job) for job in claimed))
        return scanned or bool(claimed)

    # -- the outbox -----------------------------------------------------------------------

    async def scan(self) -> bool:
        """Turn the audit events after the cursor into jobs. Without a configuration it
        reads one row and writes nothing: the cursor starts once Slack is configured."""
        async with self.sessions() as session:
            if await session.get(SlackSettings, config.SETTINGS_ID) is None:
                return False
        try:
            async with self.sessions.begin() as session:
                cursor = await session.get(NotificationCursor, config.CURSOR, with_for_update=True)
                if cursor is None:
                    # Configured before the cursor existed, say: start at the present.
                    head = await session.scalar(select(func.max(AuditEvent.seq)))
                    session.add(NotificationCursor(name=config.CURSOR, seq=head or 0))
                    return False
                rows = (
                    await session.execute(
                        select(AuditEvent.seq, AuditEvent.type, AuditEvent.subject)
                        .where(AuditEvent.seq > cursor.seq)
                        .order_by(AuditEvent.seq)
                        .limit(SCAN_BATCH)
                    )
                ).all()
                if not rows:
                    return False
                cursor.seq = rows[-1].seq
                now = utcnow()
                for _, kind, subject in rows:
                    task_id = _task_of(subject)
                    if task_id is None or kind in QUIET_EVENTS:
                        continue
                    job = await session.get(SlackJob, task_id)
                    remind = kind in REMIND_EVENTS
                    if job is None:
                        session.add(
                            SlackJob(
                                task_id=task_id,
                                generation=1,
                                remind=remind,
                                due_at=now,
                                attempts=0,
                                last_error="",
                            )
                        )
                        await session.flush()
                    else:
                        job.generation += 1
                        job.remind = job.remind or remind
                        job.due_at, job.attempts = now, 0
                return True
        except IntegrityError:  # another process created the cursor first
            return True

    async def claim(self) -> list[Claimed]:
        """Lease up to ``CLAIM_BATCH`` due jobs to this process (compare-and-set)."""
        now = utcnow()
        free = or_(SlackJob.claimed_until.is_(None), SlackJob.claimed_until < now)
        claimed = []
        async with self.sessions.begin() as session:
            due = list(
                await session.scalars(
                    select(SlackJob)
                    .where(SlackJob.due_at <= now, free)
                    .order_by(SlackJob.due_at)
                    .limit(CLAIM_BATCH)
                    .with_for_update(skip_locked=True)
                )
            )
            for job in due:
                taken = await session.execute(
                    update(SlackJob)
                    .where(SlackJob.task_id == job.task_id, free)
                    .values(
                        claimed_until=now + timedelta(seconds=CLAIM_SECONDS),
                        attempts=SlackJob.attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
                if getattr(taken, "rowcount", 0) == 1:
                    claimed.append(
                        Claimed(job.task_id, job.generation, job.remind, job.attempts + 1)
                    )
        return claimed

    async def work(self, job: Claimed) -> None:
        """Bring one task's messages up to date; then drop the job, unless it was marked
        again meanwhile, or retry it later after a failure."""
        try:
            async with self.sessions() as session:
                await self.reconcile(session, job)
        except Exception as exc:  # Slack down, rate limited, a bad channel: retry later
            give_up = job.attempts >= MAX_ATTEMPTS
            (log.error if give_up else log.info)(
                "Slack messages of task %s failed (attempt %d): %s", job.task_id, job.attempts, exc
            )
            async with self.sessions.begin() as session:
                if give_up:
                    await session.execute(delete(SlackJob).where(SlackJob.task_id == job.task_id))
                    return
                await session.execute(
                    update(SlackJob)
                    .where(SlackJob.task_id == job.task_id)
                    .values(
                        claimed_until=None,
                        due_at=utcnow() + timedelta(seconds=min(300, 2**job.attempts)),
                        last_error=str(exc)[:1000],
                    )
                )
            return
        async with self.sessions.begin() as session:
            done = await session.execute(
                delete(SlackJob).where(
                    SlackJob.task_id == job.task_id, SlackJob.generation == job.generation
                )
            )
            if not getattr(done, "rowcount", 0):  # marked again while we worked: once more
                await session.execute(
                    update(SlackJob)
                    .where(SlackJob.task_id == job.task_id)
                    .values(claimed_until=None)
                )

    # -- one task -------------------------------------------------------------------------

    async def reconcile(self, session: AsyncSession, job: Claimed) -> None:
        slack = await config.load(session, self.cipher)
        task = await session.get(Task, job.task_id)
        if slack is None or task is None:
            return
        client = self.client(slack)
        req = await gather(session, task.id, public_url=self.settings.public_url)
        posted = list(
            await session.scalars(select(SlackMessage).where(SlackMessage.task_id == task.id))
        )
        is_open = TaskState(task.state) in OPEN_FOR_REVIEW
        decided = None if is_open else await decided_of(session, task)
        if not is_open and not posted:
            return  # never announced (auto-approved, or a draft): nothing to say
        text = summary_text(req)
        blocks = review_blocks(req, decided)
        for message in posted:
            await client.chat_update(
                channel=message.channel, ts=message.ts, text=text, blocks=blocks
            )
        if not is_open:
            return
        if job.remind:
            reminder = reminder_text(req)
            for message in posted:
                await client.chat_postMessage(
                    channel=message.channel, thread_ts=message.ts, text=reminder
                )
        await self._post_new(session, client, slack, task, req, posted, text, blocks)

    async def _post_new(
        self,
        session: AsyncSession,
        client: AsyncWebClient,
        slack: config.SlackConfig,
        task: Task,
        req: ReviewRequest,
        posted: list[SlackMessage],
        text: str,
        blocks: list[dict[str, object]],
    ) -> None:
        """Post where the task has no message yet: its channels, and (DMs configured) each
        eligible reviewer found in Slack — an escalation's new group included — whose
        notification preferences want a Slack message now. A DM that would fall in their
        quiet hours or into a digest is not sent: the channel message stays, and Slack has
        no digest of its own."""
        requirements = task.requirements or {}
        groups = [g["group"] for g in requirements.get("groups", [])]
        channels = await config.channels_for(
            session, requirements.get("matched_rules", []), groups, slack.default_channel
        )
        targets: list[tuple[str, uuid.UUID | None]] = [(c, None) for c in channels]
        if slack.dm_reviewers:
            wanted = await preferences_of(session, [uuid.UUID(p.id) for p in req.reviewers])
            now = utcnow()
            for person in req.reviewers:
                plan = decide(wanted[uuid.UUID(person.id)], Channel.SLACK, now)
                if not isinstance(plan, SendNow):
                    continue
                slack_id = await config.slack_user_of(
                    session, client, uuid.UUID(person.id), person.email
                )
                if slack_id is not None:
                    targets.append((slack_id, uuid.UUID(person.id)))
        done_channels = {m.channel for m in posted}
        done_users = {m.user_id for m in posted if m.user_id is not None}
        for channel, user_id in targets:
            if channel in done_channels or (user_id is not None and user_id in done_users):
                continue
            answer = await client.chat_postMessage(channel=channel, text=text, blocks=blocks)
            session.add(
                SlackMessage(
                    task_id=req.task_id,
                    channel=str(answer["channel"]),
                    ts=str(answer["ts"]),
                    user_id=user_id,
                )
            )
            await session.commit()  # remembered at once: a retry does not post it again
            done_channels.add(str(answer["channel"]))


async def decided_of(session: AsyncSession, task: Task) -> Decided:
    """How ``task`` left review, for its updated message: who decided (and on which
    surface, as each decision's audit event records it), and when."""
    state = task.state
    at = task.decided_at or task.updated_at
    if state in APPROVED_STATES:
        verb, wanted, stale = "Approved", "approve", False
    elif state == "REJECTED":
        verb, wanted, stale = "Rejected", "reject", False
    elif state == "DRAFT":
        verb, wanted, stale = "Changes requested", "request_changes", True
    else:
        return Decided(verb=state.capitalize(), by=(), at=at)
    service = ReviewService(session)
    every = await service.reviews_of(task)
    surfaces = await service.surfaces(task, every)
    reviews = [
        r
        for r in every
        if r.decision == wanted and (stale or (not r.stale and r.digest == task.preview_digest))
    ]
    if stale:
        reviews = reviews[-1:]
    names = dict(
        (
            await session.execute(
                select(User.id, User.username).where(User.id.in_({r.actor_id for r in reviews}))
            )
        ).all()
    )
    by = []
    for review in reviews:
        if review.via_delegation_for is not None:
            continue
        name = names.get(review.actor_id, str(review.actor_id))
        if (surface := surfaces.get(review.id)) is not None:
            name += f" via {surface.label}"
        by.append(name)
    if state in APPROVED_STATES and not by:
        by = ["policy (auto-approved)"]
    if state not in ("APPROVED", "REJECTED", "DRAFT"):
        verb += f" (now {state.lower()})"
    comment = reviews[-1].comment if stale and reviews else ""
    when = reviews[-1].created_at if reviews else at
    return Decided(verb=verb, by=tuple(dict.fromkeys(by)), at=when, comment=comment)


def _task_of(subject: str) -> uuid.UUID | None:
    kind, _, ident = subject.partition(":")
    if kind != "task":
        return None
    try:
        return uuid.UUID(ident)
    except ValueError:
        return None
