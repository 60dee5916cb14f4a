"""Request dependencies: the Runtime, a database session per request (committed by the
request, never by services), and the authenticated principal.

Every dependency is ``async def``, even one that awaits nothing: FastAPI runs a plain
``def`` dependency in its thread pool, a thread hand-off per dependency per request that
showed as a tenth of the server's CPU under a burst of requests (bench/agents.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.governance import Governance
from community_ade.approvals.reviews import ReviewService
from community_ade.approvals.service import TaskService
from community_ade.audit.notes import Signer
from community_ade.auth.principal import Principal
from community_ade.auth.service import authenticate_token
from community_ade.errors import Unauthenticated
from community_ade.runtime import Runtime
from community_ade.storage.models import utcnow


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_audit_signer(request: Request) -> Signer:
    """The deployment's checkpoint signer, made once in the lifespan (docs/audit.md)."""
    signer: Signer = request.app.state.audit_signer
    return signer


AuditSignerDep = Annotated[Signer, Depends(get_audit_signer)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back on
    any error, so a failed request leaves nothing half-written."""
    async with runtime.sessions.begin() as session:
        yield session


# scope="function": commit before the response is sent, so a client never acts on an
# answer whose transaction could still fail (or is not yet visible to its next request).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


bearer = HTTPBearer(
    auto_error=False, description="An API token, e.g. from `ade tokens create --user NAME`."
)


async def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``."""
    if credentials is None or not credentials.credentials.strip():
        raise Unauthenticated("send an API token as 'Authorization: Bearer <token>'")
    return await authenticate_token(session, credentials.credentials.strip(), now=utcnow())


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_principal_apart(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, authenticated in a short transaction of its own, committed before the
    handler runs: for handlers that do their long work in other sessions and must not
    keep the request's transaction open (on SQLite it would hold the write lock)."""
    async with runtime.sessions.begin() as session:
        return await get_principal(session, credentials)


PrincipalApartDep = Annotated[Principal, Depends(get_principal_apart)]


async def get_tasks(runtime: RuntimeDep, session: SessionDep) -> TaskService:
    return TaskService(session, plan_context=runtime.plan_context(session))


TasksDep = Annotated[TaskService, Depends(get_tasks)]


async def get_reviews(session: SessionDep) -> ReviewService:
    return ReviewService(session)


ReviewsDep = Annotated[ReviewService, Depends(get_reviews)]


async def get_governance(session: SessionDep, tasks: TasksDep) -> Governance:
    return Governance(session, tasks)


GovernanceDep = Annotated[Governance, Depends(get_governance)]
