"""``Idempotency-Key``: a retried create, submit or decision returns the first answer.

The key is scoped to the caller and the route. The stored answer is written in the same
transaction as the effect it describes, so either both exist or neither does; the same
key with a different request is refused, and a concurrent duplicate loses on the key's
primary key instead of acting twice.

Stored answers live for ``ADE_IDEMPOTENCY_KEY_TTL_HOURS`` (24 by default, like the
payment APIs that made the header common): a key older than that is forgotten at its next
use and by the periodic sweep (``forget_expired``), so the table does not grow forever.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.auth.principal import Principal
from community_ade.errors import Conflict
from community_ade.settings import Settings
from community_ade.storage.models import IdempotencyKey, utcnow

M = TypeVar("M", bound=BaseModel)

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a request safely: the same key returns the first answer.",
    ),
]


def _fingerprint(request: Request, body: BaseModel | None) -> str:
    payload = {
        "method": request.method,
        "path": request.url.path,
        "body": jsonable_encoder(body) if body is not None else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def idempotent(
    key: str | None,
    request: Request,
    session: AsyncSession,
    principal: Principal,
    body: BaseModel | None,
    run: Callable[[], Awaitable[M]],
    *,
    status_code: int = 200,
) -> M | JSONResponse:
    """Run ``run`` once per (key, caller, route); replay its answer afterwards."""
    if key is None:
        return await run()
    template = getattr(request.scope.get("route"), "path", request.url.path)
    route = f"{request.method} {template}"
    actor = str(principal.id)
    fingerprint = _fingerprint(request, body)
    stored = await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.key == key, IdempotencyKey.actor == actor, IdempotencyKey.route == route
        )
    )
    if stored is not None and stored.created_at < _cutoff(request.app.state.runtime.settings):
        await session.delete(stored)
        await session.flush()
        stored = None
    if stored is not None:
        if stored.request_hash != fingerprint:
            raise Conflict(
                "this Idempotency-Key was used for a different request; use a new key",
                idempotency_key=key,
            )
        return JSONResponse(stored.response, status_code=stored.status_code)
    result = await run()
    session.add(
        IdempotencyKey(
            key=key,
            actor=actor,
            route=route,
            request_hash=fingerprint,
            status_code=status_code,
            response=jsonable_encoder(result),
        )
    )
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(
            "a request with this Idempotency-Key is being processed; retry to get its answer",
            idempotency_key=key,
            in_progress=True,  # tells a client this conflict is worth retrying
        ) from None
    return result


def _cutoff(settings: Settings) -> datetime:
    return utcnow() - timedelta(hours=settings.idempotency_key_ttl_hours)


async def forget_expired(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *, batch: int = 1000
) -> int:
    """Delete the stored answers past their time to live, ``batch`` rows per transaction
    (a backlog never holds one long transaction). Returns how many were deleted."""
    cutoff = _cutoff(settings)
    pk = (IdempotencyKey.key, IdempotencyKey.actor, IdempotencyKey.route)
    deleted = 0
    while True:
        async with sessions.begin() as session:
            rows = (
                await session.execute(
                    select(*pk).where(IdempotencyKey.created_at < cutoff).limit(batch)
                )
            ).all()
            if rows:
                await session.execute(
                    delete(IdempotencyKey).where(tuple_(*pk).in_([tuple(r) for r in rows]))
                )
        deleted += len(rows)
        if len(rows) < batch:
            return deleted
