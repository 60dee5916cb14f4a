"""Policies: the version in force, editing it (admins), and "who would have to approve
this?" for a hypothetical task."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from community_ade.api.deps import GovernanceDep, SessionDep
from community_ade.approvals.governance import Governance
from community_ade.approvals.policy_document import PolicyDocument
from community_ade.approvals.risk import Action, ResourceRef, ResourceType, Scope, parse_enum
from community_ade.approvals.service import Routing
from community_ade.auth.principal import Permission
from community_ade.dashboard.lookups import usernames
from community_ade.dashboard.web import NavItem, PageRoute, Visitor, VisitorDep, redirect, render
from community_ade.execution.executors import load_executors

router = APIRouter(route_class=PageRoute)
nav = NavItem("Policies", "/policies", Permission.POLICY_READ, order=50)

RESOURCE_ROWS = 3


async def _page(
    request: Request,
    visitor: Visitor,
    governance: Governance,
    *,
    draft: str | None = None,
    edit_error: str | None = None,
    routing: Routing | None = None,
    asked: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    version, document = await governance.current_policy(visitor.principal)
    return render(
        request,
        "policies/index.html",
        {
            "version": version,
            "document": draft or json.dumps(document.model_dump(mode="json"), indent=2),
            "edit_error": edit_error,
            "task_types": sorted(load_executors()),
            "resource_types": [t.value for t in ResourceType],
            "scopes": [s.value for s in Scope],
            "actions": [a.value for a in Action],
            "rows": range(RESOURCE_ROWS),
            "routing": routing,
            "asked": asked or {},
            "names": names or {},
        },
        visitor=visitor,
        status_code=status_code,
    )


@router.get("/policies")
async def policies_page(
    request: Request, visitor: VisitorDep, governance: GovernanceDep
) -> HTMLResponse:
    return await _page(request, visitor, governance)


@router.post("/policies")
async def save_policy(
    request: Request,
    visitor: VisitorDep,
    governance: GovernanceDep,
    document: Annotated[str, Form(max_length=200_000)],
) -> Response:
    try:
        parsed = PolicyDocument.model_validate(json.loads(document))
    except json.JSONDecodeError as exc:
        problem = f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except ValidationError as exc:
        problem = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in exc.errors()
        )
    else:
        version = await governance.put_policy(visitor.principal, parsed)
        return redirect("/policies", flash=f"Policy version {version} is in force.")
    return await _page(
        request, visitor, governance, draft=document, edit_error=problem, status_code=422
    )


@router.post("/policies/evaluate")
async def evaluate(
    request: Request, visitor: VisitorDep, governance: GovernanceDep, session: SessionDep
) -> HTMLResponse:
    form = await request.form()
    task_type = str(form.get("type") or "")
    lines = str(form.get("lines_changed") or "0")
    resources = []
    for i in range(RESOURCE_ROWS):
        resource_id = str(form.get(f"id_{i}") or "").strip()
        if not resource_id:
            continue
        resources.append(
            ResourceRef(
                type=parse_enum(ResourceType, form.get(f"type_{i}"), "resource type"),
                id=resource_id[:200],
                scope=parse_enum(Scope, form.get(f"scope_{i}"), "scope"),
                actions=tuple(parse_enum(Action, a, "action") for a in form.getlist(f"actions_{i}"))
                or (Action.READ,),
            )
        )
    if not lines.isdigit():
        lines = "-1"  # refused by evaluate with its own message
    routing = await governance.evaluate(
        visitor.principal, task_type, resources, lines_changed=int(lines)
    )
    people = [u for _, users in routing.reviewers.by_group for u in users]
    names = await usernames(session, [*people, *routing.reviewers.any_slot])
    asked = {k: str(v) for k, v in form.multi_items() if k != "csrf_token"}
    return await _page(request, visitor, governance, routing=routing, asked=asked, names=names)
