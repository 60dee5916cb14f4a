"""A person's own API tokens (for scripts): make one limited to scopes and an expiry,
list them, revoke one. An administrator manages anyone's with ``ade tokens``; agents'
tokens are under ``/agents/{id}/tokens``."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from community_ade.api.agent_schemas import NewTokenOut, TokenCreate, TokenOut
from community_ade.api.deps import PrincipalDep, SessionDep
from community_ade.auth import service as auth
from community_ade.auth.principal import Principal, scopes_for_new_token
from community_ade.errors import Forbidden, NotFound
from community_ade.storage.models import ApiToken

router = APIRouter(tags=["tokens"])


def _person(principal: Principal) -> uuid.UUID:
    if principal.kind != "human":
        raise Forbidden("agents have no personal tokens: their owner manages the agent's")
    return principal.id


@router.get("/tokens", response_model=list[TokenOut])
async def list_own_tokens(principal: PrincipalDep, session: SessionDep) -> list[TokenOut]:
    """The caller's tokens, newest first (never the tokens themselves)."""
    tokens = await auth.list_tokens(session, user_id=_person(principal))
    return [TokenOut.model_validate(t, from_attributes=True) for t in tokens]


@router.post("/tokens", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED)
async def create_own_token(
    body: TokenCreate, principal: PrincipalDep, session: SessionDep
) -> NewTokenOut:
    """A token for the caller, limited to ``scopes`` (never wider than the token asking)
    and expiring at ``expires_at``; the answer is the only time it shows."""
    user_id = _person(principal)
    asked = frozenset(body.scopes) if body.scopes is not None else None
    scopes = scopes_for_new_token(principal, asked)
    plaintext, row = await auth.create_token(
        session, name=body.name, user_id=user_id, expires_at=body.expires_at, scopes=scopes
    )
    return NewTokenOut(
        token=plaintext, **TokenOut.model_validate(row, from_attributes=True).model_dump()
    )


@router.delete("/tokens/{token_id}", response_model=TokenOut)
async def revoke_own_token(
    token_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> TokenOut:
    """Revoke one of the caller's tokens: it stops working at once."""
    token = await session.get(ApiToken, token_id)
    if token is None or token.user_id != _person(principal):
        raise NotFound(f"you have no token {token_id}")
    info = await auth.revoke_token(session, token_id)
    return TokenOut.model_validate(info, from_attributes=True)
