"""What every notification surface shows about a task that waits on review.

Slack messages, e-mails and reminders all tell reviewers the same things: what the task
is, who sent it, how risky it is and why, which approvals it still needs and who may give
each, the preview digest a decision binds to, an excerpt of the change and where to
decide. ``gather`` reads them once, from the same sources the dashboard's approval view
uses (the review engine's accounting, the routing's eligible reviewers), so a surface
never derives eligibility on its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.accounting import Accounting, eligible_reviewers
from community_ade.approvals.reviews import ReviewService
from community_ade.approvals.risk import WEIGHTS
from community_ade.approvals.service import directory, requirements_from_document
from community_ade.errors import NotFound
from community_ade.storage.models import Agent, Preview, Task, User

RISK_INPUTS = ("criticality", "magnitude", "blast_radius", "failure_rate")
# A notification shows the start of the change; the dashboard shows all of it.
EXCERPT_LINES = 40
EXCERPT_CHARS = 2500


@dataclass(frozen=True)
class RiskInput:
    """One input of the risk score: its value (0-100), weight and the points it adds."""

    name: str
    value: float
    weight: float

    @property
    def points(self) -> float:
        return self.value * self.weight


def risk_breakdown(inputs: Mapping[str, Any] | None) -> tuple[RiskInput, ...]:
    """The risk inputs a task stored at routing, weighted; empty before routing."""
    if not inputs:
        return ()
    return tuple(
        RiskInput(name.replace("_", " "), float(inputs.get(name, 0.0)), float(weight))
        for name, weight in zip(RISK_INPUTS, WEIGHTS, strict=True)
    )


@dataclass(frozen=True)
class Person:
    id: str
    name: str  # the username
    display_name: str
    email: str | None


@dataclass(frozen=True)
class SlotView:
    """One approval the task needs: who filled it, or (open) who may still fill it."""

    label: str
    group: str | None
    filled_by: str | None  # the username counted in it
    eligible: tuple[Person, ...]  # for an open slot: who may fill it and has not voted


@dataclass(frozen=True)
class Excerpt:
    format: str
    text: str
    truncated: bool
    lines_changed: int


def excerpt(
    content: str, *, lines: int = EXCERPT_LINES, chars: int = EXCERPT_CHARS
) -> tuple[str, bool]:
    """The first ``lines`` lines of ``content``, cut at ``chars`` characters, and whether
    anything was left out."""
    every = content.splitlines()
    text = "\n".join(every[:lines])
    return text[:chars], len(every) > lines or len(text) > chars


@dataclass(frozen=True)
class ReviewRequest:
    task_id: uuid.UUID
    title: str
    task_type: str
    state: str
    submitter: str  # username
    agent: str | None  # agent name, when an agent submitted it
    risk: float | None
    risk_level: str | None
    risk_inputs: tuple[RiskInput, ...]
    slots: tuple[SlotView, ...]
    blocked_by: tuple[str, ...]
    digest: str | None
    preview: Excerpt | None
    review_deadline: datetime | None
    link: str

    @property
    def open_slots(self) -> tuple[SlotView, ...]:
        return tuple(s for s in self.slots if s.filled_by is None)

    @property
    def reviewers(self) -> tuple[Person, ...]:
        """Everyone who may fill an open slot, once each: whom to tell."""
        seen: dict[str, Person] = {}
        for slot in self.open_slots:
            for person in slot.eligible:
                seen.setdefault(person.id, person)
        return tuple(seen.values())


def task_link(public_url: str, task_id: uuid.UUID) -> str:
    """The dashboard's approval view of a task."""
    return f"{public_url.rstrip('/')}/approvals/{task_id}"


async def gather(session: AsyncSession, task_id: uuid.UUID, *, public_url: str) -> ReviewRequest:
    """Everything a notification about ``task_id`` shows, read in ``session``."""
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound(f"no task {task_id}")
    reviews = ReviewService(session)
    accounting = await reviews.accounting(task)
    submitter, owner = await reviews.parties(task)
    agent = await session.get(Agent, task.agent_id) if task.agent_id else None
    slots = await _slots(session, task, accounting, submitter, owner)
    people = await _people(session, [submitter, *(s.filled_by or "" for s in slots)])
    preview = None
    if task.preview_digest:
        row = await session.scalar(
            select(Preview).where(Preview.task_id == task.id, Preview.digest == task.preview_digest)
        )
        if row is not None:
            text, truncated = excerpt(row.content)
            preview = Excerpt(row.format, text, truncated, row.lines_changed)
    inputs = task.risk_inputs or {}
    return ReviewRequest(
        task_id=task.id,
        title=task.title,
        task_type=task.type,
        state=task.state,
        submitter=people[submitter].name if submitter in people else submitter,
        agent=agent.name if agent is not None else None,
        risk=task.risk_score,
        risk_level=inputs.get("level"),
        risk_inputs=risk_breakdown(inputs),
        slots=tuple(
            SlotView(
                s.label,
                s.group,
                people[s.filled_by].name if s.filled_by in people else s.filled_by,
                s.eligible,
            )
            for s in slots
        ),
        blocked_by=accounting.blocked_by if accounting else (),
        digest=task.preview_digest,
        preview=preview,
        review_deadline=task.review_deadline,
        link=task_link(public_url, task.id),
    )


async def _slots(
    session: AsyncSession,
    task: Task,
    accounting: Accounting | None,
    submitter: str,
    owner: str | None,
) -> list[SlotView]:
    """The requirement slots, each filled one naming its user id (the caller names it),
    each open one with its eligible reviewers — the routing's own ``eligible_reviewers``
    over the directory, less those who already have a vote on this preview."""
    if accounting is None or not task.requirements:
        return []
    requirements = requirements_from_document(task.requirements, task.type)
    groups, roles = await directory(session)
    eligible = eligible_reviewers(
        requirements, groups, roles, submitter=submitter, agent_owner=owner
    )
    voted = {f.vote.actor for f in accounting.fills} | {v.actor for v in accounting.rejections}
    by_group = dict(eligible.by_group)
    wanted: set[str] = set(eligible.any_slot)
    for members in by_group.values():
        wanted.update(members)
    people = await _people(session, wanted - voted)

    def who(ids: Iterable[str]) -> tuple[Person, ...]:
        return tuple(people[i] for i in ids if i in people)

    views = [SlotView(f.slot.label, f.slot.group, f.counted_as, ()) for f in accounting.fills]
    views += [
        SlotView(
            s.label,
            s.group,
            None,
            who(by_group.get(s.group, ()) if s.group else eligible.any_slot),
        )
        for s in accounting.open_slots
    ]
    return views


async def _people(session: AsyncSession, ids: Iterable[str]) -> dict[str, Person]:
    """Users by id (str), sorted by username; ids that are not users are left out."""
    wanted = set()
    for value in ids:
        try:
            wanted.add(uuid.UUID(value))
        except ValueError:
            continue
    if not wanted:
        return {}
    rows = await session.execute(
        select(User.id, User.username, User.display_name, User.email)
        .where(User.id.in_(wanted))
        .order_by(User.username)
    )
    return {str(i): Person(str(i), name, shown, email) for i, name, shown, email in rows}
