"""Helpers of the execution tests: a Runtime on a test queue and lock domain, users, an
auto-approving policy, and tasks submitted through the real TaskService."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from conftest import forget_domain
from sqlalchemy import select

from community_ade.approvals.policy_document import PolicyDocument
from community_ade.approvals.risk import ResourceRef
from community_ade.approvals.service import TaskDraft, TaskService
from community_ade.auth.principal import Principal
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage import db
from community_ade.storage.models import AuditEvent, PolicyVersion, Task, User

AUTO = {"rules": [{"name": "auto", "task_types": ["*"], "auto_approve_below": 100}]}


def settings_for(
    database_url: str, redis_url: str, tmp_path: Path, name: str, **extra: Any
) -> Settings:
    """Settings on the test's own queue (and lock domain) ``name``, fast retries."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "redis_url": redis_url,
        "workspace_roots": [tmp_path / "workspaces"],
        "queue_name": name,
        "lock_domain": name,
        "worker_backoff_base_seconds": 0.05,
        "worker_backoff_cap_seconds": 0.2,
        "worker_reconcile_seconds": 0.5,
    }
    return Settings(**(values | extra))


@asynccontextmanager
async def auto_approving_runtime(
    database_url: str, redis_url: str, tmp_path: Path, name: str, **extra: Any
) -> AsyncIterator[Runtime]:
    """A Runtime on queue and lock domain ``name`` whose policy approves every task, with
    a workspace ``ws`` (``extra``: more settings); the domain's Redis keys are deleted
    afterwards."""
    (tmp_path / "workspaces" / "ws").mkdir(parents=True)
    settings = settings_for(database_url, redis_url, tmp_path, name, **extra)
    try:
        async with open_runtime(settings) as rt:
            await set_policy(rt, AUTO)
            yield rt
    finally:
        await forget_domain(redis_url, name)


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    engine = db.create_engine(str(settings.database_url))
    await db.upgrade(engine)
    await engine.dispose()
    async with Runtime.open(settings) as runtime:
        yield runtime


async def make_user(runtime: Runtime, role: str = "submitter") -> Principal:
    user = User(username=f"{role}-{uuid.uuid4().hex[:6]}", role=role)
    async with runtime.sessions.begin() as session:
        session.add(user)
    return Principal(id=user.id, kind="human", name=user.username, role=role, groups=frozenset())


async def set_policy(runtime: Runtime, document: Mapping[str, Any]) -> None:
    PolicyDocument.model_validate(document)
    async with runtime.sessions.begin() as session:
        latest = await session.scalar(
            select(PolicyVersion.version).order_by(PolicyVersion.version.desc()).limit(1)
        )
        session.add(PolicyVersion(version=(latest or 0) + 1, document=dict(document)))


def tasks(runtime: Runtime, session: Any) -> TaskService:
    return TaskService(session, plan_context=runtime.plan_context(session))


async def submit(
    runtime: Runtime,
    who: Principal,
    task_type: str,
    payload: Mapping[str, Any],
    resources: Sequence[ResourceRef] = (),
    *,
    priority: int = 100,
) -> Task:
    """Create and submit a task (one transaction each, as the API does)."""
    draft = TaskDraft(
        type=task_type,
        title=f"{task_type} test",
        payload=payload,
        resources=resources,
        priority=priority,
    )
    async with runtime.sessions.begin() as session:
        task = await tasks(runtime, session).create(who, draft)
    async with runtime.sessions.begin() as session:
        submission = await tasks(runtime, session).submit(who, task.id)
    return submission.task


async def reload(runtime: Runtime, task_id: uuid.UUID) -> Task:
    async with runtime.sessions() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        return task


async def events_of(runtime: Runtime, task_id: uuid.UUID) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.type)
            .where(AuditEvent.subject == f"task:{task_id}")
            .order_by(AuditEvent.seq)
        )
        return list(rows)


def write_payload(root: Path, path: str, content: str) -> dict[str, Any]:
    return {"root": str(root), "changes": [{"path": path, "action": "write", "content": content}]}
