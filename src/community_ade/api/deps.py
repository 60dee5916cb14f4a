"""Request dependencies: the Runtime, a database session per request (committed by the
request, never by services), and the authenticated principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back on
    any error, so a failed request leaves nothing half-written."""
    async with runtime.sessions.begin() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
