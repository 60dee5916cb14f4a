"""Bodies of the agent, catalogue, lease and claim routes.

Ranges (name length, temperature, top_p, token limits against the model's context window,
capacity) are checked by the domain (``agents.config.validate``), not here, so that one
422 answer lists every problem with its field and allowed range. These models check only
types and generous size caps.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from community_ade.agents import config as cfg
from community_ade.agents.health import Health
from community_ade.agents.leases import Lease
from community_ade.api.schemas import TaskOut, UtcDatetime
from community_ade.auth.principal import TokenScope
from community_ade.execution.claims import ReportedRollback
from community_ade.storage.models import Agent, AgentVersion

_TEXT_CAP = 100_000
_LIST_CAP = 500
CATALOGUE_ID = r"^[A-Za-z0-9._:-]+$"


class ParametersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, description="0 to 2")
    top_p: float | None = Field(default=None, description="0 to 1")
    max_tokens: int | None = Field(
        default=None, description="1 to the context window", ge=-(2**31), le=2**31
    )
    context_window: int | None = Field(
        default=None, description="1 to the model's context window", ge=-(2**31), le=2**31
    )

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=1000, description="3 to 100 characters, unique")
    model: str = Field(max_length=1000, description="a model id from the catalogue")
    description: str = Field(default="", max_length=_TEXT_CAP)
    tags: list[str] = Field(default_factory=list, max_length=_LIST_CAP)
    system_prompt: str = Field(default="", max_length=_TEXT_CAP)
    tools: list[str] = Field(default_factory=list, max_length=_LIST_CAP)
    parameters: ParametersIn = Field(default_factory=ParametersIn)
    capacity: int = Field(default=4, ge=-(2**31), le=2**31, description="1 to 100")
    allowed_task_types: list[str] = Field(default_factory=list, max_length=_LIST_CAP)
    owner_id: uuid.UUID | None = Field(default=None, description="admins only; default: you")
    comment: str = Field(default="", max_length=2000)

    def to_config(self) -> cfg.AgentConfig:
        return cfg.AgentConfig(
            name=self.name,
            model=self.model,
            description=self.description,
            tags=tuple(self.tags),
            system_prompt=self.system_prompt,
            tools=tuple(self.tools),
            parameters=cfg.Parameters.from_document(self.parameters.given()),
            capacity=self.capacity,
            allowed_task_types=tuple(self.allowed_task_types),
        )


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=1000)
    model: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=_TEXT_CAP)
    tags: list[str] | None = Field(default=None, max_length=_LIST_CAP)
    system_prompt: str | None = Field(default=None, max_length=_TEXT_CAP)
    tools: list[str] | None = Field(default=None, max_length=_LIST_CAP)
    parameters: ParametersIn | None = None
    capacity: int | None = Field(default=None, ge=-(2**31), le=2**31)
    allowed_task_types: list[str] | None = Field(default=None, max_length=_LIST_CAP)
    comment: str = Field(default="", max_length=2000)
    expected_version: int | None = Field(
        default=None, ge=1, le=2**31, description="Refuse (409) unless the agent is at it."
    )


class RevertBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31)
    comment: str = Field(default="", max_length=2000)


class HealthOut(BaseModel):
    status: str
    reasons: list[str]
    active_tasks: int
    capacity: int
    load: float
    waiting: int
    live_leases: int
    success_rate: float | None
    sample: int
    p50_duration_ms: int | None
    last_error: str | None
    last_seen: datetime | None
    last_run: datetime | None = Field(description="When its newest finished task finished.")

    @classmethod
    def of(cls, health: Health) -> HealthOut:
        return cls(
            status=health.status.value,
            reasons=list(health.reasons),
            active_tasks=health.active_tasks,
            capacity=health.capacity,
            load=health.load,
            waiting=health.waiting,
            live_leases=health.live_leases,
            success_rate=health.success_rate,
            sample=health.sample,
            p50_duration_ms=health.p50_duration_ms,
            last_error=health.last_error,
            last_seen=health.last_seen,
            last_run=health.last_run,
        )


class AgentOut(BaseModel):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    description: str
    tags: list[str]
    model: str
    system_prompt: str
    tools: list[str]
    parameters: dict[str, Any]
    capacity: int
    allowed_task_types: list[str]
    config_version: int
    created_at: datetime
    updated_at: datetime
    health: HealthOut | None = None

    @classmethod
    def of(cls, agent: Agent, health: Health | None = None) -> AgentOut:
        return cls(
            id=agent.id,
            name=agent.name,
            owner_id=agent.owner_id,
            description=agent.description,
            tags=list(agent.tags),
            model=agent.model,
            system_prompt=agent.system_prompt,
            tools=list(agent.tools),
            parameters=cfg.Parameters.from_document(agent.parameters).document(),
            capacity=agent.capacity,
            allowed_task_types=list(agent.allowed_task_types),
            config_version=agent.config_version,
            created_at=agent.created_at,
            updated_at=agent.updated_at,
            health=None if health is None else HealthOut.of(health),
        )


class AgentVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    config: dict[str, Any]
    author_id: uuid.UUID | None
    comment: str
    created_at: datetime

    @classmethod
    def of(cls, row: AgentVersion) -> AgentVersionOut:
        return cls.model_validate(row)


class DiffOut(BaseModel):
    from_version: int
    to_version: int
    changes: list[dict[str, Any]]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    expires_at: UtcDatetime | None = None
    scopes: list[TokenScope] | None = Field(
        default=None,
        min_length=1,
        max_length=len(TokenScope),
        description="Limit the token to these scopes (read, submit, review, admin); "
        "omitted: every right of its holder.",
    )


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    scopes: list[str] | None = Field(
        default=None, description="The token's scopes; null: every right of its holder."
    )

    @field_validator("scopes", mode="before")
    @classmethod
    def _stored_scopes(cls, value: object) -> object:
        return sorted(value.split()) if isinstance(value, str) else value


class NewTokenOut(TokenOut):
    token: str = Field(description="The token itself: shown this once, never again.")


class CatalogueModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    provider: str = Field(min_length=1, max_length=100)
    context_window: int = Field(ge=1, le=100_000_000)


class CatalogueModelCreate(CatalogueModelIn):
    id: str = Field(min_length=1, max_length=100, pattern=CATALOGUE_ID)


class CatalogueModelOut(CatalogueModelCreate):
    model_config = ConfigDict(from_attributes=True)


class CatalogueToolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    base: bool = False


class CatalogueToolCreate(CatalogueToolIn):
    id: str = Field(min_length=1, max_length=100, pattern=CATALOGUE_ID)


class CatalogueToolOut(CatalogueToolCreate):
    model_config = ConfigDict(from_attributes=True)


class LeaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: uuid.UUID | None = Field(
        default=None, description="Required unless an agent opens its own lease."
    )
    lease_seconds: float | None = Field(
        default=None, description="1 to 3600; default ADE_AGENT_LEASE_SECONDS."
    )
    resources: dict[str, Literal["exclusive", "shared"]] = Field(
        default_factory=dict,
        max_length=100,
        description="Apply locks to hold while the lease lives: resource name -> mode.",
    )
    task: str | None = Field(
        default=None, max_length=200, description="The task the locks are for (default: the lease)."
    )
    wait_seconds: float = Field(
        default=0.0, ge=0, le=60, description="How long to wait for the locks (0: try once)."
    )


class HeldLocksOut(BaseModel):
    task: str
    resources: dict[str, str]
    fence: int = Field(description="Pass it to the target of the change (fencing token).")


class LeaseOut(BaseModel):
    id: uuid.UUID
    agent_id: uuid.UUID
    lease_seconds: float
    expires_at: datetime
    renew_every_seconds: float = Field(description="Heartbeat at least this often.")
    locks: HeldLocksOut | None = None

    @classmethod
    def of(cls, lease: Lease) -> LeaseOut:
        seconds = lease.lease_ms / 1000
        held = lease.locks
        return cls(
            id=lease.id,
            agent_id=lease.agent_id,
            lease_seconds=seconds,
            expires_at=lease.deadline,
            renew_every_seconds=seconds / 3,
            locks=None if held is None else HeldLocksOut(**dataclasses.asdict(held)),
        )


# -- tasks their agent applies (POST /tasks/{id}/claim, complete, fail) ------------------

_REPORT_DETAILS_CAP = 16 * 1024


class ClaimBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_seconds: float | None = Field(
        default=None,
        description="1 to 3600; default ADE_AGENT_LEASE_SECONDS. Renew it with "
        "POST /leases/{id}/heartbeat while you apply; a lapsed claim is retried or failed.",
    )
    wait_seconds: float = Field(
        default=0.0, ge=0, le=60, description="How long to wait for the task's locks."
    )


class ClaimOut(BaseModel):
    task: TaskOut
    fence: int = Field(description="Pass it to the target of the change and to the report.")
    lease: LeaseOut


def _bounded_details(details: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(details, default=str)) > _REPORT_DETAILS_CAP:
        raise ValueError(f"longer than {_REPORT_DETAILS_CAP} bytes as JSON")
    return details


BoundedDetails = Annotated[dict[str, Any], AfterValidator(_bounded_details)]


class CompleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fence: int = Field(description="The fence the claim answered.")
    summary: str = Field(default="done", min_length=1, max_length=500)
    details: BoundedDetails = Field(default_factory=dict)


class FailBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fence: int = Field(description="The fence the claim answered.")
    error: str = Field(min_length=1, max_length=4000)
    rollback_outcome: ReportedRollback = Field(
        description="What became of anything the attempt changed ('unknown': the attempt "
        "failed part-way and cannot tell)."
    )
    retry: bool = Field(
        default=False,
        description="A transient failure: back to APPROVED for another claim while attempts "
        "are left (ADE_WORKER_MAX_ATTEMPTS), else FAILED.",
    )
    details: BoundedDetails = Field(default_factory=dict)
