"""The installed task types, each describing itself: what it does, who applies it, and
the JSON Schema of its payload (for SDKs, MCP tools and forms)."""

from __future__ import annotations

from fastapi import APIRouter

from community_ade.api.deps import PrincipalDep
from community_ade.api.schemas import TaskTypeOut
from community_ade.auth.principal import Permission, require
from community_ade.execution.executors import (
    applier_of,
    description_of,
    load_executors,
    payload_schema_of,
)

router = APIRouter(prefix="/task-types", tags=["tasks"])


@router.get("", response_model=list[TaskTypeOut])
async def list_task_types(principal: PrincipalDep) -> list[TaskTypeOut]:
    """Every installed task type (built-in and plugins), by name."""
    require(principal, Permission.TASK_READ)
    return [
        TaskTypeOut(
            type=task_type,
            description=description_of(executor),
            applied_by=applier_of(executor),
            payload_schema=payload_schema_of(executor),
        )
        for task_type, executor in sorted(load_executors().items())
    ]
