"""An agent's enabled catalogue tools as pydantic-ai tools.

Which tools, and their input schemas, are the MCP gateway's (``mcp_gateway.tools``): the
same configuration gives the model the same tools whichever door it uses.

- **Read tools** answer at once through the gateway's own implementations
  (``mcp_gateway.reads``), confined to this process's workspace roots
  (``ADE_WORKSPACE_ROOTS``, as for the server); ``locks.inspect`` asks the API.
- **Change tools** propose a task with the SDK, then wait for the reviewers' decision
  in the same call (the runner is its own MCP-free client, so no 60 s tool timeout to
  dodge): approved → the worker's result; changes requested or rejected → the reviewers'
  comments, for the model to revise and propose again. A draft sent back is cancelled as
  superseded, so the queue holds only live proposals. The gateway's governance tools
  (``wait_for_decision``…) are therefore not offered.

A tool's failure (a bad path, a payload the server refuses) goes back to the model as
text naming the problem, so it can correct itself; it never ends the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic_ai import Tool

from community_ade.api.schemas import ReviewOut, TaskOut, TaskTypeOut
from community_ade.approvals.states import TaskState
from community_ade.client import AdeClient, AdeProblem, WaitTimeout
from community_ade.errors import AdeError
from community_ade.execution.executors.base import PlanContext
from community_ade.mcp_gateway import reads
from community_ade.mcp_gateway.tools import ToolSpec, tools_for

log = logging.getLogger(__name__)

Say = Callable[[str], None]
APPLIED_NEXT = frozenset({TaskState.APPROVED, TaskState.APPLYING})
ToolFunction = Callable[..., Awaitable[str]]


def tool_name(spec_name: str) -> str:
    """The name the model sees: providers accept ``[A-Za-z0-9_-]`` only."""
    return spec_name.replace(".", "_")


def specs_for(
    enabled: Sequence[str], allowed_task_types: Sequence[str], task_types: Sequence[TaskTypeOut]
) -> list[ToolSpec]:
    """The read and change tools of a configuration, given the server's task types."""
    installed = {t.type: (t.description, t.payload_schema) for t in task_types}
    found = tools_for(enabled, allowed_task_types, installed.get)
    return [spec for spec in found if spec.kind != "governance"]


def _answer(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=1, default=str)


def _comments(reviews: Sequence[ReviewOut], task: TaskOut) -> list[dict[str, str]]:
    """The decisions on the preview proposed (as the gateway's ``wait_for_decision``)."""
    return [
        {"decision": r.decision, "comment": r.comment}
        for r in reviews
        if r.digest == task.preview_digest
    ]


class AgentTools:
    """The tools of one running agent: the SDK client it proposes with, the context its
    reads are confined to, and how long a change tool waits for a decision."""

    def __init__(
        self,
        client: AdeClient,
        plan_context: PlanContext,
        *,
        applied_by_agent: frozenset[str] = frozenset(),
        decision_timeout: float | None = None,
        say: Say = lambda _: None,
    ) -> None:
        self.client = client
        self.applied_by_agent = applied_by_agent  # task types the worker does not apply
        self.plan_context = plan_context
        self.decision_timeout = decision_timeout
        self.say = say
        self.proposed: list[str] = []  # task ids, in order

    def build(self, specs: Sequence[ToolSpec]) -> list[Tool[Any]]:
        return [
            Tool.from_schema(
                self._function(spec),
                name=tool_name(spec.name),
                description=spec.description,
                json_schema=dict(spec.input_schema),
            )
            for spec in specs
        ]

    def _function(self, spec: ToolSpec) -> ToolFunction:
        async def call(**arguments: Any) -> str:
            try:
                if spec.kind == "change":
                    return await self.propose(spec.name, arguments)
                return await self.read(spec.name, arguments)
            except (AdeError, AdeProblem) as exc:
                message = exc.message if isinstance(exc, AdeError) else str(exc)
                details = exc.details if isinstance(exc, AdeError) else exc.fields
                return _answer({"error": message, **{k: v for k, v in details.items() if v}})

        return call

    async def read(self, name: str, arguments: Mapping[str, Any]) -> str:
        if name in reads.WORKSPACE_READS:
            return await reads.WORKSPACE_READS[name](self.plan_context, arguments)
        resource = arguments.get("resource")
        params = {"resource": str(resource)[:200]} if resource else {}
        return _answer(await self.client.transport.request("GET", "/locks", params=params))

    async def propose(self, task_type: str, arguments: Mapping[str, Any]) -> str:
        """Propose, wait for the decision, and say what became of it."""
        submitted = await self.client.propose(
            task_type,
            arguments.get("payload") or {},
            arguments.get("resources") or (),
            title=str(arguments.get("title") or task_type),
            description=str(arguments.get("description") or ""),
            priority=int(arguments.get("priority") or 100),
        )
        task = submitted.task
        self.proposed.append(str(task.id))
        self.say(f"proposed {task_type} task {task.id}: {task.title} ({task.state})")
        try:
            decided = await self.client.wait(task.id, self.decision_timeout)
            # Approved (the worker may have begun applying already): wait for the apply.
            if decided.state in APPLIED_NEXT and task_type not in self.applied_by_agent:
                decided = await self.client.wait(task.id, self.decision_timeout, until="final")
        except WaitTimeout as exc:
            state = exc.task.state if exc.task else task.state
            return _answer(
                {
                    "task_id": str(task.id),
                    "state": state,
                    "outcome": "waiting",
                    "message": "no decision yet; the task stays in the reviewers' queue",
                }
            )
        return await self._outcome(decided)

    async def _outcome(self, task: TaskOut) -> str:
        state = TaskState(task.state)
        document: dict[str, Any] = {"task_id": str(task.id), "state": state.value}
        if state in (TaskState.COMPLETED, TaskState.FAILED):
            document["outcome"] = "applied" if state == TaskState.COMPLETED else "apply_failed"
            document["result"] = task.result
            self.say(f"task {task.id} {state.value.lower()}")
            return _answer(document)
        reviews = (await self.client.approval(task.id)).reviews
        document["reviews"] = _comments(reviews, task)
        if state == TaskState.DRAFT:
            document["outcome"] = "changes_requested"
            document["next"] = "revise the change as the reviewers ask and propose it again"
            await self.client.cancel(task.id, "changes requested: the agent proposes a revision")
        else:
            document["outcome"] = state.value.lower()
        self.say(f"task {task.id}: {document['outcome']} {document['reviews']}")
        return _answer(document)
