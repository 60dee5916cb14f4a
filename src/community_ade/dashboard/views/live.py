"""Helpers of the live feed (``static/live.js``): one sentence describing an event for
a toast, e.g. "bob approved “scale the demo service”"."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from community_ade.api.deps import SessionDep
from community_ade.auth.principal import Permission, require
from community_ade.dashboard.lookups import actor_names, agent_names, subject_agent
from community_ade.dashboard.web import PageRoute, VisitorDep
from community_ade.storage.models import Task

router = APIRouter(route_class=PageRoute)

VERBS = {"approve": "approved", "reject": "rejected"}
# What happened to a task, for the events that get a toast besides decisions.
OUTCOMES = {
    "approval:approved": "is approved",
    "approval:rejected": "is rejected",
    "approval:expired": "expired",
    "approval:escalated": "was escalated: its review timed out",
    "approval:re_review": "went back to review: its approval timed out",
    "task:completed": "was applied",
    "task:failed": "failed to apply",
}


@router.get("/live/describe")
async def describe(
    visitor: VisitorDep,
    session: SessionDep,
    type: Annotated[str, Query(max_length=64)],
    actor: Annotated[str, Query(max_length=80)] = "",
    subject: Annotated[str, Query(max_length=200)] = "",
    decision: Annotated[str, Query(max_length=32)] = "",
) -> PlainTextResponse:
    require(visitor.principal, Permission.TASK_READ)
    who = (await actor_names(session, [actor])).get(actor, actor or "someone")
    what = subject
    if (agent := subject_agent(subject)) is not None:
        what = "agent " + (await agent_names(session, [agent])).get(agent, "(unknown)")
    elif subject.startswith("task:"):
        try:
            task = await session.get(Task, uuid.UUID(subject[5:]))
        except ValueError:
            task = None
        what = f"“{task.title}”" if task else "a task"
    if type == "approval:decision":
        verb = VERBS.get(decision, decision.replace("_", " ") or "decided on")
        return PlainTextResponse(f"{who} {verb} {what}")
    if type in OUTCOMES:
        return PlainTextResponse(f"{what} {OUTCOMES[type]}")
    return PlainTextResponse(f"{type}: {what} by {who}")
