"""Review decisions on real SQLite and PostgreSQL: quorum, veto, stale previews,
separation of duties (also through delegation), delegated votes, request changes,
repeated decisions, and 20 concurrent decisions ending in one outcome."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.decision_wait import decision_status
from community_ade.approvals.reviews import DecisionSurface, ReviewAction, ReviewService
from community_ade.approvals.risk import ResourceRef
from community_ade.approvals.service import TaskDraft, TaskService
from community_ade.audit import log as audit
from community_ade.auth.principal import Principal
from community_ade.errors import (
    AdeError,
    AlreadyDecided,
    Conflict,
    NotEligible,
    SelfReview,
    StalePreview,
)
from community_ade.execution.executors.base import PlanContext
from community_ade.storage.models import (
    AuditEvent,
    Delegation,
    Group,
    GroupMember,
    PolicyVersion,
    Review,
    Task,
    User,
    utcnow,
)

APPROVE, REJECT = ReviewAction.APPROVE, ReviewAction.REJECT


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.conf").write_text("debug = false\n")
    return root


async def user(sessions: async_sessionmaker[AsyncSession], role: str, *groups: str) -> Principal:
    row = User(username=f"{role}-{uuid.uuid4().hex[:8]}", role=role)
    async with sessions.begin() as session:
        session.add(row)
        await session.flush()
        for name in groups:
            group = await session.scalar(select(Group).where(Group.name == name))
            if group is None:
                group = Group(name=name)
                session.add(group)
                await session.flush()
            session.add(GroupMember(group_id=group.id, user_id=row.id))
    return Principal(
        id=row.id, kind="human", name=row.username, role=role, groups=frozenset(groups)
    )


async def set_policy(sessions: async_sessionmaker[AsyncSession], document: dict[str, Any]) -> None:
    async with sessions.begin() as session:
        latest = await session.scalar(select(func.max(PolicyVersion.version)))
        session.add(PolicyVersion(version=(latest or 0) + 1, document=document))


async def submitted_task(
    sessions: async_sessionmaker[AsyncSession], workspace: Path, submitter: Principal
) -> Task:
    draft = TaskDraft(
        type="files.write",
        title="turn on debug",
        payload={
            "root": str(workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
        },
        resources=[ResourceRef(type="configuration", id="app", actions=("write",))],
    )
    async with sessions.begin() as session:
        service = TaskService(session, plan_context=PlanContext(allowed_roots=(workspace,)))
        task = await service.create(submitter, draft)
        await service.submit(submitter, task.id)
    return task


async def decide(
    sessions: async_sessionmaker[AsyncSession],
    who: Principal,
    task: Task,
    action: ReviewAction,
    digest: str | None = None,
    *,
    surface: DecisionSurface = DecisionSurface.API,
    **kwargs: Any,
) -> Any:
    async with sessions.begin() as session:
        fresh = await session.get(Task, task.id)
        assert fresh is not None
        return await ReviewService(session).decide(
            who, task.id, action, digest or fresh.preview_digest or "", surface=surface, **kwargs
        )


async def state(sessions: async_sessionmaker[AsyncSession], task: Task) -> str:
    async with sessions() as session:
        fresh = await session.get(Task, task.id)
        assert fresh is not None
        return fresh.state


async def events(
    sessions: async_sessionmaker[AsyncSession], task: Task, kind: str
) -> list[AuditEvent]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(
                AuditEvent.subject == f"task:{task.id}", AuditEvent.type == kind
            )
        )
        return list(rows)


async def test_one_eligible_approval_meets_a_low_risk_quorum(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await user(sessions, "submitter")
    bob = await user(sessions, "reviewer")
    task = await submitted_task(sessions, workspace, alice)
    outcome = await decide(sessions, bob, task, APPROVE, comment="looks right")
    assert outcome.accounting.satisfied
    assert await state(sessions, task) == "APPROVED"
    assert len(await events(sessions, task, "approval:decision")) == 1
    assert len(await events(sessions, task, "approval:approved")) == 1
    async with sessions() as session:
        assert (await audit.verify_log(session)).ok


async def test_a_stale_digest_is_refused(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await user(sessions, "submitter")
    bob = await user(sessions, "reviewer")
    task = await submitted_task(sessions, workspace, alice)
    with pytest.raises(StalePreview):
        await decide(sessions, bob, task, APPROVE, digest="0" * 64)
    assert await state(sessions, task) == "SUBMITTED"


async def test_an_eligible_reject_is_a_veto(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await user(sessions, "submitter")
    bob = await user(sessions, "reviewer")
    task = await submitted_task(sessions, workspace, alice)
    await decide(sessions, bob, task, REJECT, comment="no debug in prod")
    assert await state(sessions, task) == "REJECTED"
    assert len(await events(sessions, task, "approval:rejected")) == 1


async def test_submitters_never_approve_their_own_task_not_even_through_delegation(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await user(sessions, "reviewer", "db-owners")  # a reviewer, submitting
    dave = await user(sessions, "reviewer", "db-owners")
    task = await submitted_task(sessions, workspace, alice)
    with pytest.raises(SelfReview):
        await decide(sessions, alice, task, APPROVE)
    # Alice delegated to Dave: Dave's approval counts for Dave only, never for Alice.
    await standing_delegation(sessions, alice, dave)
    outcome = await decide(sessions, dave, task, APPROVE)
    assert outcome.delegated_for == ()
    async with sessions() as session:
        for_alice = await session.scalar(
            select(func.count()).where(
                Review.task_id == task.id, Review.via_delegation_for == alice.id
            )
        )
    assert for_alice == 0


async def db_owners_task(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> tuple[Principal, Principal, Task]:
    """A task only a db-owner may approve, submitted by a submitter; a db-owner and a
    reviewer who is not one (the stand-in of the delegation tests)."""
    await set_policy(
        sessions,
        {
            "rules": [
                {"name": "db owners", "task_types": ["files.*"], "groups": [{"group": "db-owners"}]}
            ]
        },
    )
    alice = await user(sessions, "submitter")
    owner = await user(sessions, "reviewer", "db-owners")
    stand_in = await user(sessions, "reviewer")
    return owner, stand_in, await submitted_task(sessions, workspace, alice)


async def standing_delegation(
    sessions: async_sessionmaker[AsyncSession],
    delegator: Principal,
    delegate: Principal,
    **fields: Any,
) -> None:
    """A standing delegation, valid from an hour ago for two hours unless ``fields`` say
    otherwise."""
    now = utcnow()
    row = {"valid_from": now - timedelta(hours=1), "valid_until": now + timedelta(hours=1)}
    async with sessions.begin() as session:
        session.add(
            Delegation(delegator_id=delegator.id, delegate_id=delegate.id, **(row | fields))
        )


async def test_a_delegated_vote_fills_the_delegators_group_slot(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    owner, stand_in, task = await db_owners_task(sessions, workspace)
    with pytest.raises(NotEligible):
        await decide(sessions, stand_in, task, APPROVE)
    await standing_delegation(sessions, owner, stand_in, task_types=["files.*"])
    outcome = await decide(sessions, stand_in, task, APPROVE)
    assert outcome.delegated_for == (str(owner.id),)
    assert [f.via_delegation for f in outcome.accounting.fills] == [True]
    assert await state(sessions, task) == "APPROVED"
    marked = [e for e in await events(sessions, task, "approval:decision") if e.via_delegation]
    assert len(marked) == 1


async def test_a_delegates_rejection_is_recorded_for_its_author_alone(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    owner, stand_in, task = await db_owners_task(sessions, workspace)
    await standing_delegation(sessions, owner, stand_in, task_types=["files.*"])
    outcome = await decide(sessions, stand_in, task, ReviewAction.REJECT)
    assert outcome.delegated_for == ()
    # The stand-in holds no slot of their own: no veto either.
    assert await state(sessions, task) == "REVIEWING"
    logged = await events(sessions, task, "approval:decision")
    assert [(e.actor_id, e.via_delegation) for e in logged] == [(str(stand_in.id), False)]
    async with sessions() as session:
        votes = list(await session.scalars(select(Review).where(Review.task_id == task.id)))
    assert [v.via_delegation_for for v in votes] == [None]


async def test_request_changes_dismisses_votes_and_returns_to_draft(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    await set_policy(sessions, {"rules": [{"name": "two", "task_types": ["*"], "min_total": 2}]})
    alice = await user(sessions, "submitter")
    bob = await user(sessions, "reviewer")
    carol = await user(sessions, "reviewer")
    task = await submitted_task(sessions, workspace, alice)
    await decide(sessions, bob, task, APPROVE)
    assert await state(sessions, task) == "REVIEWING"
    await decide(sessions, carol, task, ReviewAction.REQUEST_CHANGES, comment="split it")
    assert await state(sessions, task) == "DRAFT"
    async with sessions() as session:
        live = await session.scalar(
            select(func.count()).where(Review.task_id == task.id, Review.stale.is_(False))
        )
    assert live == 0


async def test_each_review_shows_the_surface_its_audit_events_recorded(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    await set_policy(sessions, {"rules": [{"name": "four", "task_types": ["*"], "min_total": 4}]})
    alice = await user(sessions, "submitter")
    bob, carol, dave = [await user(sessions, "reviewer") for _ in range(3)]
    task = await submitted_task(sessions, workspace, alice)
    first_digest = task.preview_digest
    await decide(sessions, bob, task, APPROVE, surface=DecisionSurface.EMAIL)
    await decide(
        sessions, carol, task, ReviewAction.REQUEST_CHANGES, surface=DecisionSurface.DASHBOARD
    )
    async with sessions.begin() as session:
        service = TaskService(session, plan_context=PlanContext(allowed_roots=(workspace,)))
        resubmitted = await service.submit(alice, task.id)
    # The same preview again: bob's second approval has his first one's key, so only the
    # order tells them apart.
    assert resubmitted.plan.digest == first_digest
    await decide(sessions, bob, task, APPROVE, surface=DecisionSurface.SLACK)
    await decide(
        sessions,
        carol,
        task,
        ReviewAction.DELEGATE,
        surface=DecisionSurface.API,
        delegate_to=dave.id,
    )
    outcome = await decide(sessions, dave, task, APPROVE, surface=DecisionSurface.EMAIL)
    assert outcome.delegated_for == (str(carol.id),)

    logged = [e.data["surface"] for e in await events(sessions, task, "approval:decision")]
    assert logged == ["email", "slack", "email", "email"]  # dave's vote and its copy for carol
    [sent_back] = await events(sessions, task, "approval:changes_requested")
    [handed_on] = await events(sessions, task, "delegation:created")
    assert (sent_back.data["surface"], handed_on.data["surface"]) == ("dashboard", "api")
    async with sessions() as session:
        fresh = await session.get(Task, task.id)
        assert fresh is not None
        reviews = ReviewService(session)
        every = await reviews.reviews_of(fresh)
        surfaces = await reviews.surfaces(fresh, every)
        status = await decision_status(session, fresh)
    by_review = [(r.actor_id, r.decision, r.via_delegation_for, surfaces.get(r.id)) for r in every]
    assert by_review == [
        (bob.id, "approve", None, DecisionSurface.EMAIL),
        (carol.id, "request_changes", None, DecisionSurface.DASHBOARD),
        (bob.id, "approve", None, DecisionSurface.SLACK),
        (carol.id, "delegate", None, DecisionSurface.API),
        (dave.id, "approve", None, DecisionSurface.EMAIL),
        (dave.id, "approve", carol.id, DecisionSurface.EMAIL),
    ]
    assert [r["surface"] for r in status["reviews"]] == [
        "email",
        "dashboard",
        "slack",
        "api",
        "email",
        "email",
    ]


async def test_a_repeated_decision_is_idempotent_and_a_changed_one_refused(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    await set_policy(sessions, {"rules": [{"name": "two", "task_types": ["*"], "min_total": 2}]})
    alice = await user(sessions, "submitter")
    bob = await user(sessions, "reviewer")
    task = await submitted_task(sessions, workspace, alice)
    first = await decide(sessions, bob, task, APPROVE)
    again = await decide(sessions, bob, task, APPROVE)
    assert again.repeated
    assert again.review.id == first.review.id
    with pytest.raises(AlreadyDecided):
        await decide(sessions, bob, task, REJECT)


async def test_twenty_concurrent_decisions_end_in_one_outcome(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    await set_policy(sessions, {"rules": [{"name": "three", "task_types": ["*"], "min_total": 3}]})
    alice = await user(sessions, "submitter")
    reviewers = [await user(sessions, "reviewer") for _ in range(20)]
    task = await submitted_task(sessions, workspace, alice)
    actions = [REJECT if i % 4 == 3 else APPROVE for i in range(20)]
    results = await asyncio.gather(
        *(decide(sessions, r, task, a) for r, a in zip(reviewers, actions, strict=True)),
        return_exceptions=True,
    )
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, AdeError)
    ]
    assert unexpected == []
    refused = [r for r in results if isinstance(r, AdeError)]
    assert all(isinstance(r, AlreadyDecided | Conflict) for r in refused)
    final = await state(sessions, task)
    assert final in ("APPROVED", "REJECTED")
    outcomes = await events(sessions, task, "approval:approved") + await events(
        sessions, task, "approval:rejected"
    )
    assert len(outcomes) == 1
    assert outcomes[0].type == ("approval:approved" if final == "APPROVED" else "approval:rejected")
    async with sessions() as session:
        assert (await audit.verify_log(session)).ok


# Standing delegations in the review queue: each scope below either puts the task in the
# delegate's "waiting on me" queue or not, and the review engine must agree — a task in
# the queue is one the delegate's approval is accepted on, and one outside it is refused.
_HOUR = timedelta(hours=1)
STANDING_SCOPES = {
    "any task": ({}, True),
    "its task type": ({"task_types": ["files.*"]}, True),
    "another task type": ({"task_types": ["git.*"]}, False),
    "its resource type": ({"resource_types": ["configuration"]}, True),
    "its resource type among others": ({"resource_types": ["database", "configuration"]}, True),
    "only another resource type": ({"resource_types": ["database"]}, False),
    "risk at most 100": ({"max_risk": 100.0}, True),
    "risk at most 0": ({"max_risk": 0.0}, False),
    "revoked": ({"revoked_at": -_HOUR}, False),
    "not yet valid": ({"valid_from": _HOUR, "valid_until": 2 * _HOUR}, False),
    "over": ({"valid_from": -2 * _HOUR, "valid_until": -_HOUR}, False),
}


@pytest.mark.parametrize("scope", STANDING_SCOPES)
async def test_a_standing_delegation_puts_the_tasks_it_covers_in_the_delegates_queue(
    sessions: async_sessionmaker[AsyncSession], workspace: Path, scope: str
) -> None:
    fields, covered = STANDING_SCOPES[scope]
    owner, stand_in, task = await db_owners_task(sessions, workspace)

    async def queue_of(who: Principal) -> list[uuid.UUID]:
        async with sessions() as session:
            tasks, _ = await ReviewService(session).open_for_review(
                who, awaiting_me=True, page=1, limit=100
            )
            return [t.id for t in tasks]

    assert task.id not in await queue_of(stand_in)
    now = utcnow()
    times = ("valid_from", "valid_until", "revoked_at")
    row = {k: now + v if k in times else v for k, v in fields.items()}
    await standing_delegation(sessions, owner, stand_in, **row)
    assert (task.id in await queue_of(stand_in)) is covered
    assert task.id in await queue_of(owner)
    if covered:
        outcome = await decide(sessions, stand_in, task, APPROVE)
        assert outcome.delegated_for == (str(owner.id),)
        assert task.id not in await queue_of(stand_in)
    else:
        with pytest.raises(NotEligible):
            await decide(sessions, stand_in, task, APPROVE)


async def test_a_standing_delegation_never_queues_a_task_for_its_parties(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    # The delegator submitted the task: the delegation cannot make it wait on anyone.
    await set_policy(
        sessions,
        {"rules": [{"name": "ops", "task_types": ["files.*"], "groups": [{"group": "ops"}]}]},
    )
    submitter = await user(sessions, "reviewer", "ops")
    stand_in = await user(sessions, "reviewer")
    task = await submitted_task(sessions, workspace, submitter)
    await standing_delegation(sessions, submitter, stand_in)
    async with sessions() as session:
        tasks, total = await ReviewService(session).open_for_review(
            stand_in, awaiting_me=True, page=1, limit=100
        )
    assert task.id not in [t.id for t in tasks]
    assert total == 0
    with pytest.raises(NotEligible):
        await decide(sessions, stand_in, task, APPROVE)
