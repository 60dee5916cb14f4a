"""The review queue at ``/``: what waits on the visitor first, filters, sorting, paging,
and multi-select with batch approve/reject showing the result of every item."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Select, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from community_ade.api.deps import ReviewsDep, SessionDep
from community_ade.approvals.batch import BatchDecision, ItemResult, decide_each
from community_ade.approvals.reviews import (
    COUNT_CAP,
    DecisionSurface,
    ReviewAction,
    awaiting,
    standing_covers,
)
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState
from community_ade.auth.principal import Permission, Principal, require
from community_ade.dashboard.filters import RISK_BANDS
from community_ade.dashboard.lookups import agent_names, usernames
from community_ade.dashboard.web import NavItem, PageRoute, VisitorDep, render
from community_ade.errors import InvalidInput
from community_ade.storage.models import Agent, Task, User

router = APIRouter(route_class=PageRoute)
nav = NavItem("Review queue", "/", Permission.TASK_READ, order=10)

PAGE_SIZE = 25
BATCH_MAX = 100
SORTS = {
    "submitted": Task.submitted_at,
    "risk": Task.risk_score,
    "deadline": Task.review_deadline,
    "updated": Task.updated_at,
}
STATE_PATTERN = "^(" + "|".join(["open", *(s.value for s in TaskState)]) + ")$"
RESULT_TEXT = {
    "ok": "done",
    "stale_preview": "stale preview: the change was edited after you loaded the page; "
    "open it and review the new version",
    "already_decided": "already decided",
    "not_eligible": "you are not an eligible reviewer",
    "self_review": "you submitted it (separation of duties)",
    "not_found": "no such task",
    "forbidden": "not permitted",
    "fresh_auth_required": "needs a fresh sign-in: open the task and decide there",
}


@dataclass(frozen=True)
class QueueFilters:
    state: str = "open"
    type: str = ""
    risk: str = ""
    agent: str = ""
    submitter: str = ""
    mine: bool = False
    sort: str = "submitted"
    order: str = "asc"
    page: int = 1

    def query_string(self, **changes: Any) -> str:
        values = {**self.__dict__, **changes}
        pairs = [
            (k, "1" if v is True else str(v)) for k, v in values.items() if v not in ("", False)
        ]
        return "&".join(f"{k}={v}" for k, v in pairs)


@dataclass(frozen=True)
class QueueRow:
    task: Task
    mine: bool
    submitter: str
    agent: str | None


def _filtered(f: QueueFilters, task_id: uuid.UUID | None) -> Select[Any]:
    """The tasks the filters select (without the "waiting on me" split)."""
    query = select(Task)
    if task_id is not None:
        query = query.where(Task.id == task_id)
    elif f.state == "open":
        query = query.where(Task.state.in_([s.value for s in OPEN_FOR_REVIEW]))
    else:
        query = query.where(Task.state == f.state)
    if f.type:
        query = query.where(Task.type == f.type)
    if f.risk:
        low, high = RISK_BANDS[f.risk]
        query = query.where(Task.risk_score >= low, Task.risk_score < high)
    if f.agent:
        query = query.where(Task.agent_id.in_(select(Agent.id).where(Agent.name == f.agent)))
    if f.submitter:
        query = query.where(
            Task.submitter_id.in_(select(User.id).where(User.username == f.submitter))
        )
    return query


async def _count(session: AsyncSession, query: Select[Any]) -> int:
    """How many rows ``query`` selects, counting up to ``COUNT_CAP + 1`` ("more")."""
    capped = query.with_only_columns(Task.id).limit(COUNT_CAP + 1).subquery()
    return int(await session.scalar(select(func.count()).select_from(capped)) or 0)


async def load_queue(
    session: AsyncSession,
    principal: Principal,
    f: QueueFilters,
    *,
    task_id: uuid.UUID | None = None,
) -> tuple[list[QueueRow], int]:
    """One page of the queue (or the one row of ``task_id``) and the capped total.

    What waits on the principal comes first. Sorting by that predicate would evaluate it
    for every open task; instead the page is taken from two ordered, limited queries —
    the tasks waiting on the principal, then the others — which the review queue's
    indexes serve in order (architecture §12: the queue stays fast at 100 000 tasks)."""
    require(principal, Permission.TASK_READ)
    reviewer = principal.can(Permission.REVIEW)
    waits_on_me = awaiting(principal, await standing_covers(session, principal))
    query = _filtered(f, task_id)
    if f.mine:
        query = query.where(waits_on_me if reviewer else false())
    column = SORTS[f.sort]
    order = (column.asc() if f.order == "asc" else column.desc()).nulls_last()

    async def page(selection: Select[Any], offset: int, limit: int) -> list[Task]:
        rows = await session.scalars(selection.order_by(order, Task.id).offset(offset).limit(limit))
        return list(rows)

    total = await _count(session, query)
    offset = (f.page - 1) * PAGE_SIZE
    if f.mine or not reviewer or task_id is not None:
        tasks = await page(query, offset, PAGE_SIZE)
    else:
        waiting = query.where(waits_on_me)
        first = await _count(session, waiting)
        tasks = await page(waiting, offset, PAGE_SIZE) if offset < first else []
        if len(tasks) < PAGE_SIZE:
            others = query.where(~waits_on_me)
            tasks += await page(others, max(0, offset - first), PAGE_SIZE - len(tasks))
    mine: set[uuid.UUID] = set()
    if reviewer and tasks:
        ids = [t.id for t in tasks]
        mine = set(await session.scalars(select(Task.id).where(Task.id.in_(ids), waits_on_me)))
    people = await usernames(session, [t.submitter_id for t in tasks])
    agents = await agent_names(session, [t.agent_id for t in tasks])
    rows = [
        QueueRow(
            t,
            t.id in mine,
            people.get(str(t.submitter_id), "?"),
            agents.get(str(t.agent_id)) if t.agent_id else None,
        )
        for t in tasks
    ]
    return rows, total


async def _choices(session: AsyncSession) -> dict[str, list[str]]:
    """The values the filter menus offer."""
    types = await session.scalars(select(Task.type).distinct().order_by(Task.type))
    agents = await session.scalars(select(Agent.name).order_by(Agent.name).limit(200))
    people = await session.scalars(
        select(User.username).where(User.disabled_at.is_(None)).order_by(User.username).limit(200)
    )
    return {"types": list(types), "agents": list(agents), "submitters": list(people)}


async def _filters(
    state: Annotated[str, Query(pattern=STATE_PATTERN)] = "open",
    type: Annotated[str, Query(max_length=100)] = "",
    risk: Literal["", "low", "medium", "high"] = "",
    agent: Annotated[str, Query(max_length=100)] = "",
    submitter: Annotated[str, Query(max_length=64)] = "",
    mine: bool = False,
    sort: Literal["submitted", "risk", "deadline", "updated"] = "submitted",
    order: Literal["asc", "desc"] = "asc",
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> QueueFilters:
    return QueueFilters(state, type, risk, agent, submitter, mine, sort, order, page)


async def _page(
    request: Request,
    session: AsyncSession,
    visitor: VisitorDep,
    f: QueueFilters,
    *,
    results: list[tuple[ItemResult, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    rows, total = await load_queue(session, visitor.principal, f)
    pages = max(1, math.ceil(min(total, COUNT_CAP) / PAGE_SIZE))
    return render(
        request,
        "queue/index.html",
        {
            "rows": rows,
            "total": total,
            "capped": total > COUNT_CAP,
            "pages": pages,
            "f": f,
            "choices": await _choices(session),
            "states": ["open", *(s.value for s in TaskState)],
            "results": results,
            "result_text": RESULT_TEXT,
        },
        visitor=visitor,
        status_code=status_code,
    )


@router.get("/")
async def queue(
    request: Request,
    session: SessionDep,
    visitor: VisitorDep,
    f: Annotated[QueueFilters, Depends(_filters)],
) -> HTMLResponse:
    return await _page(request, session, visitor, f)


@router.get("/queue/row/{task_id}")
async def queue_row(
    request: Request,
    task_id: uuid.UUID,
    session: SessionDep,
    visitor: VisitorDep,
    f: Annotated[QueueFilters, Depends(_filters)],
) -> Response:
    """One row, for the live feed to insert when a task enters review; with the page's
    filters, so a row the page would not list is not inserted (204)."""
    rows, _ = await load_queue(session, visitor.principal, f, task_id=task_id)
    if not rows:
        return Response(status_code=204)
    return render(request, "queue/_row.html", {"row": rows[0]}, visitor=visitor)


def _decisions(form: FormData) -> list[BatchDecision]:
    """The batch form: the ticked rows (or the one row whose button was pressed), each
    with the digest of the preview its row showed."""
    comment = str(form.get("comment") or "")[:5000]
    only = str(form.get("only") or "")
    if only:
        task_ids, _, action = only.partition(":")
        chosen = [task_ids]
    else:
        chosen = [str(v) for v in form.getlist("task_ids")]
        action = str(form.get("action") or "")
    if action not in (ReviewAction.APPROVE, ReviewAction.REJECT):
        raise InvalidInput("choose approve or reject")
    if not chosen:
        raise InvalidInput("select at least one task")
    if len(chosen) > BATCH_MAX:
        raise InvalidInput(f"at most {BATCH_MAX} tasks at once")
    decisions = []
    for raw in chosen:
        try:
            task_id = uuid.UUID(raw)
        except ValueError:
            raise InvalidInput(f"not a task id: {raw[:40]!r}") from None
        digest = str(form.get(f"digest_{task_id}") or "")
        decisions.append(BatchDecision(task_id, ReviewAction(action), digest, comment))
    return decisions


@router.post("/queue/batch")
async def batch(
    request: Request, session: SessionDep, reviews: ReviewsDep, visitor: VisitorDep
) -> HTMLResponse:
    decisions = _decisions(await request.form())
    results = await decide_each(
        session, reviews, visitor.principal, decisions, surface=DecisionSurface.DASHBOARD
    )
    rows = await session.execute(
        select(Task.id, Task.title).where(Task.id.in_([r.task_id for r in results]))
    )
    titles = {task_id: title for task_id, title in rows}
    named = [(r, titles.get(r.task_id, str(r.task_id))) for r in results]
    return await _page(request, session, visitor, QueueFilters(), results=named)
