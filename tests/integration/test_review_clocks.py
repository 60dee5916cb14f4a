"""The three clocks on real SQLite and PostgreSQL: reminders (once per fraction, also with
two sweeps at once), and each timeout outcome — reject, auto-approve under its bound,
escalate once, re-review once — recorded as a decision of actor ``system`` naming the
rule and the policy version. The sweep is driven with an explicit ``now``: no sleeping."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_reviews import decide, events, set_policy, state, submitted_task, user

from community_ade.approvals.reviews import ReviewAction, ReviewService
from community_ade.approvals.service import TaskService
from community_ade.approvals.sweep import ClockSweep, SweepReport
from community_ade.approvals.timeouts import Outcome
from community_ade.auth.principal import Principal
from community_ade.errors import NotEligible
from community_ade.execution.executors.base import PlanContext
from community_ade.storage.models import Review, Task

APPROVE = ReviewAction.APPROVE
TTL = 100  # seconds: only ever reached through the sweep's ``now``, never waited for


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.conf").write_text("debug = false\n")
    return root


def policy(**rule: Any) -> dict[str, Any]:
    """One rule for every task, needing one approval from ``owners``."""
    return {
        "rules": [
            {
                "name": "config",
                "groups": [{"group": "owners", "count": 1}],
                "review_ttl_seconds": TTL,
                "approval_ttl_seconds": TTL,
                **rule,
            }
        ],
        "apply": {"*": "manual"},  # an approved task waits, so its approval clock runs
    }


async def fresh(sessions: async_sessionmaker[AsyncSession], task: Task) -> Task:
    async with sessions() as session:
        row = await session.get(Task, task.id)
        assert row is not None
        return row


async def sweep(sessions: async_sessionmaker[AsyncSession], at: datetime) -> SweepReport:
    async with sessions.begin() as session:
        return await ClockSweep(session, now=lambda: at).run()


def after(task: Task, seconds: float) -> datetime:
    assert task.review_opened_at is not None
    return task.review_opened_at + timedelta(seconds=seconds)


async def setup(
    sessions: async_sessionmaker[AsyncSession], workspace: Path, **rule: Any
) -> tuple[Principal, Principal, Task]:
    alice = await user(sessions, "submitter", "owners")  # a member, but never her own reviewer
    bob = await user(sessions, "reviewer", "owners")
    await set_policy(sessions, policy(**rule))
    task = await fresh(sessions, await submitted_task(sessions, workspace, alice))
    return alice, bob, task


async def test_each_reminder_is_sent_once_naming_who_is_still_undecided(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice, bob, task = await setup(
        sessions, workspace, reminders=[0.5, 0.9], groups=[{"group": "owners", "count": 2}]
    )
    carol = await user(sessions, "reviewer", "owners")
    assert task.next_reminder_at == after(task, 50)
    assert (await sweep(sessions, after(task, 49))).reminded == []
    await decide(sessions, bob, task, APPROVE)
    assert (await sweep(sessions, after(task, 50))).reminded == [task.id]
    assert (await sweep(sessions, after(task, 60))).reminded == []  # the same fraction: done
    [first] = await events(sessions, task, "approval:reminder")
    assert first.actor_kind == "system"
    assert first.data["fraction"] == 0.5
    assert first.data["rule"] == "config"
    assert first.data["deadline"] == (await fresh(sessions, task)).review_deadline.isoformat()
    assert first.data["open_slots"] == ["owners #2"]
    # bob voted, alice submitted: only carol is still waited on
    assert first.data["reviewers"] == [str(carol.id)]
    assert (await sweep(sessions, after(task, 95))).reminded == [task.id]
    reminders = await events(sessions, task, "approval:reminder")
    assert [e.data["fraction"] for e in reminders] == [0.5, 0.9]
    assert (await fresh(sessions, task)).next_reminder_at is None
    assert alice.id not in reminders[1].data["reviewers"]


async def test_a_late_sweep_sends_only_the_latest_reminder_due(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    _, _, task = await setup(sessions, workspace, reminders=[0.2, 0.5, 0.9])
    await sweep(sessions, after(task, 60))
    assert [e.data["fraction"] for e in await events(sessions, task, "approval:reminder")] == [0.5]
    await sweep(sessions, after(task, 91))
    reminders = await events(sessions, task, "approval:reminder")
    assert [e.data["fraction"] for e in reminders] == [0.5, 0.9]


# SQLite has one writer: concurrent sweeps are PostgreSQL's case.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_processes_sweeping_at_once_send_a_reminder_once(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    _, _, task = await setup(sessions, workspace, reminders=[0.5])
    reports = await asyncio.gather(*(sweep(sessions, after(task, 51)) for _ in range(4)))
    assert sum(len(r.reminded) for r in reports) == 1
    assert len(await events(sessions, task, "approval:reminder")) == 1


async def test_review_timeout_reject_is_a_system_decision(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    _, _, task = await setup(sessions, workspace, on_review_timeout={"action": "reject"})
    assert (await sweep(sessions, after(task, TTL - 1))).decided == []
    report = await sweep(sessions, after(task, TTL + 1))
    assert report.decided == [(task.id, Outcome.REJECT)]
    assert await state(sessions, task) == "REJECTED"
    [event] = await events(sessions, task, "approval:rejected")
    assert event.actor_kind == "system"
    assert event.data["trigger"] == "review_timeout_reject"
    assert event.data["rule"] == "config"
    assert event.data["policy_version"] == task.policy_version


@pytest.mark.parametrize(
    ("bound", "outcome", "end"), [(90, "auto_approve", "APPROVED"), (1, "expire", "EXPIRED")]
)
async def test_review_timeout_auto_approves_only_below_the_bound(
    sessions: async_sessionmaker[AsyncSession],
    workspace: Path,
    bound: float,
    outcome: str,
    end: str,
) -> None:
    rule = {"on_review_timeout": {"action": "auto_approve", "risk_below": bound}}
    _, _, task = await setup(sessions, workspace, **rule)
    assert task.risk_score is not None
    assert 1 <= task.risk_score < 90
    report = await sweep(sessions, after(task, TTL + 1))
    assert report.decided == [(task.id, Outcome(outcome))]
    row = await fresh(sessions, task)
    assert row.state == end
    kind = "approval:approved" if end == "APPROVED" else "approval:expired"
    [event] = await events(sessions, task, kind)
    assert (event.actor_kind, event.data["outcome"], event.data["rule"]) == (
        "system",
        outcome,
        "config",
    )
    if end == "APPROVED":  # its approval clock now runs
        assert row.approval_deadline == after(task, TTL + 1) + timedelta(seconds=TTL)


async def test_escalation_opens_the_slot_to_the_group_once(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    rule = {
        "reminders": [0.5],
        "on_review_timeout": {"action": "escalate", "group": "leads", "review_ttl_seconds": 40},
    }
    _, _, task = await setup(sessions, workspace, **rule)
    dave = await user(sessions, "reviewer", "leads")
    with pytest.raises(NotEligible):
        await decide(sessions, dave, task, APPROVE)
    at = after(task, TTL + 1)
    report = await sweep(sessions, at)
    assert report.escalated == [task.id]
    assert report.decided == []
    row = await fresh(sessions, task)
    assert row.state == "SUBMITTED"
    assert row.review_deadline == at + timedelta(seconds=40)
    assert row.next_reminder_at == at + timedelta(seconds=20)  # the new window's reminders
    [event] = await events(sessions, task, "approval:escalated")
    assert event.actor_kind == "system"
    assert event.data["group"] == "leads"
    assert event.data["deadline"] == row.review_deadline.isoformat()
    assert (event.data["rule"], event.data["policy_version"]) == ("config", task.policy_version)
    assert str(dave.id) in event.data["reviewers"]
    # The review queue now lists it for dave, and his approval fills the open slot.
    async with sessions() as session:
        queue, _ = await ReviewService(session).open_for_review(
            dave, awaiting_me=True, page=1, limit=10
        )
    assert [t.id for t in queue] == [task.id]
    outcome = await decide(sessions, dave, task, APPROVE)
    assert outcome.accounting.satisfied
    assert await state(sessions, task) == "APPROVED"


async def test_an_escalated_review_timing_out_again_expires(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    rule = {"on_review_timeout": {"action": "escalate", "group": "leads", "review_ttl_seconds": 40}}
    _, _, task = await setup(sessions, workspace, **rule)
    await user(sessions, "reviewer", "leads")
    first = after(task, TTL + 1)
    await sweep(sessions, first)
    report = await sweep(sessions, first + timedelta(seconds=41))
    assert report.decided == [(task.id, Outcome.EXPIRE)]
    assert report.escalated == []
    assert await state(sessions, task) == "EXPIRED"
    assert len(await events(sessions, task, "approval:escalated")) == 1


async def test_approval_timeout_re_review_sends_the_task_back_once(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    _, bob, task = await setup(sessions, workspace, on_approval_timeout="re_review")
    await decide(sessions, bob, task, APPROVE)
    approved = await fresh(sessions, task)
    assert approved.state == "APPROVED"
    assert approved.approval_deadline is not None
    at = approved.approval_deadline + timedelta(seconds=1)
    assert (await sweep(sessions, at)).decided == [(task.id, Outcome.RE_REVIEW)]
    row = await fresh(sessions, task)
    assert (row.state, row.approval_deadline) == ("SUBMITTED", None)
    assert row.review_deadline == at + timedelta(seconds=TTL)
    [event] = await events(sessions, task, "approval:re_review")
    assert (event.actor_kind, event.data["rule"], event.data["trigger"]) == (
        "system",
        "config",
        "approval_re_review",
    )
    async with sessions() as session:
        stale = await session.scalars(select(Review.stale).where(Review.task_id == task.id))
        assert all(stale)
    # bob approves again; the second approval timeout expires it.
    await decide(sessions, bob, task, APPROVE)
    again = await fresh(sessions, task)
    assert again.approval_deadline is not None
    report = await sweep(sessions, again.approval_deadline + timedelta(seconds=1))
    assert report.decided == [(task.id, Outcome.EXPIRE)]
    assert await state(sessions, task) == "EXPIRED"


async def test_without_clock_rules_a_timeout_still_expires(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    _, _, task = await setup(sessions, workspace)
    assert task.next_reminder_at is None
    report = await sweep(sessions, after(task, TTL + 1))
    assert report.decided == [(task.id, Outcome.EXPIRE)]
    [event] = await events(sessions, task, "approval:expired")
    assert (event.data["trigger"], event.data["rule"]) == ("review_expired", None)


async def test_a_new_round_after_requested_changes_may_escalate_again(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    rule = {"on_review_timeout": {"action": "escalate", "group": "leads", "review_ttl_seconds": 40}}
    alice, _, task = await setup(sessions, workspace, **rule)
    dave = await user(sessions, "reviewer", "leads")
    await sweep(sessions, after(task, TTL + 1))
    await decide(sessions, dave, task, ReviewAction.REQUEST_CHANGES)
    async with sessions.begin() as session:
        service = TaskService(session, plan_context=PlanContext(allowed_roots=(workspace,)))
        await service.submit(alice, task.id)
    row = await fresh(sessions, task)
    assert (row.state, row.escalated_at) == ("SUBMITTED", None)
    assert row.requirements is not None
    assert row.requirements["escalated_to"] is None
    with pytest.raises(NotEligible):  # the escalation was for the old round
        await decide(sessions, dave, task, APPROVE)
    assert (await sweep(sessions, after(row, TTL + 1))).escalated == [task.id]
