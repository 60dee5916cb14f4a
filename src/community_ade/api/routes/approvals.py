"""Approvals: the review queue, the approval view, and decisions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.api.deps import PrincipalDep, ReviewsDep, SessionDep, TasksDep
from community_ade.api.idempotency import IdempotencyKeyHeader, idempotent
from community_ade.api.schemas import (
    MAX_PAGE,
    AccountingOut,
    ApprovalOut,
    BatchBody,
    BatchOut,
    BatchResult,
    ClockDecisionOut,
    DecisionBody,
    DecisionOut,
    DelegateBody,
    Page,
    ReviewOut,
    TaskOut,
)
from community_ade.approvals.batch import BatchDecision, decide_each
from community_ade.approvals.reviews import (
    COUNT_CAP,
    DecisionSurface,
    Outcome,
    ReviewAction,
    ReviewService,
)
from community_ade.approvals.sweep import latest_clock_decision
from community_ade.auth.principal import Permission, Principal, require

router = APIRouter(prefix="/approvals", tags=["approvals"])


@router.get("", response_model=Page[TaskOut])
async def list_approvals(
    principal: PrincipalDep,
    reviews: ReviewsDep,
    awaiting: Annotated[
        str | None, Query(pattern="^me$", description="'me': only what I may still decide")
    ] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[TaskOut]:
    """Tasks under review, oldest first. ``total`` stops at 1000 (``total_is_capped``)."""
    items, total = await reviews.open_for_review(
        principal, awaiting_me=awaiting == "me", page=page, limit=limit
    )
    capped = total > COUNT_CAP
    return Page(
        items=[TaskOut.model_validate(t) for t in items],
        page=page,
        limit=limit,
        total=min(total, COUNT_CAP),
        total_is_capped=capped,
    )


@router.get("/{task_id}", response_model=ApprovalOut)
async def get_approval(
    task_id: uuid.UUID,
    principal: PrincipalDep,
    tasks: TasksDep,
    reviews: ReviewsDep,
    session: SessionDep,
) -> ApprovalOut:
    """The approval view: which vote filled which slot, what still blocks, and the
    system's latest decision on a timeout (docs/policies.md §6)."""
    task = await tasks.get(principal, task_id)
    accounting = await reviews.accounting(task)
    clock = await latest_clock_decision(session, task)
    votes = await reviews.reviews_of(task)
    surfaces = await reviews.surfaces(task, votes)
    return ApprovalOut(
        task=TaskOut.model_validate(task),
        accounting=AccountingOut.of(accounting) if accounting else None,
        reviews=[
            ReviewOut.model_validate(r).model_copy(update={"surface": surfaces.get(r.id)})
            for r in votes
        ],
        timeout_decision=ClockDecisionOut(
            event=clock.type,
            outcome=clock.data["outcome"],
            reason=clock.data.get("reason", ""),
            rule=clock.data.get("rule"),
            policy_version=clock.data.get("policy_version"),
            at=clock.ts,
        )
        if clock
        else None,
    )


def _out(outcome: Outcome) -> DecisionOut:
    return DecisionOut(
        task=TaskOut.model_validate(outcome.task),
        review=ReviewOut.model_validate(outcome.review),
        delegated_for=list(outcome.delegated_for),
        accounting=AccountingOut.of(outcome.accounting) if outcome.accounting else None,
        repeated=outcome.repeated,
    )


async def _decide(
    task_id: uuid.UUID,
    action: ReviewAction,
    body: DecisionBody,
    principal: Principal,
    reviews: ReviewService,
    request: Request,
    session: AsyncSession,
    idempotency_key: str | None,
) -> DecisionOut | JSONResponse:
    async def run() -> DecisionOut:
        outcome = await reviews.decide(
            principal,
            task_id,
            action,
            body.digest,
            surface=DecisionSurface.API,
            comment=body.comment,
            delegate_to=body.delegate_to if isinstance(body, DelegateBody) else None,
        )
        return _out(outcome)

    return await idempotent(idempotency_key, request, session, principal, body, run)


def _vote_route(path: str, action: ReviewAction, summary: str) -> None:
    """Register ``POST /approvals/{task_id}/<path>``: the three decisions that take only
    the digest and a comment share everything but their action."""

    async def endpoint(
        task_id: uuid.UUID,
        body: DecisionBody,
        principal: PrincipalDep,
        reviews: ReviewsDep,
        request: Request,
        session: SessionDep,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> DecisionOut | JSONResponse:
        return await _decide(
            task_id, action, body, principal, reviews, request, session, idempotency_key
        )

    router.add_api_route(
        f"/{{task_id}}/{path}",
        endpoint,
        methods=["POST"],
        response_model=DecisionOut,
        name=action.value,
        summary=summary,
        description=summary,
    )


_vote_route("approve", ReviewAction.APPROVE, "Approve the preview named by digest.")
_vote_route("reject", ReviewAction.REJECT, "Reject: a veto, when the reviewer is eligible.")
_vote_route(
    "request-changes",
    ReviewAction.REQUEST_CHANGES,
    "Send the task back to DRAFT; every vote of this round is dismissed.",
)


@router.post("/{task_id}/delegate", response_model=DecisionOut)
async def delegate(
    task_id: uuid.UUID,
    body: DelegateBody,
    principal: PrincipalDep,
    reviews: ReviewsDep,
    request: Request,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> DecisionOut | JSONResponse:
    """Hand this review to another user: their approval also counts for you here."""
    return await _decide(
        task_id, ReviewAction.DELEGATE, body, principal, reviews, request, session, idempotency_key
    )


@router.post("/batch", response_model=BatchOut)
async def batch(
    body: BatchBody,
    principal: PrincipalDep,
    reviews: ReviewsDep,
    request: Request,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> BatchOut | JSONResponse:
    """Many decisions in one request, each with the digest its reviewer saw. Every item
    runs in its own savepoint: it is applied whole or not at all, and its result says
    which (``ok``, ``stale_preview``, ``not_eligible``, ``already_decided``, ...)."""

    # Checked before the idempotency replay: without the permission nothing is answered.
    require(principal, Permission.REVIEW)

    async def run() -> BatchOut:
        decisions = [
            BatchDecision(item.task_id, ReviewAction(item.action), item.digest, item.comment)
            for item in body.items
        ]
        results = await decide_each(
            session, reviews, principal, decisions, surface=DecisionSurface.API
        )
        return BatchOut(
            results=[
                BatchResult(task_id=r.task_id, result=r.result, state=r.state, detail=r.detail)
                for r in results
            ]
        )

    return await idempotent(idempotency_key, request, session, principal, body, run)
