"""The MCP server: an agent's configuration as tools, every change through governance.

One ``Gateway`` per process over its ``Runtime``: ``ade mcp`` serves it over stdio (the
token from ``ADE_TOKEN``), ``ade serve`` mounts it at ``/mcp`` as streamable HTTP (a
Bearer agent token on every request). Every request authenticates its token again (a
revoked token stops working at once), serves only an *agent* principal, lists exactly
the tools its configuration enables (``tools.tools_for``), refuses any other, and renews
the agent's lease, so an agent using the server shows online without relying on MCP
sessions (the newest protocol revision is stateless).

Nothing here decides anything: proposing is ``TaskService.create`` + ``submit`` (the same
validation, allowed task types, policy routing and audit as the REST API), reading a
decision is ``ReviewService``, cancelling is ``TaskService.cancel``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from mcp import types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade import __version__
from community_ade.agents.leases import Lease, LeaseStore
from community_ade.api.schemas import ReviewersOut, RiskOut, TaskCreate
from community_ade.approvals.decision_wait import (
    MAX_WAIT_SECONDS,
    checked_wait,
    decision_status,
    wait_for_decision,
)
from community_ade.approvals.governance import Governance
from community_ade.approvals.service import TaskService
from community_ade.auth.principal import Principal
from community_ade.auth.service import authenticate_token
from community_ade.auth.tokens import parse_token
from community_ade.errors import AdeError, InvalidInput, NotFound, Unauthenticated
from community_ade.events.hub import Hub
from community_ade.execution.executors import (
    description_of,
    load_executors,
    payload_schema_of,
)
from community_ade.hooks import harness
from community_ade.mcp_gateway import reads
from community_ade.mcp_gateway.tools import ToolSpec, tools_for
from community_ade.runtime import Runtime
from community_ade.storage.models import Agent, Task, utcnow

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602
UNAUTHORIZED = -32001  # an application error code: the token is missing or not valid
PREVIEW_CHARS = 8000
POLICY_URI = "ade://policy"
INSTRUCTIONS = (
    "Community ADE governs the changes you make. Read tools answer at once. A change tool "
    "proposes a task for human review and returns at once: call wait_for_decision with its "
    "task_id (again while it says waiting). Nothing is applied before a reviewer approved "
    "exactly the preview you were shown; a request for changes comes back with the "
    "reviewers' comments, so revise and propose again."
)


def _bearer(ctx: ServerRequestContext[Any, Any]) -> str | None:
    request = ctx.request
    if request is None:
        return None
    value = str(request.headers.get("authorization", ""))
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _answer(document: Mapping[str, Any], *, error: bool = False) -> types.CallToolResult:
    text = json.dumps(document, indent=1, default=str, ensure_ascii=False)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=dict(document),
        is_error=error,
    )


def _refusal(exc: AdeError) -> types.CallToolResult:
    """A domain refusal as a tool error the model can read and act on."""
    return _answer({"error": exc.code, "message": exc.message, **exc.details}, error=True)


class Gateway:
    """The MCP server of one process (see the module docstring)."""

    def __init__(self, runtime: Runtime, *, token: str | None = None, hub: Hub | None = None):
        self.runtime = runtime
        self.token = token  # stdio: the one caller; HTTP: each request's Bearer token
        self.hub = hub
        self.plan_context = runtime.plan_context()  # reads: roots and limits only
        self.leases = LeaseStore(runtime.redis)
        self._lease_of: dict[uuid.UUID, Lease] = {}
        self.server: Server[Any] = Server(
            "community-ade",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_list_resources=self._list_resources,
            on_read_resource=self._read_resource,
        )

    # -- the caller ---------------------------------------------------------------------

    async def _caller(
        self, ctx: ServerRequestContext[Any, Any], session: AsyncSession
    ) -> tuple[Principal, Agent]:
        token = _bearer(ctx) or self.token
        if token is None:
            raise MCPError(UNAUTHORIZED, "send an agent's API token: Authorization: Bearer …")
        try:
            principal = await authenticate_token(session, token, now=utcnow())
        except Unauthenticated as exc:
            raise MCPError(UNAUTHORIZED, exc.message) from None
        agent = await session.get(Agent, principal.id) if principal.kind == "agent" else None
        if agent is None:
            raise MCPError(
                UNAUTHORIZED,
                "the MCP server serves agents: use a token of the agent "
                "(POST /api/v1/agents/{id}/tokens or the dashboard's agent page)",
            )
        await self._renew_lease(agent.id)
        return principal, agent

    async def _renew_lease(self, agent_id: uuid.UUID) -> None:
        """Each request renews the agent's lease (opening one when it lapsed): online."""
        lease = self._lease_of.get(agent_id)
        try:
            if lease is not None:
                with contextlib.suppress(NotFound):
                    self._lease_of[agent_id] = await self.leases.heartbeat(lease)
                    return
            seconds = self.runtime.settings.agent_lease_seconds
            self._lease_of[agent_id] = await self.leases.open(agent_id, seconds, opened_by="mcp")
        except AdeError as exc:  # Redis away: presence is best effort, the call goes on
            log.warning("agent %s: could not renew its lease: %s", agent_id, exc.message)

    async def close(self) -> None:
        """Close the leases this process opened (the agents go offline at once)."""
        for lease in self._lease_of.values():
            with contextlib.suppress(AdeError):
                await self.leases.close(lease)
        self._lease_of.clear()

    def _tasks(self, session: AsyncSession) -> TaskService:
        return TaskService(session, plan_context=self.runtime.plan_context(session))

    def _tools(self, agent: Agent) -> dict[str, ToolSpec]:
        executors = load_executors()

        def task_type(name: str) -> tuple[str, Mapping[str, Any] | None] | None:
            executor = executors.get(name)
            if executor is None:
                return None
            return description_of(executor), payload_schema_of(executor)

        found = tools_for(agent.tools or (), agent.allowed_task_types or (), task_type)
        return {spec.name: spec for spec in found}

    # -- tools --------------------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        async with self.runtime.sessions.begin() as session:
            _, agent = await self._caller(ctx, session)
            specs = self._tools(agent)
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=spec.name,
                    title=spec.title,
                    description=spec.description,
                    input_schema=dict(spec.input_schema),
                    annotations=types.ToolAnnotations(
                        title=spec.title,
                        read_only_hint=spec.read_only,
                        # A proposal changes nothing by itself; cancelling does.
                        destructive_hint=spec.name == "cancel_task",
                        idempotent_hint=spec.read_only,
                        open_world_hint=False,
                    ),
                )
                for spec in specs.values()
            ]
        )

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = dict(params.arguments or {})
        try:
            async with self.runtime.sessions.begin() as session:
                principal, agent = await self._caller(ctx, session)
                spec = self._tools(agent).get(params.name)
                if spec is None:
                    return _answer(
                        {
                            "error": "tool_not_enabled",
                            "message": f"tool {params.name!r} is not enabled for agent "
                            f"{agent.name}: its configuration decides which tools it has",
                        },
                        error=True,
                    )
                if spec.name not in ("wait_for_decision", "permission_prompt"):
                    return await self._run(spec, arguments, principal, session)
            # Waiting holds no transaction (nor, on SQLite, the database's write lock).
            # Authenticated above, so the token parses; a revoke ends the wait at once.
            token_hash = parse_token(_bearer(ctx) or self.token or "").token_hash
            if spec.name == "permission_prompt":
                return await self._permission_prompt(principal, token_hash, arguments)
            return await self._wait_for_decision(principal, token_hash, arguments)
        except AdeError as exc:  # the transaction rolled back: nothing half-written
            return _refusal(exc)

    async def _run(
        self,
        spec: ToolSpec,
        arguments: dict[str, Any],
        principal: Principal,
        session: AsyncSession,
    ) -> types.CallToolResult:
        if spec.kind == "change":
            return _answer(await self._propose(spec.name, arguments, principal, session))
        if spec.name == "task_status":
            task = await self._task(session, principal, arguments)
            return _answer(await decision_status(session, task))
        if spec.name == "cancel_task":
            tasks = self._tasks(session)
            task = await self._task(session, principal, arguments)
            reason = str(arguments.get("reason", ""))[:1000] or "cancelled by the agent"
            task = await tasks.cancel(principal, task.id, reason)
            return _answer(await decision_status(session, task))
        return _answer({"text": await self._read(spec.name, arguments)})

    async def _read(self, name: str, arguments: Mapping[str, Any]) -> str:
        if name in reads.WORKSPACE_READS:
            return await reads.WORKSPACE_READS[name](self.plan_context, arguments)
        return await reads.locks_inspect(self.runtime.locks, arguments)

    async def _propose(
        self, task_type: str, arguments: dict[str, Any], principal: Principal, session: AsyncSession
    ) -> dict[str, Any]:
        """Create and submit, in one transaction (all or nothing)."""
        try:
            body = TaskCreate.model_validate({**arguments, "type": task_type})
        except ValidationError as exc:
            errors = [
                {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ]
            raise InvalidInput(f"invalid arguments for {task_type}", errors=errors) from None
        tasks = self._tasks(session)
        task = await tasks.create(principal, body.draft())
        submission = await tasks.submit(principal, task.id)
        preview = submission.plan.preview
        return {
            "task_id": str(task.id),
            "state": submission.task.state,
            "auto_approved": submission.auto_approved,
            "summary": submission.plan.summary,
            "preview_digest": submission.plan.digest,
            "preview": preview[:PREVIEW_CHARS]
            + (f"\n… ({len(preview)} characters in all)" if len(preview) > PREVIEW_CHARS else ""),
            "risk": RiskOut.of(submission.risk).model_dump(mode="json"),
            "requirements": submission.task.requirements or {},
            "eligible_reviewers": ReviewersOut.of(submission.reviewers).model_dump(mode="json"),
            "review_deadline": submission.task.review_deadline,
            "next": "call wait_for_decision with this task_id",
        }

    async def _task(
        self, session: AsyncSession, principal: Principal, arguments: Mapping[str, Any]
    ) -> Task:
        try:
            task_id = uuid.UUID(str(arguments.get("task_id")))
        except ValueError:
            raise InvalidInput(
                "task_id must be a task's id (a UUID)",
                errors=[{"path": "task_id", "message": "not a UUID"}],
            ) from None
        task = await self._tasks(session).get(principal, task_id)
        if task.agent_id != principal.id:
            raise NotFound(f"no task {task_id} of yours")
        return task

    async def _wait_for_decision(
        self, principal: Principal, token_hash: str, arguments: Mapping[str, Any]
    ) -> types.CallToolResult:
        wait = checked_wait(arguments.get("wait_seconds", 20))

        async def read(session: AsyncSession) -> Task:
            return await self._task(session, principal, arguments)

        return _answer(
            await wait_for_decision(
                self.runtime.sessions,
                self.hub,
                read,
                task_id=str(arguments.get("task_id")),
                principal_id=principal.id,
                token_hash=token_hash,
                wait=wait,
            )
        )

    async def _permission_prompt(
        self, principal: Principal, token_hash: str, arguments: Mapping[str, Any]
    ) -> types.CallToolResult:
        """One tool call of Claude Code (``--permission-prompt-tool``) through review: the
        same ``agent.call`` task as ``ade hook claude-code``, answered in its format. Not
        decided within the wait: deny (this format has no "ask"), the task left queued."""
        tool_input = arguments.get("input")
        try:
            call = harness.permission_prompt_call(
                arguments.get("tool_name"), tool_input, arguments.get("tool_use_id")
            )
        except harness.BadEvent as exc:
            raise InvalidInput(str(exc)) from None
        try:
            async with self.runtime.sessions.begin() as session:
                proposal = await self._propose(
                    harness.TASK_TYPE,
                    {k: v for k, v in call.task().items() if k != "type"},
                    principal,
                    session,
                )
            task_id = proposal["task_id"]
            if proposal["auto_approved"]:
                status: dict[str, Any] = {"task_id": task_id, "outcome": "approved"}
            else:

                async def read(session: AsyncSession) -> Task:
                    return await self._task(session, principal, {"task_id": task_id})

                status = await wait_for_decision(
                    self.runtime.sessions,
                    self.hub,
                    read,
                    task_id=task_id,
                    principal_id=principal.id,
                    token_hash=token_hash,
                    wait=MAX_WAIT_SECONDS,
                )
            verdict = harness.verdict_of(status, waited=MAX_WAIT_SECONDS)
            if status.get("outcome") == "changes_requested":
                # Back in DRAFT, but Claude Code moves on: do not leave it behind.
                async with self.runtime.sessions.begin() as session:
                    await self._tasks(session).cancel(
                        principal, uuid.UUID(task_id), "denied with the reviewers' comments"
                    )
        except AdeError as exc:  # refused (not allowed agent.call, input too large …): deny
            verdict = harness.Verdict("deny", f"Community ADE refused: {exc.message}")
        return _answer(harness.permission_prompt_answer(verdict, call.arguments))

    # -- prompts and resources ----------------------------------------------------------

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        async with self.runtime.sessions.begin() as session:
            _, agent = await self._caller(ctx, session)
        prompts = []
        if agent.system_prompt:
            prompts.append(
                types.Prompt(
                    name="system_prompt",
                    title=f"{agent.name}: system prompt",
                    description=f"The system prompt configured for agent {agent.name}.",
                )
            )
        return types.ListPromptsResult(prompts=prompts)

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        async with self.runtime.sessions.begin() as session:
            _, agent = await self._caller(ctx, session)
        if params.name != "system_prompt" or not agent.system_prompt:
            raise MCPError(INVALID_PARAMS, f"no prompt {params.name!r}")
        return types.GetPromptResult(
            description=f"The system prompt configured for agent {agent.name}.",
            messages=[
                types.PromptMessage(
                    role="user", content=types.TextContent(type="text", text=agent.system_prompt)
                )
            ],
        )

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        async with self.runtime.sessions.begin() as session:
            await self._caller(ctx, session)
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=POLICY_URI,
                    name="policy",
                    title="Approval policy",
                    description="The policy that routes your tasks to reviewers (JSON).",
                    mime_type="application/json",
                )
            ]
        )

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != POLICY_URI:
            raise MCPError(INVALID_PARAMS, f"no resource {params.uri}")
        async with self.runtime.sessions.begin() as session:
            principal, _ = await self._caller(ctx, session)
            governance = Governance(session, self._tasks(session))
            version, document = await governance.current_policy(principal)
        text = json.dumps(
            {"version": version, "document": document.model_dump(mode="json")}, indent=1
        )
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri=POLICY_URI, mime_type="application/json", text=text)
            ]
        )
