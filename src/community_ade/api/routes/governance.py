"""Policies (versioned, evaluable) and delegations."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from community_ade.api.deps import GovernanceDep, PrincipalDep
from community_ade.api.schemas import (
    DelegationCreate,
    DelegationOut,
    EvaluateBody,
    EvaluateOut,
    PolicyOut,
    ReviewersOut,
    RiskOut,
)
from community_ade.approvals.policy_document import PolicyDocument
from community_ade.approvals.service import requirements_document

router = APIRouter(tags=["policies", "delegations"])


@router.get("/policies", response_model=PolicyOut)
async def get_policy(principal: PrincipalDep, governance: GovernanceDep) -> PolicyOut:
    """The policy in force (version 0: the built-in one, the risk quorum alone)."""
    version, document = await governance.current_policy(principal)
    return PolicyOut(version=version, document=document.model_dump(mode="json"))


@router.put("/policies", response_model=PolicyOut)
async def put_policy(
    body: PolicyDocument, principal: PrincipalDep, governance: GovernanceDep
) -> PolicyOut:
    """Store a new policy version; tasks submitted from now on are routed by it."""
    version = await governance.put_policy(principal, body)
    return PolicyOut(version=version, document=body.model_dump(mode="json"))


@router.post("/policies/evaluate", response_model=EvaluateOut)
async def evaluate_policy(
    body: EvaluateBody, principal: PrincipalDep, governance: GovernanceDep
) -> EvaluateOut:
    """Who would have to approve a task like this? Creates nothing."""
    result = await governance.evaluate(
        principal,
        body.type,
        [r.to_domain() for r in body.resources],
        lines_changed=body.lines_changed,
        call=body.call,
    )
    return EvaluateOut(
        risk=RiskOut.of(result.risk),
        requirements=requirements_document(result.requirements),
        eligible_reviewers=ReviewersOut.of(result.reviewers),
    )


@router.get("/delegations", response_model=list[DelegationOut])
async def list_delegations(
    principal: PrincipalDep, governance: GovernanceDep
) -> list[DelegationOut]:
    return [DelegationOut.model_validate(d) for d in await governance.list_delegations(principal)]


@router.post("/delegations", response_model=DelegationOut, status_code=status.HTTP_201_CREATED)
async def create_delegation(
    body: DelegationCreate, principal: PrincipalDep, governance: GovernanceDep
) -> DelegationOut:
    """'If X approves, approve for me': within the scope and window given."""
    row = await governance.create_delegation(
        principal,
        delegate=body.delegate,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        task_types=body.task_types,
        resource_types=body.resource_types,
        max_risk=body.max_risk,
    )
    return DelegationOut.model_validate(row)


@router.delete("/delegations/{delegation_id}", response_model=DelegationOut)
async def revoke_delegation(
    delegation_id: uuid.UUID, principal: PrincipalDep, governance: GovernanceDep
) -> DelegationOut:
    return DelegationOut.model_validate(
        await governance.revoke_delegation(principal, delegation_id)
    )
