"""Agent leases (architecture §8): an agent process opens one, renews it with heartbeats and
closes it on exit; while a lease lives the agent counts as alive (docs/agents.md)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from community_ade.api.agent_schemas import LeaseCreate, LeaseOut
from community_ade.api.deps import PrincipalDep, RuntimeDep, SessionDep
from community_ade.api.routes.agents import AgentsDep

router = APIRouter(prefix="/leases", tags=["leases"])


@router.post("", response_model=LeaseOut, status_code=status.HTTP_201_CREATED)
async def open_lease(
    body: LeaseCreate,
    principal: PrincipalDep,
    agents: AgentsDep,
    runtime: RuntimeDep,
    session: SessionDep,
) -> LeaseOut:
    """An agent opens a lease for itself; its owner or an admin may name the agent.
    With ``resources`` it also holds those apply locks for the agent while it lives
    (409 ``lock_timeout`` if they are not granted within ``wait_seconds``)."""
    agent = await agents.lease_target(principal, body.agent_id)
    # What follows is Redis only: end the transaction rather than hold it (on SQLite,
    # the database's one write lock) while the locks are awaited.
    await session.commit()
    lease = await agents.open_lease(
        principal,
        agent,
        body.lease_seconds or runtime.settings.agent_lease_seconds,
        task=body.task,
        resources=body.resources,
        wait_seconds=body.wait_seconds,
    )
    return LeaseOut.of(lease)


@router.post("/{lease_id}/heartbeat", response_model=LeaseOut)
async def heartbeat_lease(
    lease_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep
) -> LeaseOut:
    """Renew for another full lease; 404 once it lapsed (then open a new one), 409
    ``lock_lost`` if the locks it held ended meanwhile (force release)."""
    return LeaseOut.of(await agents.heartbeat_lease(principal, lease_id))


@router.delete("/{lease_id}", status_code=status.HTTP_204_NO_CONTENT)
async def close_lease(lease_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep) -> Response:
    await agents.close_lease(principal, lease_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
