"""Clean apply locks over HTTP (architecture §5, §8): who holds and waits, the recent lock
events, and an admin's force release (audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from community_ade.api.deps import PrincipalDep, RuntimeDep, SessionDep
from community_ade.approvals.service import actor_of
from community_ade.audit.force_release import force_release as audited_force_release
from community_ade.auth.principal import Permission, require
from community_ade.locks.introspection import AgentState, ResourceState
from community_ade.locks.model import MAX_RESOURCE_NAME
from community_ade.settings import DOMAIN_PATTERN

router = APIRouter(prefix="/locks", tags=["locks"])

DomainQuery = Annotated[
    str | None,
    Query(pattern=DOMAIN_PATTERN, description="Lock domain; default: ADE_LOCK_DOMAIN."),
]
NameQuery = Annotated[str | None, Query(min_length=1, max_length=MAX_RESOURCE_NAME)]


class LocksOut(BaseModel):
    """One domain's holders, queues, agent sessions and permits (or the one resource
    and/or agent asked for), and every domain in use."""

    domain: str
    domains: list[str]
    now: int = Field(description="Redis server time (ms) of the snapshot.")
    resources: list[ResourceState]
    sessions: list[AgentState]
    resource_count: int = Field(description="Resources in the domain (the list may be capped).")
    session_count: int


class LockEventOut(BaseModel):
    id: str
    ts: int = Field(description="Milliseconds since the epoch (the stream entry's time).")
    type: str
    req: str | None = None
    task: str | None = None
    agent: str | None = None
    data: dict[str, Any]


class ForceReleaseBody(BaseModel):
    resource: str = Field(min_length=1, max_length=MAX_RESOURCE_NAME)
    reason: str = Field(min_length=1, max_length=500, description="Why; recorded in the audit log.")
    domain: str | None = Field(default=None, pattern=DOMAIN_PATTERN)


class ForceReleaseOut(BaseModel):
    domain: str
    resource: str
    ended: list[str] = Field(description="Request ids whose grants were ended.")


@router.get("", response_model=LocksOut)
async def list_locks(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    domain: DomainQuery = None,
    resource: NameQuery = None,
    agent: NameQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most resources listed.")] = 100,
) -> LocksOut:
    """The domain overview; ``resource`` and/or ``agent`` narrow it to those."""
    require(principal, Permission.LOCK_READ)
    locks = runtime.locks
    name = domain or locks.domain
    overview = await locks.inspect_domain(domain=name, limit=limit)
    resources, sessions = overview.resources, overview.sessions
    if resource is not None or agent is not None:
        resources = [await locks.inspect_resource(resource, domain=name)] if resource else []
        sessions = [await locks.inspect_agent(agent, domain=name)] if agent else []
    return LocksOut(
        domain=name,
        domains=sorted({*await locks.domains(), name}),
        now=overview.now,
        resources=resources,
        sessions=sessions,
        resource_count=overview.resource_count,
        session_count=overview.session_count,
    )


@router.get("/events", response_model=list[LockEventOut])
async def lock_events(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    domain: DomainQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[LockEventOut]:
    """The domain's newest lock events, newest first (live ones: ``WS /ws?topics=lock``)."""
    require(principal, Permission.LOCK_READ)
    events = await runtime.locks.events(domain=domain, count=limit)
    return [LockEventOut.model_validate(event) for event in events]


@router.post("/force-release", response_model=ForceReleaseOut)
async def force_release(
    body: ForceReleaseBody, principal: PrincipalDep, runtime: RuntimeDep, session: SessionDep
) -> ForceReleaseOut:
    """End every grant on a resource (admins). The holders see their grant lost; the
    next grant waits the lock-delay. Audited as ``lock:force_released``."""
    require(principal, Permission.LOCK_ADMIN)
    domain, ended = await audited_force_release(
        session, runtime.locks, actor_of(principal), body.resource, body.reason, body.domain
    )
    return ForceReleaseOut(domain=domain, resource=body.resource, ended=ended)
