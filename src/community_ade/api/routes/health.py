"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from community_ade.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    redis: str
    database: str


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(runtime: RuntimeDep) -> Readiness | JSONResponse:
    """Redis and the database answer."""
    redis_state = database_state = "ok"
    try:
        await runtime.redis.ping()
    except Exception as exc:  # any failure means "not ready", reported, not raised
        redis_state = f"unavailable: {exc}"
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        database_state = f"unavailable: {exc}"
    ready = redis_state == database_state == "ok"
    body = Readiness(
        status="ok" if ready else "unavailable", redis=redis_state, database=database_state
    )
    if ready:
        return body
    return JSONResponse(body.model_dump(), status_code=503)
