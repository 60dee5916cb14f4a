"""Batch decisions (architecture §4): many decisions in one transaction, each item in its own
savepoint, so an item is applied whole or not at all and the others go on. Shared by the
API (``POST /approvals/batch``) and the dashboard's multi-select."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.reviews import DecisionSurface, ReviewAction, ReviewService
from community_ade.auth.principal import Permission, Principal, require
from community_ade.errors import AdeError


@dataclass(frozen=True)
class BatchDecision:
    task_id: uuid.UUID
    action: ReviewAction
    digest: str
    comment: str = ""
    delegate_to: uuid.UUID | None = None  # for ``delegate`` only


@dataclass(frozen=True)
class ItemResult:
    """``result`` is ``ok`` or the error code (``stale_preview``, ``not_eligible``,
    ``already_decided``, ...); ``state`` is the task's state after an ``ok``."""

    task_id: uuid.UUID
    result: str
    state: str | None = None
    detail: str | None = None


async def decide_each(
    session: AsyncSession,
    reviews: ReviewService,
    principal: Principal,
    decisions: Iterable[BatchDecision],
    *,
    surface: DecisionSurface,
) -> list[ItemResult]:
    # Refused whole, not item by item: without the permission no item could succeed.
    require(principal, Permission.REVIEW)
    results = []
    for item in decisions:
        try:
            async with session.begin_nested():
                outcome = await reviews.decide(
                    principal,
                    item.task_id,
                    item.action,
                    item.digest,
                    surface=surface,
                    comment=item.comment,
                    delegate_to=item.delegate_to,
                )
            results.append(ItemResult(item.task_id, "ok", state=outcome.task.state))
        except AdeError as exc:
            results.append(ItemResult(item.task_id, exc.code, detail=exc.message))
    return results
