"""Secrets: names and metadata to read, values to write (admins) and never to read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from community_ade.api.deps import PrincipalDep, RuntimeDep, SessionDep
from community_ade.api.schemas import SecretOut, SecretPut
from community_ade.approvals.service import actor_of
from community_ade.auth.principal import Permission, require
from community_ade.secrets import store
from community_ade.secrets.keys import SecretCipher
from community_ade.secrets.references import NAME_PATTERN

router = APIRouter(prefix="/secrets", tags=["secrets"])

SecretName = Annotated[str, Path(pattern=NAME_PATTERN, description="1-64 characters a-z 0-9 . _ -")]


@router.get("", response_model=list[SecretOut])
async def list_secrets(principal: PrincipalDep, session: SessionDep) -> list[SecretOut]:
    """Every secret's name and metadata, to refer to them as `{"secret": NAME}`."""
    require(principal, Permission.SECRET_READ)
    return [SecretOut.model_validate(row) for row in await store.list_secrets(session)]


@router.get("/{name}", response_model=SecretOut)
async def get_secret(name: SecretName, principal: PrincipalDep, session: SessionDep) -> SecretOut:
    require(principal, Permission.SECRET_READ)
    return SecretOut.model_validate(await store.get_secret(session, name))


@router.put(
    "/{name}",
    response_model=SecretOut,
    responses={201: {"model": SecretOut, "description": "Created."}},
)
async def put_secret(
    name: SecretName,
    body: SecretPut,
    principal: PrincipalDep,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> SecretOut:
    """Store a secret, or replace its value (200; 201 when new). The value is sealed at
    once and never returned; tasks that refer to the name send the new value from their
    next apply on."""
    require(principal, Permission.SECRET_WRITE)
    stored = await store.put_secret(
        session,
        SecretCipher.from_settings(runtime.settings),
        name,
        body.value.get_secret_value(),
        description=body.description,
        actor=actor_of(principal),
        user_id=principal.id,
    )
    if stored.created:
        response.status_code = status.HTTP_201_CREATED
    return SecretOut.model_validate(stored.secret)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_secret(name: SecretName, principal: PrincipalDep, session: SessionDep) -> Response:
    """Delete a secret; tasks that still refer to it fail at apply."""
    require(principal, Permission.SECRET_WRITE)
    await store.delete_secret(session, name, actor=actor_of(principal))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
