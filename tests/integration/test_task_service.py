"""Task use cases on real SQLite and PostgreSQL: create, edit, submit (preview, risk,
requirements, auto-approval), cancel, concurrency, listing; each with its audit trail."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.risk import ResourceRef
from community_ade.approvals.service import TaskChanges, TaskDraft, TaskService
from community_ade.audit import log as audit
from community_ade.auth.principal import Principal
from community_ade.errors import Conflict, Forbidden, InvalidInput, InvalidTransition
from community_ade.execution.executors.base import PlanContext
from community_ade.storage.models import AuditEvent, PolicyVersion, Preview, Task, User


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    (root / "config.yaml").write_text("replicas: 2\n")
    return root


async def _user(sessions: async_sessionmaker[AsyncSession], role: str) -> Principal:
    user = User(username=f"{role}-{uuid.uuid4().hex[:6]}", role=role)
    async with sessions.begin() as session:
        session.add(user)
    return Principal(id=user.id, kind="human", name=user.username, role=role, groups=frozenset())


def _service(session: AsyncSession, workspace: Path) -> TaskService:
    return TaskService(session, plan_context=PlanContext(allowed_roots=(workspace,)))


def _draft(workspace: Path, content: str = "replicas: 3\n") -> TaskDraft:
    return TaskDraft(
        type="files.write",
        title="scale the api",
        payload={
            "root": str(workspace),
            "changes": [{"path": "config.yaml", "action": "write", "content": content}],
        },
        resources=[ResourceRef(type="configuration", id="api", actions=("write",))],
    )


async def _events(sessions: async_sessionmaker[AsyncSession], task: Task) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.type)
            .where(AuditEvent.subject == f"task:{task.id}")
            .order_by(AuditEvent.seq)
        )
        return list(rows)


async def test_create_then_submit_previews_scores_and_routes(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await _user(sessions, "submitter")
    async with sessions.begin() as session:
        task = await _service(session, workspace).create(alice, _draft(workspace))
    assert task.state == "DRAFT"
    assert task.submitter_id == alice.id
    async with sessions.begin() as session:
        submission = await _service(session, workspace).submit(alice, task.id)
    task = submission.task
    assert task.state == "SUBMITTED"
    assert "+replicas: 3" in submission.plan.preview
    assert task.preview_digest == submission.plan.digest
    assert task.risk_score == submission.risk.total > 0
    assert task.requirements is not None
    assert task.requirements["approvals_needed"] == submission.risk.quorum
    assert task.review_deadline is not None
    assert task.submitted_at is not None
    assert task.review_deadline - task.submitted_at == timedelta(hours=24)
    # The submit left nothing on disk: the preview is the stash.
    assert (workspace / "config.yaml").read_text() == "replicas: 2\n"
    async with sessions() as session:
        preview = await session.scalar(select(Preview).where(Preview.task_id == task.id))
        assert preview is not None
        assert preview.digest == task.preview_digest
        assert (await audit.verify_log(session)).ok
    assert await _events(sessions, task) == [
        "task:created",
        "task:submitted",
        "approval:requested",
    ]


async def test_a_task_that_fails_validation_is_refused_at_create(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await _user(sessions, "submitter")
    broken = TaskDraft(
        type="files.write",
        title="escape",
        payload={"root": str(workspace), "changes": [{"path": "../escape", "action": "write"}]},
    )
    with pytest.raises(InvalidInput) as refused:
        async with sessions.begin() as session:
            await _service(session, workspace).create(alice, broken)
    paths = [e["path"] for e in refused.value.details["errors"]]
    assert paths == ["changes[0].path", "changes[0].content"]
    async with sessions() as session:
        assert await session.scalar(select(Task).where(Task.title == "escape")) is None


async def test_a_task_whose_preview_cannot_be_computed_stays_draft(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await _user(sessions, "submitter")
    draft = _draft(workspace)
    unplannable = TaskDraft(  # valid, but its root is outside the workspace roots
        type=draft.type,
        title=draft.title,
        payload={**draft.payload, "root": str(workspace.parent)},
    )
    async with sessions.begin() as session:
        task = await _service(session, workspace).create(alice, unplannable)
    with pytest.raises(InvalidInput, match="outside the workspace roots"):
        async with sessions.begin() as session:
            await _service(session, workspace).submit(alice, task.id)
    async with sessions() as session:
        fresh = await session.get(Task, task.id)
        assert fresh is not None
        assert fresh.state == "DRAFT"
        assert fresh.preview_digest is None
    assert await _events(sessions, task) == ["task:created"]


async def test_policy_auto_approval_is_a_recorded_system_decision(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await _user(sessions, "submitter")
    async with sessions.begin() as session:
        session.add(
            PolicyVersion(
                version=3,
                document={
                    "rules": [
                        {"name": "small edits", "task_types": ["files.*"], "auto_approve_below": 90}
                    ]
                },
            )
        )
    async with sessions.begin() as session:
        service = _service(session, workspace)
        task = await service.create(alice, _draft(workspace))
        submission = await service.submit(alice, task.id)
    assert submission.auto_approved
    assert submission.task.approval_deadline is not None
    assert submission.task.policy_version == 3
    async with sessions() as session:
        approved = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.subject == f"task:{task.id}", AuditEvent.type == "approval:approved"
            )
        )
    assert approved is not None
    assert (approved.actor_kind, approved.actor_id) == ("system", "system")
    assert approved.data["policy_version"] == 3


async def test_edit_only_while_draft_and_only_by_the_submitter(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await _user(sessions, "submitter")
    bob = await _user(sessions, "submitter")
    async with sessions.begin() as session:
        task = await _service(session, workspace).create(alice, _draft(workspace))
    with pytest.raises(Forbidden):
        async with sessions.begin() as session:
            await _service(session, workspace).update(bob, task.id, TaskChanges(title="mine"))
    async with sessions.begin() as session:
        edited = await _service(session, workspace).update(
            alice, task.id, TaskChanges(title="scale the api to 3", priority=10)
        )
    assert (edited.title, edited.priority) == ("scale the api to 3", 10)
    async with sessions.begin() as session:
        await _service(session, workspace).submit(alice, task.id)
    with pytest.raises(Conflict, match="DRAFT"):
        async with sessions.begin() as session:
            await _service(session, workspace).update(alice, task.id, TaskChanges(title="late"))


async def test_viewers_cannot_create_and_unknown_types_are_refused(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    viewer = await _user(sessions, "viewer")
    alice = await _user(sessions, "submitter")
    with pytest.raises(Forbidden):
        async with sessions.begin() as session:
            await _service(session, workspace).create(viewer, _draft(workspace))
    draft = _draft(workspace)
    with pytest.raises(InvalidInput, match=r"files\.write"):
        async with sessions.begin() as session:
            await _service(session, workspace).create(
                alice, TaskDraft(type="no.such.type", title=draft.title)
            )


async def test_cancel_then_cancel_again_is_an_invalid_transition(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await _user(sessions, "submitter")
    async with sessions.begin() as session:
        task = await _service(session, workspace).create(alice, _draft(workspace))
    async with sessions.begin() as session:
        cancelled = await _service(session, workspace).cancel(alice, task.id, "not needed")
    assert cancelled.state == "CANCELLED"
    with pytest.raises(InvalidTransition):
        async with sessions.begin() as session:
            await _service(session, workspace).cancel(alice, task.id, "again")
    assert (await _events(sessions, task))[-1] == "task:cancelled"


async def test_a_concurrent_edit_loses_with_a_conflict(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await _user(sessions, "submitter")
    async with sessions.begin() as session:
        task = await _service(session, workspace).create(alice, _draft(workspace))
    first, second = sessions(), sessions()
    try:
        # Both read version 1, each in its own short transaction (as two requests would;
        # kept referenced: the identity map holds objects weakly).
        loaded = []
        for session in (first, second):
            loaded.append(await session.get(Task, task.id))
            await session.commit()
        assert [t.version for t in loaded if t is not None] == [1, 1]
        await _service(first, workspace).update(alice, task.id, TaskChanges(title="one"))
        await first.commit()
        with pytest.raises(Conflict, match="changed meanwhile"):
            await _service(second, workspace).update(alice, task.id, TaskChanges(title="two"))
    finally:
        await first.close()
        await second.close()


async def test_list_paginates_and_sorts(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    alice = await _user(sessions, "submitter")
    async with sessions.begin() as session:
        service = _service(session, workspace)
        for priority in (5, 1, 3):
            draft = _draft(workspace)
            await service.create(
                alice,
                TaskDraft(
                    type=draft.type,
                    title=f"p{priority}",
                    payload=draft.payload,
                    priority=priority,
                ),
            )
    async with sessions() as session:
        service = _service(session, workspace)
        page, total = await service.list_tasks(
            alice, limit=2, sort_by="created_at", sort_order="asc"
        )
        assert total == 3
        assert [t.title for t in page] == ["p5", "p1"]
        rest, _ = await service.list_tasks(alice, page=2, limit=2, sort_order="asc")
        assert [t.title for t in rest] == ["p3"]
        with pytest.raises(InvalidInput):
            await service.list_tasks(alice, limit=101)
