"""The e-mail outbox and sender (``EmailSender.run_once``) on real SQLite and
PostgreSQL and a real SMTP server, with a clock the test moves: retries with backoff
while the SMTP server is down, never twice from two senders, preferences (digest, quiet
hours, channel off), nothing about a task that was decided meanwhile, and reminders to
those still undecided only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from smtputil import SmtpServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_reviews import APPROVE, decide, set_policy, submitted_task, user

from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM
from community_ade.auth import service as auth
from community_ade.auth.principal import Principal
from community_ade.notifications.email_sender import EmailSender
from community_ade.notifications.preference_store import save_preferences
from community_ade.notifications.preferences import (
    Channel,
    Delivery,
    NotificationPreferences,
    QuietHours,
)
from community_ade.settings import Settings
from community_ade.storage.models import EmailOutbox, Task

START = datetime(2026, 3, 10, 10, 20, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.conf").write_text("debug = false\n")
    return root


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.stop()


def sender(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, smtp: SmtpServer, clock: Clock
) -> EmailSender:
    settings = Settings(
        data_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_security="none",
        smtp_timeout_seconds=5,
        email_backoff_base_seconds=60,
        email_backoff_cap_seconds=120,
        email_max_attempts=3,
    )
    return EmailSender(settings, sessions, now=clock)


async def reviewer(sessions: async_sessionmaker[AsyncSession], name: str) -> Principal:
    person = await user(sessions, "reviewer")
    async with sessions.begin() as session:
        await auth.set_email(session, person.id, f"{name}@example.org")
    return person


async def rows_of(sessions: async_sessionmaker[AsyncSession], task: Task) -> list[EmailOutbox]:
    async with sessions() as session:
        return list(
            await session.scalars(select(EmailOutbox).where(EmailOutbox.task_id == task.id))
        )


async def test_a_down_smtp_server_is_retried_with_backoff_then_given_up(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workspace: Path, smtp: SmtpServer
) -> None:
    clock = Clock()
    mail = sender(sessions, tmp_path, smtp, clock)
    await mail.run_once()  # the cursor starts here (a bare schema has no migration row)
    alice = await user(sessions, "submitter")
    await reviewer(sessions, "bob")
    task = await submitted_task(sessions, workspace, alice)

    assert await mail.run_once() == 0  # nobody listens on the port yet
    [row] = await rows_of(sessions, task)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.last_error
    assert START + timedelta(seconds=30) <= row.not_before <= START + timedelta(seconds=60)

    smtp.start()
    assert await mail.run_once() == 0  # not due yet: no retry before the backoff
    clock.now += timedelta(seconds=61)
    assert await mail.run_once() == 1
    [received] = await smtp.mailbox.wait_for(1)
    assert received.recipients == ["bob@example.org"]
    [row] = await rows_of(sessions, task)
    assert (row.state, row.attempts) == ("sent", 1)

    # A server that keeps failing: given up after ADE_EMAIL_MAX_ATTEMPTS.
    smtp.stop()
    second = await submitted_task(sessions, workspace, alice)
    for _ in range(3):
        await mail.run_once()
        clock.now += timedelta(seconds=121)
    [row] = await rows_of(sessions, second)
    assert (row.state, row.attempts) == ("failed", 3)


async def test_a_permanent_refusal_fails_at_once_and_spares_the_others(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workspace: Path, smtp: SmtpServer
) -> None:
    smtp.mailbox.refused.add("gone@example.org")
    smtp.start()
    clock = Clock()
    mail = sender(sessions, tmp_path, smtp, clock)
    await mail.run_once()
    alice = await user(sessions, "submitter")
    gone, bob = await reviewer(sessions, "gone"), await reviewer(sessions, "bob")
    task = await submitted_task(sessions, workspace, alice)
    assert await mail.run_once() == 1
    [received] = await smtp.mailbox.wait_for(1)
    assert received.recipients == ["bob@example.org"]
    rows = {r.user_id: r for r in await rows_of(sessions, task)}
    assert (rows[bob.id].state, rows[gone.id].state, rows[gone.id].attempts) == (
        "sent",
        "failed",
        1,
    )
    assert "550" in (rows[gone.id].last_error or "")


async def test_two_senders_send_each_message_once(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workspace: Path, smtp: SmtpServer
) -> None:
    smtp.start()
    clock = Clock()
    first, second = (sender(sessions, tmp_path, smtp, clock) for _ in range(2))
    await first.run_once()
    alice = await user(sessions, "submitter")
    for name in ("bob", "carol", "dave"):
        await reviewer(sessions, name)
    tasks = [await submitted_task(sessions, workspace, alice) for _ in range(4)]
    for _ in range(3):
        await asyncio.gather(first.run_once(), second.run_once())
    await asyncio.sleep(0.2)
    received = smtp.mailbox.received
    assert len(received) == 12  # 4 tasks × 3 reviewers, each once
    told = sorted((m.recipients[0], _task_of(m.message)) for m in received)
    assert told == sorted(
        (f"{n}@example.org", str(t.id)) for n in ("bob", "carol", "dave") for t in tasks
    )
    for task in tasks:
        assert sorted(r.state for r in await rows_of(sessions, task)) == ["sent"] * 3


def _task_of(message: Any) -> str:
    text = message.get_body(("plain",)).get_content()
    return text.split("/approvals/")[1].split()[0]


async def test_preferences_decide_when_and_how_each_person_hears(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workspace: Path, smtp: SmtpServer
) -> None:
    smtp.start()
    clock = Clock()
    mail = sender(sessions, tmp_path, smtp, clock)
    await mail.run_once()
    alice = await user(sessions, "submitter")
    bob, carol, dave, erin = [await reviewer(sessions, n) for n in ("bob", "carol", "dave", "erin")]
    async with sessions.begin() as session:
        await save_preferences(session, carol.id, NotificationPreferences(delivery=Delivery.HOURLY))
        await save_preferences(
            session,
            dave.id,
            NotificationPreferences(quiet_hours=QuietHours(start=time(10), end=time(11))),
        )
        await save_preferences(
            session, erin.id, NotificationPreferences(channels=frozenset({Channel.SLACK}))
        )
    first = await submitted_task(sessions, workspace, alice)
    second = await submitted_task(sessions, workspace, alice)

    await mail.run_once()
    now = await smtp.mailbox.wait_for(2)
    assert sorted(r for m in now for r in m.recipients) == ["bob@example.org"] * 2
    # Dave's quiet hours end at 11:00: the two messages wait; a task decided meanwhile
    # is not worth telling him about.
    await decide(sessions, bob, first, APPROVE)
    clock.now = START.replace(hour=11)
    await mail.run_once()
    received = await smtp.mailbox.wait_for(4)
    await asyncio.sleep(0.1)
    assert len(smtp.mailbox.received) == 4
    later = received[2:]
    by = {m.recipients[0]: m for m in later}
    assert set(by) == {"dave@example.org", "carol@example.org"}
    assert by["dave@example.org"].message["Subject"].startswith("[ADE] Review:")
    # Carol's hourly digest: the one task still open, in one message.
    assert str(second.id) in by["carol@example.org"].message.get_body(("plain",)).get_content()
    assert str(first.id) not in by["carol@example.org"].message.get_body(("plain",)).get_content()
    states = {(r.user_id, r.task_id): r.state for r in await rows_of(sessions, first)}
    assert states[(dave.id, first.id)] == "skipped"
    assert states[(carol.id, first.id)] == "skipped"
    assert (erin.id, first.id) not in states  # her e-mail is off: no row at all


async def test_a_digest_gathers_several_tasks(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workspace: Path, smtp: SmtpServer
) -> None:
    smtp.start()
    clock = Clock()
    mail = sender(sessions, tmp_path, smtp, clock)
    await mail.run_once()
    alice = await user(sessions, "submitter")
    carol = await reviewer(sessions, "carol")
    async with sessions.begin() as session:
        await save_preferences(session, carol.id, NotificationPreferences(delivery=Delivery.HOURLY))
    tasks = [await submitted_task(sessions, workspace, alice) for _ in range(3)]
    await mail.run_once()
    assert smtp.mailbox.received == []
    clock.now = START.replace(hour=11)
    assert await mail.run_once() == 1
    [digest] = await smtp.mailbox.wait_for(1)
    assert digest.message["Subject"] == "[ADE] 3 tasks wait on your review"
    text = digest.message.get_body(("plain",)).get_content()
    assert all(f"/approvals/{t.id}" in text for t in tasks)
    assert text.count("/email/decide?t=") == 3  # one decision link per task


async def test_reminders_go_to_those_still_undecided(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, workspace: Path, smtp: SmtpServer
) -> None:
    smtp.start()
    clock = Clock()
    mail = sender(sessions, tmp_path, smtp, clock)
    await mail.run_once()
    await set_policy(sessions, {"rules": [{"name": "two", "task_types": ["*"], "min_total": 2}]})
    alice = await user(sessions, "submitter")
    bob = await reviewer(sessions, "bob")
    await reviewer(sessions, "carol")
    task = await submitted_task(sessions, workspace, alice)
    await mail.run_once()
    await smtp.mailbox.wait_for(2)
    await decide(sessions, bob, task, APPROVE)
    async with sessions.begin() as session:
        await audit.append(
            session, type="approval:reminder", actor=SYSTEM, subject=f"task:{task.id}", data={}
        )
    assert await mail.run_once() == 1
    received = await smtp.mailbox.wait_for(3)
    reminder = received[2]
    assert reminder.recipients == ["carol@example.org"]
    assert "Reminder" in reminder.message.get_body(("plain",)).get_content()
    kinds = sorted(r.kind for r in await rows_of(sessions, task))
    assert kinds == ["reminder", "requested", "requested"]
