"""Review decisions over storage: approve, reject, request changes, delegate.

A decision names the preview digest its reviewer saw; the engine checks it, enforces
separation of duties and eligibility, records the vote (plus one per delegator whose
delegation it triggers, depth 1), accounts every current vote against the requirements
and moves the task when they are met or vetoed — all in the caller's transaction, with
the task row locked, so concurrent decisions serialise into one outcome.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.accounting import Accounting, Decision, Vote, account
from community_ade.approvals.delegation import Delegation, applicable_delegations
from community_ade.approvals.policy import (
    ActorKind,
    Requirements,
    check_can_vote,
    check_eligible,
    check_fresh_auth,
    is_eligible,
    task_type_matches,
)
from community_ade.approvals.risk import ResourceRef, ResourceType, parse_resource_types
from community_ade.approvals.service import (
    actor_of,
    directory,
    move,
    requirements_from_document,
)
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState, Trigger
from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM, Actor
from community_ade.auth.principal import ROLE_PERMISSIONS, Permission, Principal, Role, require
from community_ade.errors import AlreadyDecided, InvalidInput, NotFound, StalePreview
from community_ade.execution.dispatch import enqueue_after_commit
from community_ade.execution.executors import load_executors
from community_ade.storage.json_sql import HasMemberWith
from community_ade.storage.models import (
    Agent,
    AuditEvent,
    Review,
    Task,
    TaskReviewGroup,
    User,
    utcnow,
)
from community_ade.storage.models import (
    Delegation as DelegationRow,
)

# The review queue reports totals up to this many, then "more than COUNT_CAP".
COUNT_CAP = 1000


class ReviewAction(StrEnum):
    """The brief's review actions; only approve and reject are votes."""

    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"
    DELEGATE = "delegate"


class DecisionSurface(StrEnum):
    """Where a reviewer decided. Recorded in the decision's audit event, so its receipt
    shows it too."""

    API = "api"
    DASHBOARD = "dashboard"
    EMAIL = "email"
    SLACK = "slack"
    DEMO = "demo"  # seeded by ``ade serve --demo``, decided by no one in person

    @property
    def label(self) -> str:
        """How people read it: "bob approved (e-mail)", "… via Slack"."""
        return _SURFACE_LABELS[self]


_SURFACE_LABELS = {
    DecisionSurface.API: "API",
    DecisionSurface.DASHBOARD: "dashboard",
    DecisionSurface.EMAIL: "e-mail",
    DecisionSurface.SLACK: "Slack",
    DecisionSurface.DEMO: "demo data",
}


@dataclass(frozen=True)
class Outcome:
    """What one decision did: the vote(s) recorded, the accounting after it, and the state
    the task is in now."""

    task: Task
    review: Review
    delegated_for: tuple[str, ...]
    accounting: Accounting | None
    repeated: bool = False


@dataclass(frozen=True)
class StandingCover:
    """A standing delegation the principal received, active now, with what its delegator
    may review: on the tasks it covers, the principal's approval counts for the
    delegator, so those tasks wait on the principal too (``standing_covers``)."""

    delegator: uuid.UUID
    groups: frozenset[str]
    role: str | None  # None: the delegator is disabled and fills general slots no more
    task_types: tuple[str, ...]  # the known task types its globs match
    resource_types: frozenset[ResourceType]  # empty: any
    max_risk: float


async def standing_covers(
    session: AsyncSession, principal: Principal, *, at: datetime | None = None
) -> tuple[StandingCover, ...]:
    """The standing delegations to ``principal`` active at ``at`` (now), ready for
    ``awaiting``. Task-type globs are matched here against the installed executors' task
    types, since tasks of other types cannot be submitted."""
    at = at or utcnow()
    rows = list(
        await session.scalars(
            select(DelegationRow).where(
                DelegationRow.delegate_id == principal.id,
                DelegationRow.valid_from <= at,
                DelegationRow.valid_until > at,
                or_(DelegationRow.revoked_at.is_(None), DelegationRow.revoked_at > at),
            )
        )
    )
    if not rows:
        return ()
    groups, roles = await directory(session, [str(r.delegator_id) for r in rows])
    known = sorted(load_executors())
    covers = []
    for r in rows:
        globs = tuple(r.task_types) or ("*",)
        role = roles.get(str(r.delegator_id))
        covers.append(
            StandingCover(
                delegator=r.delegator_id,
                groups=frozenset(groups.get(str(r.delegator_id), ())),
                role=next(iter(role)) if role else None,
                task_types=tuple(t for t in known if task_type_matches(globs, t)),
                resource_types=parse_resource_types(r.resource_types),
                max_risk=r.max_risk,
            )
        )
    return tuple(covers)


def _eligible(user: uuid.UUID, groups: Collection[str], role: str | None) -> ColumnElement[bool]:
    """Tasks ``user`` could fill a slot of: a member of one of the task's review groups,
    handed the review, or a reviewer/admin where general slots exist."""
    # Correlated EXISTS probes (per open task, by primary key or task index) stay
    # cheap however many finished tasks and reviews the tables hold.
    eligible: ColumnElement[bool] = exists().where(
        TaskReviewGroup.task_id == Task.id,
        TaskReviewGroup.group_name.in_(sorted(groups)),
    )
    # A reviewer handed this task's review to the user (delegate action).
    handed = exists().where(
        Review.task_id == Task.id,
        Review.delegate_to == user,
        Review.decision == "delegate",
        Review.stale.is_(False),
    )
    eligible = or_(eligible, handed)
    if role in ("reviewer", "admin"):
        eligible = or_(Task.review_any, eligible)
    return eligible


def _free_to_vote(user: uuid.UUID) -> ColumnElement[bool]:
    """Not the task's submitter or its agent's owner, and without a current vote."""
    voted = exists().where(
        Review.task_id == Task.id,
        Review.actor_id == user,
        Review.stale.is_(False),
        Review.via_delegation_for.is_(None),
        Review.decision.in_(("approve", "reject")),
    )
    mine = select(Agent.id).where(Agent.owner_id == user)
    return and_(
        Task.submitter_id != user,
        or_(Task.agent_id.is_(None), Task.agent_id.not_in(mine)),
        ~voted,
    )


def _covered(cover: StandingCover) -> ColumnElement[bool]:
    """The tasks a standing delegation covers (``Delegation.covers``, in SQL)."""
    conditions = [Task.type.in_(cover.task_types), Task.risk_score <= cover.max_risk]
    if cover.resource_types:
        # Every resource type the task touches must be named: none of the others.
        conditions += [
            ~HasMemberWith(Task.resources.expression, "type", t.value)
            for t in ResourceType
            if t not in cover.resource_types
        ]
    return and_(*conditions)


def awaiting(principal: Principal, standing: Collection[StandingCover] = ()) -> ColumnElement[bool]:
    """The tasks a human principal may still decide: eligible in their own right, or
    through an active standing delegation (``standing``) whose delegator is eligible and
    free to vote on a task it covers — the principal's approval then counts for both.
    Never the principal's own tasks (as submitter or agent owner), nor any they already
    voted on. The review queue filters by it; the dashboard also sorts by it."""
    through = [
        and_(_eligible(c.delegator, c.groups, c.role), _free_to_vote(c.delegator), _covered(c))
        for c in standing
    ]
    return and_(
        or_(_eligible(principal.id, principal.groups, principal.role), *through),
        _free_to_vote(principal.id),
    )


async def reviewer_named(session: AsyncSession, user_id: uuid.UUID, *, field: str) -> User:
    """The user ``user_id`` if they may review at all, for a delegation to them: a
    delegation to someone who can never review would only look like cover. An agent,
    a disabled user or a role without the review permission is ``InvalidInput`` naming
    ``field``; an unknown id is ``NotFound``."""
    user = await session.get(User, user_id)
    if user is None:
        agent = await session.get(Agent, user_id)
        if agent is None:
            raise NotFound(f"no user {user_id}")
        raise InvalidInput(
            f"{agent.name} is an agent: agents never review; delegate to a person", field=field
        )
    if user.disabled_at is not None:
        raise InvalidInput(f"{user.username} is disabled and cannot review", field=field)
    if Permission.REVIEW not in ROLE_PERMISSIONS[Role(user.role)]:
        raise InvalidInput(
            f"{user.username} is a {user.role} and cannot review: delegate to a reviewer "
            "or an admin",
            field=field,
        )
    return user


# The audit events a review is recorded by: a vote (and each copy for a delegator), a
# request for changes, a hand-over of this task's review.
_REVIEW_EVENTS = ("approval:decision", "approval:changes_requested", "delegation:created")


def _event_key(event_type: str, actor_id: str, data: dict[str, Any]) -> tuple[str, ...]:
    if event_type == "approval:changes_requested":
        return (ReviewAction.REQUEST_CHANGES.value, actor_id)
    if event_type == "delegation:created":
        return (ReviewAction.DELEGATE.value, actor_id, data["delegate"])
    return (data["decision"], actor_id, data["digest"], data.get("for", ""))


def _review_key(review: Review) -> tuple[str, ...]:
    actor_id = str(review.actor_id)
    if review.decision == ReviewAction.REQUEST_CHANGES:
        return (ReviewAction.REQUEST_CHANGES.value, actor_id)
    if review.decision == ReviewAction.DELEGATE:
        return (ReviewAction.DELEGATE.value, actor_id, str(review.delegate_to))
    via = str(review.via_delegation_for) if review.via_delegation_for else ""
    return (review.decision, actor_id, review.digest, via)


class ReviewService:
    def __init__(self, session: AsyncSession, *, now: Callable[[], datetime] = utcnow) -> None:
        self.session = session
        self.now = now

    async def decide(
        self,
        principal: Principal,
        task_id: uuid.UUID,
        action: ReviewAction,
        digest: str,
        *,
        surface: DecisionSurface,
        comment: str = "",
        delegate_to: uuid.UUID | None = None,
    ) -> Outcome:
        require(principal, Permission.REVIEW)
        task = await self.session.scalar(select(Task).where(Task.id == task_id).with_for_update())
        if task is None:
            raise NotFound(f"no task {task_id}")
        actor = str(principal.id)
        previous = await self._own_current_vote(task, actor)
        if previous is not None and previous.decision == action.value and previous.digest == digest:
            # The same decision again (a retry): the original result, nothing new.
            return Outcome(task, previous, (), await self._account(task), repeated=True)
        if TaskState(task.state) not in OPEN_FOR_REVIEW:
            raise AlreadyDecided(f"task {task.id} is {task.state}: it is no longer under review")
        if previous is not None:
            raise AlreadyDecided(
                f"you already decided {previous.decision!r} on this preview; "
                "request changes to start a new round"
            )
        if digest != task.preview_digest:
            raise StalePreview(
                "the preview changed since you saw it: review the current one",
                current_digest=task.preview_digest,
            )
        submitter, owner = await self.parties(task)
        check_can_vote(actor, submitter, owner, ActorKind.HUMAN)
        requirements = requirements_from_document(task.requirements or {}, task.type)
        check_fresh_auth(requirements, principal.auth_time, self.now())
        if action in (ReviewAction.REQUEST_CHANGES, ReviewAction.DELEGATE):
            # Only someone who could decide may send the task back or hand their slot on.
            groups, roles = await directory(self.session, {actor})
            check_eligible(requirements, actor, groups, roles)
            if action is ReviewAction.REQUEST_CHANGES:
                return await self._request_changes(principal, task, comment, surface)
            return await self._delegate(principal, task, delegate_to, comment, surface)
        decision = Decision(action.value)
        delegations = await self._triggered(task, actor, requirements, submitter, owner)
        voters = {actor, *(d.delegator for d in delegations)}
        groups, roles = await directory(self.session, voters)
        check_eligible(requirements, actor, groups, roles, [d.delegator for d in delegations])
        review = self._record(task, actor, decision, comment)
        # Only an approval is cast for the delegators too; a rejection is its author's alone.
        delegated = tuple(d.delegator for d in delegations if decision is Decision.APPROVE)
        for delegator in delegated:
            self._record(task, actor, decision, comment, via=delegator)
        await self.session.flush()
        accounting = await self._account(task)
        # Logged after the accounting's reads: the first audit append takes the log's
        # append lock, which every process's appends wait for until this commits.
        await self._log_vote(principal, task, review, delegated, surface)
        await self._settle(task, accounting, requirements)
        return Outcome(task, review, delegated, accounting)

    async def open_for_review(
        self, principal: Principal, *, awaiting_me: bool, page: int, limit: int
    ) -> tuple[list[Task], int]:
        """Tasks under review, oldest first, and their number (up to ``COUNT_CAP + 1``,
        meaning "more than COUNT_CAP"); ``awaiting_me``: only those the principal may
        still decide (``awaiting``: eligible in their own right or through a standing
        delegation, not its submitter or agent owner, without a current vote of their
        own). One indexed query, whatever the table size.
        """
        require(principal, Permission.TASK_READ)
        if page < 1 or not 1 <= limit <= 100:
            raise InvalidInput("page must be >= 1 and limit between 1 and 100")
        query = select(Task).where(Task.state.in_([s.value for s in OPEN_FOR_REVIEW]))
        if awaiting_me:
            if principal.kind != "human":
                return [], 0
            standing = await standing_covers(self.session, principal, at=self.now())
            query = query.where(awaiting(principal, standing))
        # Counting stops at COUNT_CAP: an exact total of a huge queue costs a walk over
        # every open task on every page, and nobody pages past a thousand reviews.
        capped = query.with_only_columns(Task.id).limit(COUNT_CAP + 1).subquery()
        total = await self.session.scalar(select(func.count()).select_from(capped))
        rows = await self.session.scalars(
            query.order_by(Task.submitted_at, Task.id).offset((page - 1) * limit).limit(limit)
        )
        return list(rows), int(total or 0)

    async def reviews_of(self, task: Task) -> list[Review]:
        return list(
            await self.session.scalars(
                select(Review).where(Review.task_id == task.id).order_by(Review.created_at)
            )
        )

    async def surfaces(
        self, task: Task, reviews: Sequence[Review]
    ) -> dict[uuid.UUID, DecisionSurface]:
        """Where each of the task's ``reviews`` (all of them, oldest first, as
        ``reviews_of`` gives them) was decided, read from the audit events that recorded
        them; a review logged before surfaces were recorded has none. The n-th review of
        who decided what (on which preview, for or to whom) is the n-th such event."""
        rows = await self.session.execute(
            select(AuditEvent.type, AuditEvent.actor_id, AuditEvent.data)
            .where(AuditEvent.subject == f"task:{task.id}", AuditEvent.type.in_(_REVIEW_EVENTS))
            .order_by(AuditEvent.seq)
        )
        logged: dict[tuple[str, ...], deque[str | None]] = defaultdict(deque)
        for event_type, actor_id, data in rows:
            logged[_event_key(event_type, actor_id, data)].append(data.get("surface"))
        found = {}
        for review in reviews:
            queue = logged.get(_review_key(review))
            surface = queue.popleft() if queue else None
            # A surface this version does not know (a newer one wrote it) is left unnamed.
            with contextlib.suppress(ValueError):
                if surface is not None:
                    found[review.id] = DecisionSurface(surface)
        return found

    async def accounting(self, task: Task) -> Accounting | None:
        """The approval view: which vote filled which slot, and what still blocks."""
        return await self._account(task)

    # -- the pieces -------------------------------------------------------------------

    async def _request_changes(
        self, principal: Principal, task: Task, comment: str, surface: DecisionSurface
    ) -> Outcome:
        review = self._record(task, str(principal.id), ReviewAction.REQUEST_CHANGES, comment)
        await self.session.flush()
        # Every vote of this round is dismissed: the next submit starts afresh.
        await self.session.execute(
            update(Review).where(Review.task_id == task.id).values(stale=True)
        )
        await move(
            self.session,
            task,
            Trigger.REQUEST_CHANGES,
            actor_of(principal),
            "approval:changes_requested",
            {"comment": comment, "surface": surface.value},
        )
        return Outcome(task, review, (), None)

    async def _delegate(
        self,
        principal: Principal,
        task: Task,
        delegate_to: uuid.UUID | None,
        comment: str,
        surface: DecisionSurface,
    ) -> Outcome:
        if delegate_to is None or delegate_to == principal.id:
            raise InvalidInput("delegate needs another user in delegate_to", field="delegate_to")
        user = await reviewer_named(self.session, delegate_to, field="delegate_to")
        if str(delegate_to) in await self.parties(task):
            raise InvalidInput(
                f"{user.username} submitted this task (or owns its agent) and may never "
                "review it: delegate to someone else",
                field="delegate_to",
            )
        review = self._record(task, str(principal.id), ReviewAction.DELEGATE, comment)
        review.delegate_to = delegate_to
        await self.session.flush()
        await audit.append(
            self.session,
            type="delegation:created",
            actor=actor_of(principal),
            subject=f"task:{task.id}",
            data={
                "delegate": str(delegate_to),
                "scope": "this task",
                "comment": comment,
                "surface": surface.value,
            },
        )
        return Outcome(task, review, (), await self._account(task))

    def _record(
        self,
        task: Task,
        actor: str,
        decision: Decision | ReviewAction,
        comment: str,
        *,
        via: str | None = None,
    ) -> Review:
        review = Review(
            task_id=task.id,
            actor_id=uuid.UUID(actor),
            decision=decision.value,
            digest=task.preview_digest or "",
            comment=comment,
            via_delegation_for=uuid.UUID(via) if via else None,
            created_at=self.now(),
        )
        self.session.add(review)
        return review

    async def _own_current_vote(self, task: Task, actor: str) -> Review | None:
        return await self.session.scalar(
            select(Review)
            .where(
                Review.task_id == task.id,
                Review.actor_id == uuid.UUID(actor),
                Review.via_delegation_for.is_(None),
                Review.stale.is_(False),
                Review.digest == task.preview_digest,
                Review.decision.in_(("approve", "reject")),
            )
            .order_by(Review.created_at.desc())
            .limit(1)
        )

    async def parties(self, task: Task) -> tuple[str, str | None]:
        """The submitter and, for an agent's task, the agent's owner."""
        owner = None
        if task.agent_id is not None:
            agent = await self.session.get(Agent, task.agent_id)
            owner = str(agent.owner_id) if agent else None
        return str(task.submitter_id), owner

    async def _triggered(
        self,
        task: Task,
        voter: str,
        requirements: Requirements,
        submitter: str,
        owner: str | None,
    ) -> list[Delegation]:
        """Standing delegations to the voter, plus this task's per-task delegations."""
        now = self.now()
        rows = await self.session.scalars(
            select(DelegationRow).where(DelegationRow.delegate_id == uuid.UUID(voter))
        )
        standing = [
            Delegation(
                id=str(r.id),
                delegator=str(r.delegator_id),
                delegate=str(r.delegate_id),
                task_types=tuple(r.task_types) or ("*",),
                resource_types=frozenset(r.resource_types),
                max_risk=r.max_risk,
                valid_from=r.valid_from,
                valid_until=r.valid_until,
                revoked_at=r.revoked_at,
            )
            for r in rows
        ]
        per_task = await self.session.scalars(
            select(Review).where(
                Review.task_id == task.id,
                Review.decision == "delegate",
                Review.delegate_to == uuid.UUID(voter),
                Review.stale.is_(False),
            )
        )
        deadline = task.review_deadline or now + timedelta(days=1)
        standing += [
            Delegation(
                id=f"review:{r.id}",
                delegator=str(r.actor_id),
                delegate=voter,
                task_types=(task.type,),
                valid_from=r.created_at,
                valid_until=max(deadline, r.created_at + timedelta(seconds=1)),
            )
            for r in per_task
        ]
        resources = [ResourceRef(**r) for r in task.resources]
        candidates = applicable_delegations(
            standing, voter, task.type, resources, requirements.risk, now, submitter, owner
        )
        groups, roles = await directory(self.session, {d.delegator for d in candidates})
        return [
            d
            for d in candidates
            if is_eligible(requirements, groups.get(d.delegator, ()), roles.get(d.delegator, ()))
        ]

    async def _account(self, task: Task) -> Accounting | None:
        if not task.requirements:
            return None
        rows = list(
            await self.session.scalars(
                select(Review)
                .where(
                    Review.task_id == task.id,
                    Review.stale.is_(False),
                    Review.digest == task.preview_digest,
                    Review.decision.in_(("approve", "reject")),
                )
                .order_by(Review.created_at, Review.id)
            )
        )
        votes = [
            Vote(
                actor=str(r.actor_id),
                decision=Decision(r.decision),
                via_delegation_for=str(r.via_delegation_for) if r.via_delegation_for else None,
                at=r.created_at,
            )
            for r in rows
        ]
        people: set[str] = set()
        for v in votes:
            people.add(v.actor)
            if v.via_delegation_for:
                people.add(v.via_delegation_for)
        groups, roles = await directory(self.session, people)
        submitter, owner = await self.parties(task)
        requirements = requirements_from_document(task.requirements, task.type)
        return account(
            requirements, votes, submitter=submitter, agent_owner=owner, groups=groups, roles=roles
        )

    async def _settle(
        self, task: Task, accounting: Accounting | None, requirements: Requirements
    ) -> None:
        if accounting is None:
            return
        data = {"blocked_by": list(accounting.blocked_by), "approvals": accounting.approvals}
        if accounting.vetoed:
            task.decided_at = self.now()
            await move(self.session, task, Trigger.REJECT, SYSTEM, "approval:rejected", data)
        elif accounting.satisfied:
            now = self.now()
            task.decided_at = now
            task.approval_deadline = requirements.approval_deadline(now)
            await move(
                self.session, task, Trigger.REQUIREMENTS_MET, SYSTEM, "approval:approved", data
            )
            if requirements.auto_apply:
                enqueue_after_commit(self.session, task)
        elif task.state == TaskState.SUBMITTED:
            await move(self.session, task, Trigger.FIRST_REVIEW, SYSTEM, "task:reviewing", data)

    async def _log_vote(
        self,
        principal: Principal,
        task: Task,
        review: Review,
        delegators: Collection[str],
        surface: DecisionSurface,
    ) -> None:
        await audit.append(
            self.session,
            type="approval:decision",
            actor=actor_of(principal),
            subject=f"task:{task.id}",
            data={
                "decision": review.decision,
                "digest": review.digest,
                "comment": review.comment,
                "surface": surface.value,
            },
        )
        for delegator in delegators:
            await audit.append(
                self.session,
                type="approval:decision",
                actor=Actor(kind="human", id=str(principal.id), via_delegation=True),
                subject=f"task:{task.id}",
                data={
                    "decision": review.decision,
                    "digest": review.digest,
                    "for": delegator,
                    "surface": surface.value,
                },
            )
