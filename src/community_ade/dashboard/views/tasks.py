"""Tasks: the list, and the detail page that is also the approval view — preview diff,
risk breakdown, requirement accounting, history, execution record, and the decision."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.api.deps import AuditSignerDep, ReviewsDep, SessionDep, TasksDep
from community_ade.api.errors import STATUS_BY_CODE
from community_ade.approvals.batch import BatchDecision, decide_each
from community_ade.approvals.review_request import risk_breakdown
from community_ade.approvals.reviews import DecisionSurface, ReviewAction, ReviewService
from community_ade.approvals.service import TaskService
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState
from community_ade.approvals.sweep import latest_clock_decision
from community_ade.audit import log as audit
from community_ade.audit.notes import Signer
from community_ade.auth.principal import Permission
from community_ade.dashboard.lookups import actor_names
from community_ade.dashboard.views.queue import RESULT_TEXT
from community_ade.dashboard.views.receipts import receipt_list
from community_ade.dashboard.web import NavItem, PageRoute, Visitor, VisitorDep, redirect, render
from community_ade.errors import FreshAuthRequired, InvalidInput
from community_ade.storage.models import Preview, Task, User

router = APIRouter(route_class=PageRoute)
nav = NavItem("Tasks", "/tasks", Permission.TASK_READ, order=20)

PAGE_SIZE = 25
STATE_PATTERN = "^(" + "|".join(["any", *(s.value for s in TaskState)]) + ")$"
DONE = {
    ReviewAction.APPROVE: "approved",
    ReviewAction.REJECT: "rejected",
    ReviewAction.REQUEST_CHANGES: "asked for changes on",
    ReviewAction.DELEGATE: "delegated",
}


@router.get("/tasks")
async def task_list(
    request: Request,
    visitor: VisitorDep,
    tasks: TasksDep,
    session: SessionDep,
    state: Annotated[str, Query(pattern=STATE_PATTERN)] = "any",
    type: Annotated[str, Query(max_length=100)] = "",
    sort_by: Literal["created_at", "updated_at", "risk_score", "state"] = "updated_at",
    sort_order: Literal["asc", "desc"] = "desc",
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> HTMLResponse:
    items, total = await tasks.list_tasks(
        visitor.principal,
        state=None if state == "any" else TaskState(state),
        task_type=type or None,
        page=page,
        limit=PAGE_SIZE,
        sort_by=sort_by,
        sort_order=sort_order,
    )
    people = [t.submitter_id for t in items] + [t.agent_id for t in items]
    names = await actor_names(session, people)
    query = {"state": state, "type": type, "sort_by": sort_by, "sort_order": sort_order}
    return render(
        request,
        "tasks/list.html",
        {
            "items": items,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / PAGE_SIZE)),
            "query": query,
            "names": names,
            "states": [s.value for s in TaskState],
            "types": list(await session.scalars(select(Task.type).distinct().order_by(Task.type))),
        },
        visitor=visitor,
    )


async def _detail(
    request: Request,
    visitor: Visitor,
    task_id: uuid.UUID,
    session: AsyncSession,
    tasks: TaskService,
    reviews: ReviewService,
    signer: Signer,
    *,
    decision_error: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    task = await tasks.get(visitor.principal, task_id)
    preview = None
    if task.preview_digest:
        preview = await session.scalar(
            select(Preview).where(Preview.task_id == task.id, Preview.digest == task.preview_digest)
        )
    accounting = await reviews.accounting(task)
    votes = await reviews.reviews_of(task)
    surfaces = await reviews.surfaces(task, votes)
    events = list(reversed(await audit.list_events(session, subject=f"task:{task.id}", limit=200)))
    people: list[Any] = [task.submitter_id, task.agent_id]
    people += [v.actor_id for v in votes] + [v.via_delegation_for for v in votes]
    people += [v.delegate_to for v in votes] + [e.actor_id for e in events]
    if accounting is not None:
        people += [f.vote.actor for f in accounting.fills] + [
            f.counted_as for f in accounting.fills
        ]
        people += [i.vote.actor for i in accounting.ignored]
    names = await actor_names(session, people)
    can_decide = visitor.can("review") and TaskState(task.state) in OPEN_FOR_REVIEW
    reviewers: list[str] = []
    if can_decide:
        reviewers = list(
            await session.scalars(
                select(User.username)
                .where(
                    User.role.in_(("reviewer", "admin")),
                    User.disabled_at.is_(None),
                    User.id != visitor.principal.id,
                )
                .order_by(User.username)
                .limit(200)
            )
        )
    return render(
        request,
        "tasks/detail.html",
        {
            "task": task,
            "preview": preview,
            "accounting": accounting,
            "votes": votes,
            "surfaces": {review_id: s.label for review_id, s in surfaces.items()},
            "events": events,
            "clock_decision": await latest_clock_decision(session, task),
            "names": names,
            "can_decide": can_decide,
            "reviewers": reviewers,
            "risk_rows": risk_breakdown(task.risk_inputs),
            "decision_error": decision_error,
            "receipts": await receipt_list(session, signer, task),
        },
        visitor=visitor,
        status_code=status_code,
    )


@router.get("/tasks/{task_id}")
@router.get("/approvals/{task_id}")
async def task_detail(
    request: Request,
    task_id: uuid.UUID,
    visitor: VisitorDep,
    session: SessionDep,
    tasks: TasksDep,
    reviews: ReviewsDep,
    signer: AuditSignerDep,
) -> HTMLResponse:
    return await _detail(request, visitor, task_id, session, tasks, reviews, signer)


async def _step_up(
    request: Request, visitor: Visitor, task_id: uuid.UUID, tasks: TaskService
) -> Response:
    """Step-up: through the identity provider (or the login form) again, asking for a
    login as fresh as the task's rules want, then back to this task's decision form."""
    task = await tasks.get(visitor.principal, task_id)
    max_age = int((task.requirements or {}).get("fresh_auth_seconds") or 0) or 1
    back = quote(f"/tasks/{task_id}")
    if request.app.state.runtime.settings.oidc_issuer:
        target = f"/auth/oidc/login?next={back}&max_age={max_age}"
    else:
        target = f"/login?reauth=true&next={back}"
    return redirect(
        target,
        flash="Deciding on this task needs a fresh sign-in: confirm who you are, then decide.",
    )


@router.post("/tasks/{task_id}/decide")
async def decide(
    request: Request,
    task_id: uuid.UUID,
    visitor: VisitorDep,
    session: SessionDep,
    tasks: TasksDep,
    reviews: ReviewsDep,
    signer: AuditSignerDep,
    action: Annotated[Literal["approve", "reject", "request_changes", "delegate"], Form()],
    digest: Annotated[str, Form(max_length=64)],
    comment: Annotated[str, Form(max_length=5000)] = "",
    delegate_to: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """One decision, in a savepoint: refused (a stale preview, say) it changes nothing and
    the page says why, showing the current preview."""
    delegate_id = None
    if action == "delegate":
        if not delegate_to:
            raise InvalidInput("choose whom to delegate this review to")
        user = await session.scalar(select(User).where(User.username == delegate_to))
        if user is None:
            raise InvalidInput(f"no user {delegate_to!r}")
        delegate_id = user.id
    decision = BatchDecision(task_id, ReviewAction(action), digest, comment, delegate_id)
    [result] = await decide_each(
        session, reviews, visitor.principal, [decision], surface=DecisionSurface.DASHBOARD
    )
    if result.result == "ok":
        task = await tasks.get(visitor.principal, task_id)
        return redirect(
            f"/tasks/{task_id}",
            flash=f"You {DONE[ReviewAction(action)]} “{task.title}”: it is {result.state}.",
        )
    if result.result == FreshAuthRequired.code:
        return await _step_up(request, visitor, task_id, tasks)
    return await _detail(
        request,
        visitor,
        task_id,
        session,
        tasks,
        reviews,
        signer,
        decision_error={
            "code": result.result,
            "text": RESULT_TEXT.get(result.result, result.result.replace("_", " ")),
            "detail": result.detail or "",
        },
        status_code=STATUS_BY_CODE.get(result.result, 400),
    )
