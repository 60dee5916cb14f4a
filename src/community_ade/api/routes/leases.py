"""Agent leases (DESIGN §8): an agent process opens one, renews it with heartbeats and
closes it on exit; while a lease lives the agent counts as alive (docs/agents.md)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from community_ade.api.agent_schemas import LeaseCreate, LeaseOut
from community_ade.api.deps import PrincipalDep, RuntimeDep
from community_ade.api.routes.agents import AgentsDep

router = APIRouter(prefix="/leases", tags=["leases"])


@router.post("", response_model=LeaseOut, status_code=status.HTTP_201_CREATED)
async def open_lease(
    body: LeaseCreate, principal: PrincipalDep, agents: AgentsDep, runtime: RuntimeDep
) -> LeaseOut:
    """An agent opens a lease for itself; its owner or an admin may name the agent."""
    seconds = body.lease_seconds or runtime.settings.agent_lease_seconds
    return LeaseOut.of(await agents.open_lease(principal, body.agent_id, seconds))


@router.post("/{lease_id}/heartbeat", response_model=LeaseOut)
async def heartbeat_lease(
    lease_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep
) -> LeaseOut:
    """Renew for another full lease; 404 once it lapsed (then open a new one)."""
    lease = await agents.lease(principal, lease_id)
    return LeaseOut.of(await agents.leases.heartbeat(lease))


@router.delete("/{lease_id}", status_code=status.HTTP_204_NO_CONTENT)
async def close_lease(lease_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep) -> Response:
    lease = await agents.lease(principal, lease_id)
    await agents.leases.close(lease)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
