"""The FastAPI application: one Runtime per process, opened in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from community_ade import __version__, dashboard
from community_ade.agents.lease_locks import LeaseLocks
from community_ade.agents.watch import watch_health
from community_ade.api import errors
from community_ade.api.body_limit import BodyLimitMiddleware
from community_ade.api.idempotency import forget_expired
from community_ade.api.mcp_mount import McpEndpoint
from community_ade.api.middleware import RejectNulMiddleware
from community_ade.api.openapi_payloads import add_payload_schemas
from community_ade.api.routes import (
    agents,
    approvals,
    audit,
    claims,
    governance,
    health,
    leases,
    locks,
    metrics,
    notifications,
    secrets,
    shell_profiles,
    slack,
    task_types,
    tasks,
    tokens,
    transparency,
    webhooks,
    ws,
)
from community_ade.api.schemas import Problem
from community_ade.approvals.sweep import ClockSweep, SweepReport
from community_ade.audit.checkpoints import checkpoint_forever, log_signer
from community_ade.events.hub import live_events
from community_ade.execution.claims import settle_lapsed_claims
from community_ade.execution.executors import load_executors
from community_ade.execution.worker import Worker
from community_ade.infra.aio import Incident, cancel_and_wait, stop_if_cancelled
from community_ade.integrations.slack.poster import SlackPoster
from community_ade.notifications.email_sender import email_forever
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.webhooks.delivery import run_webhooks

API_PREFIX = "/api/v1"
_PROBLEM: dict[str, Any] = {
    "model": Problem,
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
# Every API route may answer with these problem documents (api/errors.py).
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {**_PROBLEM, "description": text}
    for status, text in {
        401: "No valid token (`unauthenticated`).",
        403: "Not permitted (`forbidden`, `self_review`, `not_eligible`).",
        404: "No such object (`not_found`).",
        409: "Conflicts with the current state (`invalid_transition`, `stale_preview`, "
        "`already_decided`, `conflict`).",
        413: "The request body is larger than the route's limit (`payload_too_large`).",
        422: "The request is not valid (`validation_failed`).",
        429: "Too many calls, e.g. of /audit/verify (`rate_limited`); see `Retry-After`.",
        503: "Redis or the database is unreachable (`service_unavailable`).",
    }.items()
}
log = logging.getLogger(__name__)


async def sweep_once(runtime: Runtime) -> SweepReport:
    """Send the reminders due and settle what is overdue (approvals/sweep.py), in one
    transaction."""
    async with runtime.sessions.begin() as session:
        return await ClockSweep(session).run()


async def sweep_forever(runtime: Runtime) -> None:
    """The periodic work of the review and approval clocks (reminders, timeout outcomes;
    architecture §3), and the expiry of stored Idempotency-Key answers."""
    incident = Incident("expiry sweep", log)
    while True:
        stop_if_cancelled()
        await asyncio.sleep(runtime.settings.sweep_interval_seconds)
        try:
            swept = await sweep_once(runtime)
            lapsed = await settle_lapsed_claims(runtime)
            forgotten = await forget_expired(runtime.sessions, runtime.settings)
        except Exception as exc:  # e.g. a database connection closed: the next sweep retries
            incident.failed(exc)
            continue
        incident.cleared()
        if swept.decided or swept.escalated or swept.reminded:
            log.info(
                "clocks: %d task(s) decided on timeout, %d escalated, %d reminded",
                len(swept.decided),
                len(swept.escalated),
                len(swept.reminded),
            )
        if lapsed:
            log.info("settled %d agent claim(s) whose lease lapsed", len(lapsed))
        if forgotten:
            log.info("forgot %d Idempotency-Key(s) past their time to live", forgotten)


# More background work that runs while the app serves, e.g. the demo's trickle of tasks.
BackgroundJob = Callable[[Runtime], Coroutine[Any, Any, None]]


def create_app(
    settings: Settings | None = None,
    *,
    run_worker: bool = False,
    jobs: Sequence[BackgroundJob] = (),
) -> FastAPI:
    """Build the app; the Runtime opens when it starts serving and closes when it stops.
    ``run_worker``: also apply approved tasks in this process (``ade serve``'s default);
    ``jobs``: more background work, started with the Runtime and cancelled at shutdown."""
    app_settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            Runtime.open(app_settings, wait=app_settings.startup_wait_seconds) as runtime,
            live_events(runtime) as events_hub,
            mcp.serving(runtime, events_hub),
        ):
            app.state.runtime = runtime
            app.state.events_hub = events_hub
            app.state.audit_signer = log_signer(runtime.settings)
            sweeper = asyncio.create_task(sweep_forever(runtime), name="ade-expiry-sweep")
            health_watch = asyncio.create_task(watch_health(runtime), name="ade-agent-health")
            signing = asyncio.create_task(checkpoint_forever(runtime), name="ade-checkpoints")
            poster = SlackPoster(runtime.sessions, runtime.settings)
            slack_posting = asyncio.create_task(poster.run_forever(), name="ade-slack-poster")
            delivering = asyncio.create_task(run_webhooks(runtime), name="ade-webhooks")
            mailing = asyncio.create_task(email_forever(runtime), name="ade-email")
            extra = [asyncio.create_task(job(runtime)) for job in jobs]
            worker = Worker(runtime) if run_worker else None
            working = worker and asyncio.create_task(worker.run(), name="ade-worker")
            try:
                yield
            finally:
                if worker and working:
                    worker.stop()  # drain: in-flight applies finish before the Runtime closes
                    await working
                background = (sweeper, health_watch, signing, slack_posting, delivering, mailing)
                await cancel_and_wait((*background, *extra))
                await LeaseLocks.close_for(runtime.locks)

    mcp = McpEndpoint()
    app = FastAPI(
        title="Community ADE",
        version=__version__,
        summary="Preview, review and cleanly apply the changes agents ask for.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RejectNulMiddleware)
    # Added last, so it runs first: every other layer reads the body through its limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=app_settings.max_body_bytes)
    app.include_router(health.router)
    modules = (tasks, task_types, claims, approvals, governance, audit, agents, leases)
    for module in (*modules, shell_profiles, secrets, slack, tokens, webhooks, notifications):
        app.include_router(module.router, prefix=API_PREFIX, responses=PROBLEMS)
    app.include_router(locks.router, prefix=API_PREFIX, responses=PROBLEMS)
    app.include_router(transparency.router, responses=PROBLEMS)
    app.include_router(ws.router, prefix=API_PREFIX)
    app.include_router(metrics.router)
    # A route, not a mount: a mount answers /mcp with a redirect to /mcp/, which MCP
    # clients do not follow.
    app.router.routes.append(
        Route("/mcp", mcp, methods=["GET", "POST", "DELETE"], include_in_schema=False)
    )
    dashboard.install(app)
    app.openapi = _mended(app.openapi)  # type: ignore[method-assign]
    return app


def _mended(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """FastAPI documents its own ``HTTPValidationError`` body beside ours for every 422;
    the server only ever answers a bad request with a problem document (api/errors.py),
    so the OpenAPI document says exactly that. And it knows nothing of the task types:
    their payload schemas are added (``openapi_payloads``). Mended once, as FastAPI builds
    it once."""
    mended: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not mended:
            mended.update(build())
            for operations in mended.get("paths", {}).values():
                for operation in operations.values():
                    invalid = operation.get("responses", {}).get("422")
                    if invalid is not None:
                        invalid["content"] = dict(_PROBLEM["content"])
            for name in ("HTTPValidationError", "ValidationError"):
                mended.get("components", {}).get("schemas", {}).pop(name, None)
            add_payload_schemas(mended, load_executors())
        return mended

    return openapi
