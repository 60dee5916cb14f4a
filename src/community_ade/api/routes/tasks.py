"""Tasks: create, read, edit while DRAFT, submit (preview + routing), cancel, preview."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.api.deps import (
    PrincipalApartDep,
    PrincipalDep,
    RuntimeDep,
    SessionDep,
    TasksDep,
    bearer,
)
from community_ade.api.idempotency import IdempotencyKeyHeader, idempotent
from community_ade.api.schemas import (
    MAX_PAGE,
    CancelBody,
    Page,
    PreviewOut,
    ReviewersOut,
    RiskOut,
    SortBy,
    SortOrder,
    SubmitOut,
    TaskCreate,
    TaskOut,
    TaskUpdate,
)
from community_ade.approvals.decision_wait import MAX_WAIT_SECONDS, wait_for_decision
from community_ade.approvals.service import TaskChanges, TaskService
from community_ade.approvals.states import TaskState
from community_ade.auth.tokens import parse_token
from community_ade.errors import NotFound
from community_ade.storage.models import Preview, Task

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.post("", response_model=TaskOut, status_code=status.HTTP_201_CREATED)
async def create_task(
    body: TaskCreate,
    principal: PrincipalDep,
    tasks: TasksDep,
    request: Request,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> TaskOut | JSONResponse:
    """Create a DRAFT task. Agents create tasks on their owner's behalf."""

    async def run() -> TaskOut:
        task = await tasks.create(principal, body.draft())
        return TaskOut.model_validate(task)

    return await idempotent(
        idempotency_key, request, session, principal, body, run, status_code=201
    )


@router.get("", response_model=Page[TaskOut])
async def list_tasks(
    principal: PrincipalDep,
    tasks: TasksDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    sort_by: SortBy = "created_at",
    sort_order: SortOrder = "desc",
    state: TaskState | None = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
) -> Page[TaskOut]:
    items, total = await tasks.list_tasks(
        principal,
        state=state,
        task_type=type,
        page=page,
        limit=limit,
        sort_by=sort_by,
        sort_order=sort_order,
    )
    return Page(
        items=[TaskOut.model_validate(t) for t in items], page=page, limit=limit, total=total
    )


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(task_id: uuid.UUID, principal: PrincipalDep, tasks: TasksDep) -> TaskOut:
    return TaskOut.model_validate(await tasks.get(principal, task_id))


@router.patch("/{task_id}", response_model=TaskOut)
async def update_task(
    task_id: uuid.UUID, body: TaskUpdate, principal: PrincipalDep, tasks: TasksDep
) -> TaskOut:
    """Edit a DRAFT task (its submitter, or an admin)."""
    task = await tasks.update(
        principal,
        task_id,
        TaskChanges(
            title=body.title,
            description=body.description,
            payload=body.payload,
            resources=None if body.resources is None else [r.to_domain() for r in body.resources],
            priority=body.priority,
        ),
    )
    return TaskOut.model_validate(task)


@router.post("/{task_id}/submit", response_model=SubmitOut)
async def submit_task(
    task_id: uuid.UUID,
    principal: PrincipalDep,
    tasks: TasksDep,
    request: Request,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> SubmitOut | JSONResponse:
    """Validate, preview without side effects, and route for review (or auto-approve)."""

    async def run() -> SubmitOut:
        submission = await tasks.submit(principal, task_id)
        return SubmitOut(
            task=TaskOut.model_validate(submission.task),
            preview_digest=submission.plan.digest,
            summary=submission.plan.summary,
            risk=RiskOut.of(submission.risk),
            requirements=submission.task.requirements or {},
            eligible_reviewers=ReviewersOut.of(submission.reviewers),
            auto_approved=submission.auto_approved,
        )

    return await idempotent(idempotency_key, request, session, principal, None, run)


@router.get("/{task_id}/decision")
async def task_decision(
    task_id: uuid.UUID,
    principal: PrincipalApartDep,
    runtime: RuntimeDep,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    wait_seconds: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
) -> dict[str, Any]:
    """Where the task's decision stands (a long-poll): answers as soon as it is decided,
    or after ``wait_seconds`` with ``decided: false`` and on whom it waits. The
    decision's reviews carry the reviewers' comments. For clients without a WebSocket
    (the coding-agent hooks, `ade hook`); ask again while it says waiting."""

    async def read(session: AsyncSession) -> Task:
        return await TaskService(session, plan_context=runtime.plan_context(session)).get(
            principal, task_id
        )

    return await wait_for_decision(
        runtime.sessions,
        request.app.state.events_hub,
        read,
        task_id=task_id,
        principal_id=principal.id,
        # Authenticated above, so the token parses; a revoke ends the wait at once.
        token_hash=parse_token(credentials.credentials.strip() if credentials else "").token_hash,
        wait=wait_seconds,
    )


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel_task(
    task_id: uuid.UUID, body: CancelBody, principal: PrincipalDep, tasks: TasksDep
) -> TaskOut:
    return TaskOut.model_validate(await tasks.cancel(principal, task_id, body.reason))


@router.post("/{task_id}/apply", response_model=TaskOut, status_code=status.HTTP_202_ACCEPTED)
async def apply_task(task_id: uuid.UUID, principal: PrincipalDep, tasks: TasksDep) -> TaskOut:
    """Queue an APPROVED task for a worker (its submitter or an admin); the way to apply
    a task whose type's policy says `apply: manual`. 409 unless the task is APPROVED."""
    return TaskOut.model_validate(await tasks.request_apply(principal, task_id))


@router.get("/{task_id}/preview", response_model=PreviewOut)
async def get_preview(
    task_id: uuid.UUID, principal: PrincipalDep, tasks: TasksDep, session: SessionDep
) -> PreviewOut:
    """The stash: exactly the change set that will be applied once approved."""
    task = await tasks.get(principal, task_id)
    preview = await session.scalar(
        select(Preview).where(Preview.task_id == task.id, Preview.digest == task.preview_digest)
    )
    if preview is None:
        raise NotFound(f"task {task_id} has no preview yet: submit it first")
    return PreviewOut.model_validate(preview)
