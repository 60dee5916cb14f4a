"""The FastAPI application: one Runtime per process, opened in the lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from community_ade import __version__
from community_ade.api import errors
from community_ade.api.routes import approvals, audit, governance, health, tasks
from community_ade.runtime import Runtime
from community_ade.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the Runtime opens when it starts serving and closes when it stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime.open(settings) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="Community ADE",
        version=__version__,
        summary="Preview, review and cleanly apply the changes agents ask for.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    for module in (tasks, approvals, governance, audit):
        app.include_router(module.router, prefix=API_PREFIX)
    return app
