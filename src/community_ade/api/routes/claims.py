"""Tasks their agent applies (``agent.call``): claim, then report the outcome
(docs/execution.md "Tasks their agent applies")."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from community_ade.api.agent_schemas import ClaimBody, ClaimOut, CompleteBody, FailBody, LeaseOut
from community_ade.api.deps import PrincipalDep, RuntimeDep, SessionDep
from community_ade.api.routes.agents import AgentsDep
from community_ade.api.schemas import TaskOut
from community_ade.execution.claims import ClaimService

router = APIRouter(prefix="/tasks", tags=["tasks"])


async def get_claims(runtime: RuntimeDep, session: SessionDep, agents: AgentsDep) -> ClaimService:
    return ClaimService(
        session, runtime.sessions, agents, max_attempts=runtime.settings.worker_max_attempts
    )


ClaimsDep = Annotated[ClaimService, Depends(get_claims)]


@router.post("/{task_id}/claim", response_model=ClaimOut)
async def claim_task(
    task_id: uuid.UUID,
    body: ClaimBody,
    principal: PrincipalDep,
    claims: ClaimsDep,
    runtime: RuntimeDep,
) -> ClaimOut:
    """The agent that proposed an APPROVED task takes it to apply it itself: APPROVED →
    APPLYING, the task's locks held in a lease, the fencing token answered. 409 unless
    APPROVED (or ``lock_timeout`` when the locks are not granted within
    ``wait_seconds``); 403 for anyone but that agent."""
    claim = await claims.claim(
        principal,
        task_id,
        lease_seconds=body.lease_seconds or runtime.settings.agent_lease_seconds,
        wait_seconds=body.wait_seconds,
    )
    return ClaimOut(
        task=TaskOut.model_validate(claim.task), fence=claim.fence, lease=LeaseOut.of(claim.lease)
    )


@router.post("/{task_id}/complete", response_model=TaskOut)
async def complete_task(
    task_id: uuid.UUID, body: CompleteBody, principal: PrincipalDep, claims: ClaimsDep
) -> TaskOut:
    """The claiming agent reports success: APPLYING → COMPLETED, the claim's locks
    released. 409 ``fence_rejected`` for a claim that lapsed and was taken over."""
    task = await claims.complete(principal, task_id, body.fence, body.summary, body.details)
    return TaskOut.model_validate(task)


@router.post("/{task_id}/fail", response_model=TaskOut)
async def fail_task(
    task_id: uuid.UUID, body: FailBody, principal: PrincipalDep, claims: ClaimsDep
) -> TaskOut:
    """The claiming agent reports failure: back to APPROVED when ``retry`` and attempts
    are left, else FAILED; the claim's locks released."""
    task = await claims.fail(
        principal,
        task_id,
        body.fence,
        error=body.error,
        rollback_outcome=body.rollback_outcome,
        retry=body.retry,
        details=body.details,
    )
    return TaskOut.model_validate(task)
