"""The sweep of the three clocks: reminders, review timeouts, approval timeouts.

Run by every server process's periodic sweep (``api/app.py``). Each task is taken with
``FOR UPDATE SKIP LOCKED``, and what the sweep did to it (reminders sent, the next one's
time, the outcome) is written in the same transaction as the audit event saying so, so
two processes sweeping at once never send a reminder twice or decide a task twice.
The rules of what is due are pure (``timeouts.py``); this module only does it.

Outcomes are decisions of actor ``system``; each event names the rule that set the
outcome and the policy version that routed the task. ``approval:reminder`` and
``approval:escalated`` are a contract with the notifiers (Slack, e-mail): their data
names the open slots and the eligible reviewers still undecided, by user id.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.accounting import eligible_reviewers
from community_ade.approvals.policy import Requirements
from community_ade.approvals.reviews import ReviewService
from community_ade.approvals.service import (
    directory,
    flush_or_conflict,
    move,
    open_review_window,
    requirements_document,
    requirements_from_document,
)
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState, Trigger
from community_ade.approvals.timeouts import (
    Decision,
    Outcome,
    approval_timeout_outcome,
    due_reminder,
    review_timeout_outcome,
)
from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM
from community_ade.execution.dispatch import enqueue_after_commit
from community_ade.storage.models import (
    Agent,
    AuditEvent,
    Review,
    Task,
    TaskReviewGroup,
    utcnow,
)

_OPEN = [s.value for s in OPEN_FOR_REVIEW]


@dataclass
class SweepReport:
    """What one sweep did, by task id."""

    reminded: list[uuid.UUID] = field(default_factory=list)
    escalated: list[uuid.UUID] = field(default_factory=list)
    # Tasks the sweep moved to another state, with the outcome.
    decided: list[tuple[uuid.UUID, Outcome]] = field(default_factory=list)


class ClockSweep:
    def __init__(
        self, session: AsyncSession, *, now: Callable[[], datetime] = utcnow, limit: int = 500
    ) -> None:
        self.session = session
        self.now = now
        self.limit = limit
        self._directory: tuple[dict[str, set[str]], dict[str, set[str]]] | None = None

    async def run(self) -> SweepReport:
        """Everything due at ``now``: timeouts first, so a task whose deadline passed is
        decided rather than reminded."""
        now = self.now()
        report = SweepReport()
        for task in await self._due(
            Task.state.in_(_OPEN) & (Task.review_deadline < now),
            (Task.state == TaskState.APPROVED.value) & (Task.approval_deadline < now),
        ):
            if task.state == TaskState.APPROVED:
                await self._approval_timeout(task, now, report)
            else:
                await self._review_timeout(task, now, report)
        for task in await self._due(
            Task.state.in_(_OPEN) & (Task.next_reminder_at <= now) & (Task.review_deadline >= now)
        ):
            await self._remind(task, now, report)
        return report

    async def _due(self, *conditions: ColumnElement[bool]) -> Sequence[Task]:
        where = conditions[0]
        for c in conditions[1:]:
            where = where | c
        rows = await self.session.scalars(
            select(Task).where(where).limit(self.limit).with_for_update(skip_locked=True)
        )
        return list(rows)

    # -- reminders --------------------------------------------------------------------

    async def _remind(self, task: Task, now: datetime, report: SweepReport) -> None:
        requirements = requirements_from_document(task.requirements or {}, task.type)
        clocks = requirements.clocks
        assert task.review_deadline is not None
        opened = task.review_opened_at or task.submitted_at or now
        due = due_reminder(opened, task.review_deadline, clocks.reminders, task.reminders_sent, now)
        if due is None:  # nothing left in this window (e.g. the policy's rule changed)
            task.next_reminder_at = None
            await flush_or_conflict(self.session)
            return
        task.reminders_sent = due.sent
        task.next_reminder_at = due.next_at
        await flush_or_conflict(self.session)
        await audit.append(
            self.session,
            type="approval:reminder",
            actor=SYSTEM,
            subject=f"task:{task.id}",
            data={
                "rule": clocks.reminders_rule,
                "policy_version": requirements.policy_version,
                "fraction": clocks.reminders[due.index],
                "deadline": task.review_deadline.isoformat(),
                **await self._waiting_on(task, requirements),
            },
        )
        report.reminded.append(task.id)

    async def _waiting_on(self, task: Task, requirements: Requirements) -> dict[str, Any]:
        """The open slots and the eligible reviewers who have not yet voted, by id."""
        accounting = await ReviewService(self.session, now=self.now).accounting(task)
        open_slots = accounting.open_slots if accounting else requirements.slots()
        if self._directory is None:  # one read of the directory per sweep
            self._directory = await directory(self.session)
        groups, roles = self._directory
        owner = None
        if task.agent_id is not None:
            owner = await self.session.scalar(
                select(Agent.owner_id).where(Agent.id == task.agent_id)
            )
        eligible = eligible_reviewers(
            requirements,
            groups,
            roles,
            submitter=str(task.submitter_id),
            agent_owner=str(owner) if owner else None,
        )
        voted = set(
            map(
                str,
                await self.session.scalars(
                    select(Review.actor_id).where(
                        Review.task_id == task.id,
                        Review.stale.is_(False),
                        Review.digest == task.preview_digest,
                        Review.decision.in_(("approve", "reject")),
                    )
                ),
            )
        )
        people = {u for _, members in eligible.by_group for u in members} | set(eligible.any_slot)
        return {
            "open_slots": [s.label for s in open_slots],
            "reviewers": sorted(people - voted),
        }

    # -- review timeout ---------------------------------------------------------------

    async def _review_timeout(self, task: Task, now: datetime, report: SweepReport) -> None:
        requirements = requirements_from_document(task.requirements or {}, task.type)
        decision = review_timeout_outcome(
            requirements.clocks, requirements.risk, escalated=task.escalated_at is not None
        )
        data = _decision_data(decision, requirements.clocks.review_timeout_rule, requirements)
        if decision.outcome is Outcome.ESCALATE:
            await self._escalate(task, requirements, now, data)
            report.escalated.append(task.id)
            return
        task.decided_at = task.decided_at or now
        if decision.outcome is Outcome.AUTO_APPROVE:
            task.approval_deadline = requirements.approval_deadline(now)
            await move(
                self.session,
                task,
                Trigger.REVIEW_TIMEOUT_APPROVE,
                SYSTEM,
                "approval:approved",
                data,
            )
            if requirements.auto_apply:
                enqueue_after_commit(self.session, task)
        elif decision.outcome is Outcome.REJECT:
            await move(
                self.session, task, Trigger.REVIEW_TIMEOUT_REJECT, SYSTEM, "approval:rejected", data
            )
        else:
            await move(self.session, task, Trigger.REVIEW_EXPIRED, SYSTEM, "approval:expired", data)
        task.next_reminder_at = None
        report.decided.append((task.id, decision.outcome))

    async def _escalate(
        self, task: Task, requirements: Requirements, now: datetime, data: dict[str, Any]
    ) -> None:
        """The escalation group's members may now fill the open slots (``Requirements.
        escalated_to``, read by the eligibility rules), listed in the review queue by a
        review-group row; a new window, with its own reminders, runs from now."""
        rule = requirements.clocks.on_review_timeout
        assert rule.group is not None
        assert rule.ttl is not None
        escalated = dataclasses.replace(requirements, escalated_to=rule.group)
        task.requirements = requirements_document(escalated)
        task.escalated_at = now
        if rule.group not in {g.group for g in requirements.groups}:
            self.session.add(TaskReviewGroup(task_id=task.id, group_name=rule.group))
        open_review_window(task, escalated, now, now + rule.ttl)
        await flush_or_conflict(self.session)
        assert task.review_deadline is not None
        await audit.append(
            self.session,
            type="approval:escalated",
            actor=SYSTEM,
            subject=f"task:{task.id}",
            data={
                **data,
                "group": rule.group,
                "deadline": task.review_deadline.isoformat(),
                **await self._waiting_on(task, escalated),
            },
        )

    # -- approval timeout -------------------------------------------------------------

    async def _approval_timeout(self, task: Task, now: datetime, report: SweepReport) -> None:
        requirements = requirements_from_document(task.requirements or {}, task.type)
        decision = approval_timeout_outcome(
            requirements.clocks, re_reviewed=task.re_reviewed_at is not None
        )
        data = _decision_data(decision, requirements.clocks.approval_timeout_rule, requirements)
        if decision.outcome is Outcome.EXPIRE:
            task.decided_at = task.decided_at or now
            await move(
                self.session, task, Trigger.APPROVAL_EXPIRED, SYSTEM, "approval:expired", data
            )
            report.decided.append((task.id, decision.outcome))
            return
        # Back to review: the approvals are old, so every vote goes stale.
        await self.session.execute(
            update(Review).where(Review.task_id == task.id).values(stale=True)
        )
        task.re_reviewed_at = now
        task.approval_deadline = None
        task.decided_at = None
        open_review_window(task, requirements, now, now + requirements.review_ttl)
        await move(
            self.session, task, Trigger.APPROVAL_RE_REVIEW, SYSTEM, "approval:re_review", data
        )
        assert task.review_deadline is not None
        await audit.append(
            self.session,
            type="approval:requested",
            actor=SYSTEM,
            subject=f"task:{task.id}",
            data={"requirements": task.requirements, "deadline": task.review_deadline.isoformat()},
        )
        report.decided.append((task.id, decision.outcome))


async def latest_clock_decision(session: AsyncSession, task: Task) -> AuditEvent | None:
    """The latest decision the sweep took on ``task``'s timeouts (an event of actor
    ``system`` carrying an ``outcome``), for the approval views; None if it took none."""
    events = await audit.list_events(session, subject=f"task:{task.id}", limit=200)
    return next((e for e in events if e.actor_kind == "system" and "outcome" in e.data), None)


def _decision_data(
    decision: Decision, rule: str | None, requirements: Requirements
) -> dict[str, Any]:
    return {
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "rule": rule,
        "policy_version": requirements.policy_version,
    }
