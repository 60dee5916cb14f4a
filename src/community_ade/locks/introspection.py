"""What ``inspect.lua`` reports, as typed models (shared by the CLI and, later, the API)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, field_validator


def _none_if_false(value: Any) -> Any:
    # Lua's nil-in-a-table arrives as JSON false; an empty Lua table as {}.
    return None if value is False else value


class RequestInfo(BaseModel):
    request: str
    task: str | None = None
    agent: str | None = None
    state: str | None = None
    ticket: int | None = None
    fence: int | None = None
    enqueued_at: int | None = None
    granted_at: int | None = None
    client: str | None = None
    lease_deadline: int | None = None  # of the session (client process, agent) it belongs to

    @field_validator("*", mode="before")
    @classmethod
    def _lua_nil(cls, value: Any) -> Any:
        return _none_if_false(value)


class HolderInfo(RequestInfo):
    mode: str


class WaiterInfo(RequestInfo):
    mode: str


def _list(value: Any) -> Any:
    return [] if value in ({}, False, None) else value


class ResourceState(BaseModel):
    resource: str
    now: int = 0
    holders: list[HolderInfo]
    queue: list[WaiterInfo]
    lock_delay_ms: int = 0

    _lists = field_validator("holders", "queue", mode="before")(lambda cls, v: _list(v))


class AgentState(BaseModel):
    agent: str
    now: int = 0
    lease_deadline: int | None = None
    capacity: int
    in_use: int
    grants: list[RequestInfo]
    waiting: list[RequestInfo]

    _lists = field_validator("grants", "waiting", mode="before")(lambda cls, v: _list(v))
    _nil = field_validator("lease_deadline", mode="before")(lambda cls, v: _none_if_false(v))


class DomainState(BaseModel):
    domain: str
    now: int
    resources: list[ResourceState]
    sessions: list[AgentState]
    resource_count: int
    session_count: int

    _lists = field_validator("resources", "sessions", mode="before")(lambda cls, v: _list(v))


def parse(raw: str | bytes, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(raw)
    doc.update(extra)
    return doc
