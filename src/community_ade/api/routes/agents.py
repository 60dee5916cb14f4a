"""Agents (architecture §9): the registry, versions, health, the agents' tokens and the
catalogue of models and tools the wizard offers."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from community_ade.agents.health import Status
from community_ade.agents.service import AgentChanges, AgentService
from community_ade.api.agent_schemas import (
    CATALOGUE_ID,
    AgentCreate,
    AgentOut,
    AgentUpdate,
    AgentVersionOut,
    CatalogueModelCreate,
    CatalogueModelIn,
    CatalogueModelOut,
    CatalogueToolCreate,
    CatalogueToolIn,
    CatalogueToolOut,
    DiffOut,
    HealthOut,
    NewTokenOut,
    RevertBody,
    TokenCreate,
    TokenOut,
)
from community_ade.api.deps import PrincipalDep, RuntimeDep, SessionDep
from community_ade.api.schemas import MAX_PAGE, Page

router = APIRouter(tags=["agents"])


async def get_agents(runtime: RuntimeDep, session: SessionDep) -> AgentService:
    return AgentService.of(runtime, session)


AgentsDep = Annotated[AgentService, Depends(get_agents)]
EntryId = Annotated[str, Path(min_length=1, max_length=100, pattern=CATALOGUE_ID)]


@router.get("/agents", response_model=Page[AgentOut])
async def list_agents(
    principal: PrincipalDep,
    agents: AgentsDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    model: Annotated[str | None, Query(max_length=100)] = None,
    health: Status | None = None,
    q: Annotated[str | None, Query(max_length=200, description="in name or description")] = None,
) -> Page[AgentOut]:
    """Live agents by name, each with its health."""
    items, total = await agents.list_agents(
        principal, tag=tag, model=model, health=health, q=q, page=page, limit=limit
    )
    out = [AgentOut.of(a, await agents.assess(a)) for a in items]
    return Page(items=out, page=page, limit=limit, total=total)


@router.post("/agents", response_model=AgentOut, status_code=status.HTTP_201_CREATED)
async def create_agent(body: AgentCreate, principal: PrincipalDep, agents: AgentsDep) -> AgentOut:
    """Register an agent (version 1). Every problem of the configuration comes back in
    one 422 answer, each naming its field and the allowed range."""
    agent = await agents.create(
        principal, body.to_config(), owner_id=body.owner_id, comment=body.comment
    )
    return AgentOut.of(agent)


@router.get("/agents/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep) -> AgentOut:
    agent = await agents.get(principal, agent_id)
    return AgentOut.of(agent, await agents.health(principal, agent_id))


@router.patch("/agents/{agent_id}", response_model=AgentOut)
async def update_agent(
    agent_id: uuid.UUID, body: AgentUpdate, principal: PrincipalDep, agents: AgentsDep
) -> AgentOut:
    """Save a new version with the fields given (parameters merge key by key). A request
    that changes nothing saves nothing."""
    changes = AgentChanges(
        name=body.name,
        description=body.description,
        tags=body.tags,
        model=body.model,
        system_prompt=body.system_prompt,
        tools=body.tools,
        parameters=None if body.parameters is None else body.parameters.given(),
        capacity=body.capacity,
        allowed_task_types=body.allowed_task_types,
    )
    agent = await agents.update(
        principal,
        agent_id,
        changes,
        comment=body.comment,
        expected_version=body.expected_version,
    )
    return AgentOut.of(agent)


@router.delete("/agents/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_agent(agent_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep) -> Response:
    """Retire the agent: its tokens stop working, its leases close; its history stays."""
    await agents.delete(principal, agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/agents/{agent_id}/versions", response_model=list[AgentVersionOut])
async def list_versions(
    agent_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep
) -> list[AgentVersionOut]:
    """Every version, newest first."""
    return [AgentVersionOut.of(v) for v in await agents.versions(principal, agent_id)]


@router.get("/agents/{agent_id}/versions/diff", response_model=DiffOut)
async def diff_versions(
    agent_id: uuid.UUID,
    principal: PrincipalDep,
    agents: AgentsDep,
    from_version: Annotated[int, Query(alias="from", ge=1, le=2**31)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=2**31)],
) -> DiffOut:
    """What changed from one version to another, field by field."""
    changes = await agents.diff(principal, agent_id, from_version, to_version)
    return DiffOut(
        from_version=from_version,
        to_version=to_version,
        changes=[c.document() for c in changes],
    )


@router.post("/agents/{agent_id}/revert", response_model=AgentOut)
async def revert_agent(
    agent_id: uuid.UUID, body: RevertBody, principal: PrincipalDep, agents: AgentsDep
) -> AgentOut:
    """A new version with the configuration of an older one."""
    return AgentOut.of(await agents.revert(principal, agent_id, body.version, comment=body.comment))


@router.get("/agents/{agent_id}/health", response_model=HealthOut)
async def agent_health(
    agent_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep
) -> HealthOut:
    """online / degraded / offline and the evidence (rules: docs/agents.md)."""
    return HealthOut.of(await agents.health(principal, agent_id))


@router.get("/agents/{agent_id}/tokens", response_model=list[TokenOut])
async def list_agent_tokens(
    agent_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep
) -> list[TokenOut]:
    tokens = await agents.list_tokens(principal, agent_id)
    return [TokenOut.model_validate(t, from_attributes=True) for t in tokens]


@router.post(
    "/agents/{agent_id}/tokens", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED
)
async def create_agent_token(
    agent_id: uuid.UUID, body: TokenCreate, principal: PrincipalDep, agents: AgentsDep
) -> NewTokenOut:
    """A token for the agent to authenticate with; the answer is the only time it shows."""
    plaintext, row = await agents.create_token(
        principal, agent_id, body.name, body.expires_at, body.scopes
    )
    return NewTokenOut(
        token=plaintext, **TokenOut.model_validate(row, from_attributes=True).model_dump()
    )


@router.delete("/agents/{agent_id}/tokens/{token_id}", response_model=TokenOut)
async def revoke_agent_token(
    agent_id: uuid.UUID, token_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep
) -> TokenOut:
    info = await agents.revoke_token(principal, agent_id, token_id)
    return TokenOut.model_validate(info, from_attributes=True)


# -- catalogue --------------------------------------------------------------------------


@router.get("/catalogue/models", response_model=list[CatalogueModelOut])
async def list_models(principal: PrincipalDep, agents: AgentsDep) -> list[Any]:
    return await agents.list_catalogue(principal, "models")


@router.get("/catalogue/tools", response_model=list[CatalogueToolOut])
async def list_tools(principal: PrincipalDep, agents: AgentsDep) -> list[Any]:
    """Tools by category; ``base`` tools are on by default in the wizard."""
    return await agents.list_catalogue(principal, "tools")


@router.post(
    "/catalogue/models", response_model=CatalogueModelOut, status_code=status.HTTP_201_CREATED
)
async def create_model(
    body: CatalogueModelCreate, principal: PrincipalDep, agents: AgentsDep
) -> Any:
    fields = body.model_dump(exclude={"id"})
    return await agents.put_catalogue(principal, "models", body.id, fields, create_only=True)


@router.put("/catalogue/models/{model_id}", response_model=CatalogueModelOut)
async def put_model(
    model_id: EntryId,
    body: CatalogueModelIn,
    principal: PrincipalDep,
    agents: AgentsDep,
) -> Any:
    return await agents.put_catalogue(
        principal, "models", model_id, body.model_dump(), create_only=False
    )


@router.delete("/catalogue/models/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_model(model_id: EntryId, principal: PrincipalDep, agents: AgentsDep) -> Response:
    await agents.delete_catalogue(principal, "models", model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/catalogue/tools", response_model=CatalogueToolOut, status_code=status.HTTP_201_CREATED
)
async def create_tool(body: CatalogueToolCreate, principal: PrincipalDep, agents: AgentsDep) -> Any:
    fields = body.model_dump(exclude={"id"})
    return await agents.put_catalogue(principal, "tools", body.id, fields, create_only=True)


@router.put("/catalogue/tools/{tool_id}", response_model=CatalogueToolOut)
async def put_tool(
    tool_id: EntryId, body: CatalogueToolIn, principal: PrincipalDep, agents: AgentsDep
) -> Any:
    return await agents.put_catalogue(
        principal, "tools", tool_id, body.model_dump(), create_only=False
    )


@router.delete("/catalogue/tools/{tool_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tool(tool_id: EntryId, principal: PrincipalDep, agents: AgentsDep) -> Response:
    await agents.delete_catalogue(principal, "tools", tool_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
