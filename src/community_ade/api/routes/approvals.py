"""Approvals: the review queue, the approval view, and decisions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from community_ade.api.deps import PrincipalDep, ReviewsDep, TasksDep
from community_ade.api.schemas import (
    AccountingOut,
    ApprovalOut,
    DecisionBody,
    DecisionOut,
    DelegateBody,
    Page,
    ReviewOut,
    TaskOut,
)
from community_ade.approvals.reviews import Outcome, ReviewAction

router = APIRouter(prefix="/approvals", tags=["approvals"])


@router.get("", response_model=Page[TaskOut])
async def list_approvals(
    principal: PrincipalDep,
    reviews: ReviewsDep,
    awaiting: Annotated[
        str | None, Query(pattern="^me$", description="'me': only what I may still decide")
    ] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Page[TaskOut]:
    """Tasks under review, oldest first."""
    items, total = await reviews.open_for_review(
        principal, awaiting_me=awaiting == "me", page=page, limit=limit
    )
    return Page(
        items=[TaskOut.model_validate(t) for t in items], page=page, limit=limit, total=total
    )


@router.get("/{task_id}", response_model=ApprovalOut)
async def get_approval(
    task_id: uuid.UUID, principal: PrincipalDep, tasks: TasksDep, reviews: ReviewsDep
) -> ApprovalOut:
    """The approval view: which vote filled which slot, and what still blocks."""
    task = await tasks.get(principal, task_id)
    accounting = await reviews.accounting(task)
    return ApprovalOut(
        task=TaskOut.model_validate(task),
        accounting=AccountingOut.of(accounting) if accounting else None,
        reviews=[ReviewOut.model_validate(r) for r in await reviews.reviews_of(task)],
    )


def _out(outcome: Outcome) -> DecisionOut:
    return DecisionOut(
        task=TaskOut.model_validate(outcome.task),
        review=ReviewOut.model_validate(outcome.review),
        delegated_for=list(outcome.delegated_for),
        accounting=AccountingOut.of(outcome.accounting) if outcome.accounting else None,
        repeated=outcome.repeated,
    )


@router.post("/{task_id}/approve", response_model=DecisionOut)
async def approve(
    task_id: uuid.UUID, body: DecisionBody, principal: PrincipalDep, reviews: ReviewsDep
) -> DecisionOut:
    outcome = await reviews.decide(
        principal, task_id, ReviewAction.APPROVE, body.digest, comment=body.comment
    )
    return _out(outcome)


@router.post("/{task_id}/reject", response_model=DecisionOut)
async def reject(
    task_id: uuid.UUID, body: DecisionBody, principal: PrincipalDep, reviews: ReviewsDep
) -> DecisionOut:
    outcome = await reviews.decide(
        principal, task_id, ReviewAction.REJECT, body.digest, comment=body.comment
    )
    return _out(outcome)


@router.post("/{task_id}/request-changes", response_model=DecisionOut)
async def request_changes(
    task_id: uuid.UUID, body: DecisionBody, principal: PrincipalDep, reviews: ReviewsDep
) -> DecisionOut:
    outcome = await reviews.decide(
        principal, task_id, ReviewAction.REQUEST_CHANGES, body.digest, comment=body.comment
    )
    return _out(outcome)


@router.post("/{task_id}/delegate", response_model=DecisionOut)
async def delegate(
    task_id: uuid.UUID, body: DelegateBody, principal: PrincipalDep, reviews: ReviewsDep
) -> DecisionOut:
    """Hand this review to another user: their approval also counts for you here."""
    outcome = await reviews.decide(
        principal,
        task_id,
        ReviewAction.DELEGATE,
        body.digest,
        comment=body.comment,
        delegate_to=body.delegate_to,
    )
    return _out(outcome)
