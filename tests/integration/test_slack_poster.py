"""The Slack poster on real SQLite and PostgreSQL against a local recorder of Slack's
Web API: routed channels and DMs, two posters at once and a restart never post twice,
a reminder replies in thread, a decision updates every message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from slackrec import SlackRecorder
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_reviews import APPROVE, decide, set_policy, submitted_task, user

from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM
from community_ade.auth import service as auth
from community_ade.integrations.slack import config
from community_ade.integrations.slack.poster import SlackPoster
from community_ade.notifications.preference_store import save_preferences
from community_ade.notifications.preferences import Channel, NotificationPreferences
from community_ade.secrets.keys import SecretCipher
from community_ade.settings import Settings
from community_ade.storage.models import SlackJob, utcnow


@pytest.fixture
async def recorder() -> AsyncIterator[SlackRecorder]:
    rec = SlackRecorder()
    await rec.start()
    yield rec
    await rec.stop()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.conf").write_text("debug = false\n")
    return root


async def configure(session: AsyncSession, settings: Settings, *, dm_reviewers: bool) -> None:
    """The poster's Slack configuration: the recorder's tokens, channel C0DEFAULT."""
    await config.configure(
        session,
        SecretCipher.from_settings(settings),
        bot_token="xoxb-poster-0000000000",
        signing_secret="postersigningsecret000",
        default_channel="C0DEFAULT",
        dm_reviewers=dm_reviewers,
        actor=SYSTEM,
        user_id=None,
    )


async def drain(*posters: SlackPoster) -> None:
    """Run the posters side by side until none finds work."""
    for _ in range(50):
        busy = await asyncio.gather(*(p.run_once() for p in posters))
        if not any(busy):
            return
    raise AssertionError("the posters never settled")


def has_buttons(blocks: object) -> bool:
    parsed = json.loads(blocks) if isinstance(blocks, str) else blocks
    assert isinstance(parsed, list)
    return any(b["type"] == "actions" for b in parsed)


async def test_post_once_remind_in_thread_and_update_on_decision(
    sessions: async_sessionmaker[AsyncSession],
    workspace: Path,
    tmp_path: Path,
    recorder: SlackRecorder,
) -> None:
    settings = Settings(data_dir=tmp_path, slack_api_url=recorder.url)
    await set_policy(
        sessions,
        {"rules": [{"name": "owners", "task_types": ["files.*"], "groups": [{"group": "dba"}]}]},
    )
    alice = await user(sessions, "submitter")
    carol = await user(sessions, "reviewer", "dba")
    await user(sessions, "reviewer", "dba")  # no e-mail, no link: no DM
    recorder.members["UCAROL"] = "carol@example.com"
    async with sessions.begin() as session:
        await auth.set_email(session, carol.id, "carol@example.com")
        await configure(session, settings, dm_reviewers=True)
        await config.set_channel(session, "group", "dba", "C0DBA", actor=SYSTEM)

    task = await submitted_task(sessions, workspace, alice)
    await drain(SlackPoster(sessions, settings), SlackPoster(sessions, settings))
    posts = recorder.named("chat.postMessage")
    assert sorted(p.params["channel"] for p in posts) == ["C0DBA", "UCAROL"]
    assert all(has_buttons(p.params["blocks"]) for p in posts)
    assert recorder.named("users.lookupByEmail")[0].params["email"] == "carol@example.com"

    # A restarted process finds nothing left to post.
    await drain(SlackPoster(sessions, settings))
    assert len(recorder.named("chat.postMessage")) == 2

    async with sessions.begin() as session:
        await audit.append(
            session, type="approval:reminder", actor=SYSTEM, subject=f"task:{task.id}", data={}
        )
    await drain(SlackPoster(sessions, settings))
    replies = [p for p in recorder.named("chat.postMessage") if "thread_ts" in p.params]
    assert sorted(r.params["channel"] for r in replies) == ["C0DBA", "DCAROL"]
    assert all("Reminder" in r.params["text"] for r in replies)
    assert len(recorder.named("chat.postMessage")) == 4  # nothing posted anew

    await decide(sessions, carol, task, APPROVE)
    before = len(recorder.named("chat.update"))
    await drain(SlackPoster(sessions, settings))
    updates = recorder.named("chat.update")[before:]
    assert sorted(u.params["channel"] for u in updates) == ["C0DBA", "DCAROL"]
    assert not any(has_buttons(u.params["blocks"]) for u in updates)
    assert all("Approved" in json.dumps(u.params["blocks"]) for u in updates)


async def test_no_dm_for_a_reviewer_who_turned_slack_off(
    sessions: async_sessionmaker[AsyncSession],
    workspace: Path,
    tmp_path: Path,
    recorder: SlackRecorder,
) -> None:
    """The channel message goes out; the DM follows the reviewer's preferences."""
    settings = Settings(data_dir=tmp_path, slack_api_url=recorder.url)
    alice = await user(sessions, "submitter")
    carol = await user(sessions, "reviewer")
    dave = await user(sessions, "reviewer")
    recorder.members["UCAROL"] = "carol@example.com"
    recorder.members["UDAVE"] = "dave@example.com"
    async with sessions.begin() as session:
        await auth.set_email(session, carol.id, "carol@example.com")
        await auth.set_email(session, dave.id, "dave@example.com")
        await save_preferences(
            session, dave.id, NotificationPreferences(channels=[Channel.EMAIL, Channel.DASHBOARD])
        )
        await configure(session, settings, dm_reviewers=True)
    await submitted_task(sessions, workspace, alice)
    await drain(SlackPoster(sessions, settings))
    posts = recorder.named("chat.postMessage")
    assert sorted(p.params["channel"] for p in posts) == ["C0DEFAULT", "UCAROL"]


async def test_a_job_of_a_process_that_died_is_taken_over_after_its_lease(
    sessions: async_sessionmaker[AsyncSession],
    workspace: Path,
    tmp_path: Path,
    recorder: SlackRecorder,
) -> None:
    settings = Settings(data_dir=tmp_path, slack_api_url=recorder.url)
    alice = await user(sessions, "submitter")
    await user(sessions, "reviewer")
    async with sessions.begin() as session:
        await configure(session, settings, dm_reviewers=False)
    await submitted_task(sessions, workspace, alice)
    dying = SlackPoster(sessions, settings)
    assert await dying.scan()
    [claimed] = await dying.claim()  # … and the process dies before posting
    survivor = SlackPoster(sessions, settings)
    await drain(survivor)
    assert recorder.named("chat.postMessage") == []  # still leased to the dead process
    async with sessions.begin() as session:
        await session.execute(
            update(SlackJob).values(claimed_until=utcnow() - timedelta(seconds=1))
        )
    await drain(survivor)
    [posted] = recorder.named("chat.postMessage")
    assert posted.params["channel"] == "C0DEFAULT"
    async with sessions() as session:
        assert await session.get(SlackJob, claimed.task_id) is None
