"""``ade serve --demo``'s agents at work, through the door a real agent uses.

Each demo agent stays online (its lease held over HTTP with the SDK) and, every 20-30 s,
one of them runs toward a goal exactly as ``ade agents run NAME --goal`` would: its
stored configuration, its enabled tools, the SDK proposing to this server, the decision
awaited. Only the model differs: the demo's scripted model (``runner.scripted``), which
reads something with a read tool and then proposes the trickle's next change; so a
newcomer sees the agents online and their proposals arrive in the queue within a minute.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable
from typing import Any

import httpx

from community_ade.api.app import BackgroundJob
from community_ade.approvals.risk import ResourceRef
from community_ade.approvals.service import TaskDraft
from community_ade.auth import service as auth
from community_ade.cli.demo_data import (
    AGENTS,
    TRICKLE,
    TRICKLE_FIRST_SECONDS,
    TRICKLE_SECONDS,
    repository_of,
    workspace_of,
)
from community_ade.client import AdeClient, AdeProblem
from community_ade.errors import AdeError
from community_ade.runner.agent_run import RunResult, run_agent
from community_ade.runner.scripted import Step, scripted_model
from community_ade.runtime import Runtime
from community_ade.storage.models import utcnow

log = logging.getLogger(__name__)

# A demo run waits this long for a decision, then ends (its task stays in the queue).
DECISION_WAIT_SECONDS = 120.0
PRESENCE_RETRY_SECONDS = 5.0
SHUTDOWN_SECONDS = 2.0


def _resource(ref: ResourceRef) -> dict[str, Any]:
    return {
        "type": ref.type.value,
        "id": ref.id,
        "scope": ref.scope.value,
        "actions": [a.value for a in ref.actions],
    }


def script_for(runtime: Runtime, draft: TaskDraft) -> list[Step]:
    """Look first (a read tool), then propose ``draft`` (its type's change tool)."""
    if draft.type == "git.patch":
        look = Step("git.log", {"repo": str(repository_of(runtime)), "max_count": 5})
    else:
        look = Step("files.read", {"path": str(workspace_of(runtime) / "README.md")})
    change = {
        "title": draft.title,
        "description": draft.description,
        "payload": dict(draft.payload),
        "resources": [_resource(r) for r in draft.resources],
    }
    return [look, Step(draft.type, change)]


async def run_demo_item(
    runtime: Runtime,
    clients: dict[str, AdeClient],
    n: int,
    decision_timeout: float = DECISION_WAIT_SECONDS,
) -> RunResult:
    """The ``n``-th trickle change, proposed by its demo agent through ``run_agent``."""
    make, agent_name = TRICKLE[n % len(TRICKLE)]
    draft = make(runtime, n)
    return await run_agent(
        clients[agent_name],
        agent_name,
        f"Goal: {draft.title}.",
        model=scripted_model(script_for(runtime, draft)),
        settings=runtime.settings,
        decision_timeout=decision_timeout,
        say=lambda line: log.info("demo %s: %s", agent_name, line),
    )


async def agent_clients(runtime: Runtime, url: str) -> dict[str, AdeClient]:
    """A client per demo agent, each with a token of its own made for this run."""
    clients: dict[str, AdeClient] = {}
    async with runtime.sessions.begin() as session:
        for name in AGENTS:
            agent = await auth.get_agent_by_name(session, name)
            token, _ = await auth.create_token(session, name="demo-run", agent_id=agent.id)
            clients[name] = AdeClient(url, token)
    return clients


async def _logged(work: Awaitable[RunResult], what: str) -> None:
    try:
        result = await work
    except (AdeError, AdeProblem, httpx.HTTPError) as exc:
        log.warning("demo agents: %s failed: %s", what, exc)
    else:
        log.info("demo agents: %s: %s", what, result.output[:200])


async def hold_presence(client: AdeClient, name: str) -> None:
    """Keep the agent's lease (online) until cancelled, opening a new one when it is lost
    or the server could not be reached."""
    while True:
        try:
            async with client.lease() as lease:
                while True:
                    await asyncio.sleep(lease.info.renew_every_seconds)
                    lease.check()  # raises once a renewal was refused
        except (AdeProblem, httpx.HTTPError) as exc:
            log.info("demo agent %s: lease ended (%s); opening another", name, exc)
        await asyncio.sleep(PRESENCE_RETRY_SECONDS)


def demo_agents(url: str) -> BackgroundJob:
    """The background job running the demo agents against the server at ``url``."""

    async def job(runtime: Runtime) -> None:
        await asyncio.sleep(TRICKLE_FIRST_SECONDS)  # the server listens once started
        clients = await agent_clients(runtime, url)
        work: set[asyncio.Task[None]] = set()
        try:
            for name, client in clients.items():  # online for as long as the server runs
                work.add(asyncio.create_task(hold_presence(client, name)))
            n = int(utcnow().timestamp()) % 10_000  # a fresh series after each restart
            while True:
                run = asyncio.create_task(_logged(run_demo_item(runtime, clients, n), f"#{n}"))
                work.add(run)
                run.add_done_callback(work.discard)
                n += 1
                await asyncio.sleep(random.uniform(*TRICKLE_SECONDS))
        finally:
            # At shutdown the server no longer answers: closing the leases cannot reach
            # it, so do not wait for their retries (they lapse on their own).
            for task in work:
                task.cancel()
            if work:
                await asyncio.wait(work, timeout=SHUTDOWN_SECONDS)
            for client in clients.values():
                await client.aclose()

    return job
