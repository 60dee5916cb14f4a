"""Agents: the list (list/grid, search, filters, live health cards), the five-step creation
wizard, and the configuration panel with version history, diff and revert."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from community_ade.agents import config as cfg
from community_ade.agents.health import Health, Status
from community_ade.agents.service import AgentChanges, AgentService, config_of
from community_ade.api.routes.agents import AgentsDep
from community_ade.auth.principal import Permission, Role
from community_ade.dashboard.web import NavItem, PageRoute, Visitor, VisitorDep, redirect, render
from community_ade.errors import InvalidInput
from community_ade.storage.models import Agent

router = APIRouter(route_class=PageRoute)
nav = NavItem("Agents", "/agents", Permission.AGENT_READ, order=50)

PAGE_SIZE = 48
HEALTH_PATTERN = "^(any|" + "|".join(s.value for s in Status) + ")$"
# Which wizard step holds each field, so a refused creation opens the right one.
WIZARD_STEPS = {
    "name": 1,
    "description": 1,
    "tags": 1,
    "model": 2,
    "parameters": 2,
    "capacity": 2,
    "tools": 3,
    "system_prompt": 4,
    "allowed_task_types": 1,
}
PROMPT_PRESETS = {
    "Careful reviewer": "You review proposed changes carefully. Explain risks plainly, "
    "prefer small reversible steps, and never apply anything without approval.",
    "Code maintainer": "You maintain this code base. Propose minimal patches with tests, "
    "follow the existing style, and describe why each change is needed.",
    "Operations assistant": "You help operate services. Propose configuration changes as "
    "previews, name the resources they touch, and include a rollback plan.",
}


def _text_list(value: str) -> list[str]:
    """Comma-separated entries, trimmed, empty ones dropped."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _number(
    form: FormData, key: str, kind: type[int] | type[float], errors: list[dict[str, str]]
) -> Any:
    raw = form.get(key)
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        value = kind(raw)
    except ValueError:
        errors.append({"path": key, "message": f"must be a number, got {raw[:20]!r}"})
        return None
    return value


def _read_form(form: FormData) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The fields of the wizard or the panel, as given, and the numbers that did not parse."""
    errors: list[dict[str, str]] = []
    parameters = {
        name: _number(form, f"parameters.{name}", kind, errors)
        for name, kind in (
            ("temperature", float),
            ("top_p", float),
            ("max_tokens", int),
            ("context_window", int),
        )
    }
    values = {
        "name": str(form.get("name") or ""),
        "description": str(form.get("description") or ""),
        "tags": _text_list(str(form.get("tags") or "")),
        "model": str(form.get("model") or ""),
        "system_prompt": str(form.get("system_prompt") or ""),
        "tools": [str(t) for t in form.getlist("tools")],
        "parameters": {k: v for k, v in parameters.items() if v is not None},
        "capacity": _number(form, "capacity", int, errors),
        "allowed_task_types": _text_list(str(form.get("allowed_task_types") or "")),
        "comment": str(form.get("comment") or ""),
    }
    return values, errors


def _errors_of(exc: InvalidInput) -> list[dict[str, str]]:
    found = exc.details.get("errors")
    if isinstance(found, list) and found:
        return [{"path": str(e["path"]), "message": str(e["message"])} for e in found]
    return [{"path": "", "message": exc.message}]


async def _catalogue(agents: AgentService, visitor: Visitor) -> dict[str, Any]:
    models = await agents.list_catalogue(visitor.principal, "models")
    tools = await agents.list_catalogue(visitor.principal, "tools")
    by_category: dict[str, list[Any]] = {}
    for tool in tools:
        by_category.setdefault(getattr(tool, "category", ""), []).append(tool)
    return {"models": models, "tool_groups": sorted(by_category.items())}


def _may_manage(visitor: Visitor, agent: Agent) -> bool:
    principal = visitor.principal
    return principal.can(Permission.AGENT_WRITE) and (
        principal.role == Role.ADMIN or principal.id == agent.owner_id
    )


@router.get("/agents")
async def agent_list(
    request: Request,
    visitor: VisitorDep,
    agents: AgentsDep,
    q: Annotated[str, Query(max_length=200)] = "",
    tag: Annotated[str, Query(max_length=100)] = "",
    model: Annotated[str, Query(max_length=100)] = "",
    health: Annotated[str, Query(pattern=HEALTH_PATTERN)] = "any",
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> HTMLResponse:
    items, total = await agents.list_agents(
        visitor.principal,
        q=q or None,
        tag=tag or None,
        model=model or None,
        health=None if health == "any" else Status(health),
        page=page,
        limit=PAGE_SIZE,
    )
    everyone, _ = await agents.list_agents(visitor.principal, limit=100)
    cards = [(a, await agents.assess(a)) for a in items]
    return render(
        request,
        "agents/list.html",
        {
            "cards": cards,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / PAGE_SIZE)),
            "query": {"q": q, "tag": tag, "model": model, "health": health},
            "tags": sorted({t for a in everyone for t in a.tags}),
            "models": sorted({a.model for a in everyone}),
            "statuses": [s.value for s in Status],
            "can_create": visitor.can(Permission.AGENT_WRITE.value),
        },
        visitor=visitor,
    )


@router.get("/agents/card/{agent_id}")
async def agent_card(
    request: Request, agent_id: uuid.UUID, visitor: VisitorDep, agents: AgentsDep
) -> HTMLResponse:
    """One card, for live updates of the list."""
    agent = await agents.get(visitor.principal, agent_id)
    return render(
        request,
        "agents/_card.html",
        {"agent": agent, "health": await agents.assess(agent)},
        visitor=visitor,
    )


async def _wizard(
    request: Request,
    visitor: Visitor,
    agents: AgentService,
    values: Mapping[str, Any],
    errors: list[dict[str, str]],
    status_code: int = 200,
) -> HTMLResponse:
    first = next((WIZARD_STEPS.get(re.split(r"[.\[]", e["path"])[0], 5) for e in errors), 1)
    return render(
        request,
        "agents/new.html",
        {
            **await _catalogue(agents, visitor),
            "values": values,
            "errors": {e["path"]: e["message"] for e in errors},
            "error_list": errors,
            "step": first,
            "presets": PROMPT_PRESETS,
            "limits": cfg,
        },
        visitor=visitor,
        status_code=status_code,
    )


@router.get("/agents/new")
async def new_agent(request: Request, visitor: VisitorDep, agents: AgentsDep) -> HTMLResponse:
    """The creation wizard: basic info, model, tools, system prompt, review."""
    defaults = cfg.Parameters()
    values = {
        "parameters": {
            "temperature": defaults.temperature,
            "top_p": defaults.top_p,
            "max_tokens": defaults.max_tokens,
        },
        "capacity": 4,
        "tools": None,  # the wizard turns base tools on
    }
    return await _wizard(request, visitor, agents, values, [])


@router.post("/agents/new")
async def create_agent(request: Request, visitor: VisitorDep, agents: AgentsDep) -> Response:
    values, errors = _read_form(await request.form())
    if not errors:
        try:
            agent = await agents.create(
                visitor.principal,
                cfg.AgentConfig.from_document(
                    {**values, "capacity": 4 if values["capacity"] is None else values["capacity"]}
                ),
                comment="created in the dashboard",
            )
        except InvalidInput as exc:
            errors = _errors_of(exc)
        else:
            return redirect(f"/agents/{agent.id}", flash=f"Created agent {agent.name} (version 1).")
    return await _wizard(request, visitor, agents, values, errors, status_code=422)


async def _panel(
    request: Request,
    visitor: Visitor,
    agents: AgentService,
    agent: Agent,
    *,
    diff_from: int | None = None,
    diff_to: int | None = None,
    values: Mapping[str, Any] | None = None,
    errors: list[dict[str, str]] | None = None,
    new_token: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    versions = await agents.versions(visitor.principal, agent.id)
    can_manage = _may_manage(visitor, agent)
    tokens = await agents.list_tokens(visitor.principal, agent.id) if can_manage else []
    diff = None
    if diff_from is not None and diff_to is not None:
        changes = await agents.diff(visitor.principal, agent.id, diff_from, diff_to)
        diff = {"from": diff_from, "to": diff_to, "changes": [c.document() for c in changes]}
    health: Health = await agents.assess(agent)
    return render(
        request,
        "agents/detail.html",
        {
            **await _catalogue(agents, visitor),
            "agent": agent,
            "health": health,
            "values": values or {**config_of(agent).document(), "comment": ""},
            "errors": {e["path"]: e["message"] for e in errors or []},
            "error_list": errors or [],
            "versions": versions,
            "diff": diff,
            "can_manage": can_manage,
            "tokens": tokens,
            "new_token": new_token,
            "now": agents.now(),
            "limits": cfg,
            "presets": PROMPT_PRESETS,
        },
        visitor=visitor,
        status_code=status_code,
    )


@router.get("/agents/{agent_id}")
async def agent_detail(
    request: Request,
    agent_id: uuid.UUID,
    visitor: VisitorDep,
    agents: AgentsDep,
    diff_from: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    diff_to: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> HTMLResponse:
    """The configuration panel, health, and the version history (with a diff if asked)."""
    agent = await agents.get(visitor.principal, agent_id)
    return await _panel(request, visitor, agents, agent, diff_from=diff_from, diff_to=diff_to)


@router.post("/agents/{agent_id}")
async def save_agent(
    request: Request, agent_id: uuid.UUID, visitor: VisitorDep, agents: AgentsDep
) -> Response:
    """Save the panel: a new version (nothing, if nothing changed)."""
    agent = await agents.get(visitor.principal, agent_id)
    values, errors = _read_form(await request.form())
    if not errors:
        before = agent.config_version
        changes = AgentChanges(
            name=values["name"],
            description=values["description"],
            tags=values["tags"],
            model=values["model"],
            system_prompt=values["system_prompt"],
            tools=values["tools"],
            # A blank context window goes back to the model's whole window.
            parameters={"context_window": None, **values["parameters"]},
            capacity=values["capacity"],
            allowed_task_types=values["allowed_task_types"],
        )
        try:
            saved = await agents.update(
                visitor.principal, agent_id, changes, comment=values["comment"]
            )
        except InvalidInput as exc:
            errors = _errors_of(exc)
        else:
            saved_version = saved.config_version
            flash = (
                f"Saved version {saved_version}."
                if saved_version != before
                else "Nothing changed; no new version."
            )
            return redirect(f"/agents/{agent_id}", flash=flash)
    return await _panel(
        request, visitor, agents, agent, values=values, errors=errors, status_code=422
    )


@router.post("/agents/{agent_id}/revert")
async def revert_agent(
    agent_id: uuid.UUID,
    visitor: VisitorDep,
    agents: AgentsDep,
    version: Annotated[int, Form(ge=1, le=2**31)],
) -> Response:
    saved = await agents.revert(visitor.principal, agent_id, version)
    return redirect(
        f"/agents/{agent_id}",
        flash=f"Reverted to version {version}'s configuration: now version {saved.config_version}.",
    )


@router.post("/agents/{agent_id}/tokens")
async def create_token(
    request: Request,
    agent_id: uuid.UUID,
    visitor: VisitorDep,
    agents: AgentsDep,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    scopes: Annotated[list[Literal["read", "submit"]], Form(max_length=2)] = [],  # noqa: B006
) -> HTMLResponse:
    """A token for the agent, shown on this one page and never again (not redirected:
    it must not travel in a cookie or a URL); none of the scopes ticked: every right."""
    plaintext, _ = await agents.create_token(
        visitor.principal, agent_id, name, None, scopes or None
    )
    agent = await agents.get(visitor.principal, agent_id)
    return await _panel(request, visitor, agents, agent, new_token=plaintext, status_code=201)


@router.post("/agents/{agent_id}/tokens/{token_id}/revoke")
async def revoke_token(
    agent_id: uuid.UUID, token_id: uuid.UUID, visitor: VisitorDep, agents: AgentsDep
) -> Response:
    info = await agents.revoke_token(visitor.principal, agent_id, token_id)
    return redirect(f"/agents/{agent_id}", flash=f"Revoked token {info.name} ({info.prefix}).")
