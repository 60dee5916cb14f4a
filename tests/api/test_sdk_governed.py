"""The SDK's agent-applied tasks against a live server (real Redis, SQLite and
PostgreSQL): ``claim`` / ``complete`` / ``fail`` and the ``@governed`` decorator — an
approved call runs once under its claim with the fence, a rejected or sent-back one never
runs and its comments surface, an exception fails the task, and two calls that share
resources never run at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from livesrv import Live, StartLive
from sqlalchemy import update
from test_sdk import FAST, WAIT, agent_token

from community_ade.client import (
    AdeClient,
    ApplyFailed,
    ChangesRequested,
    Rejected,
    SyncAdeClient,
    Verdict,
    WaitTimeout,
    current_fence,
    governed,
)
from community_ade.client.errors import FenceRejected, InvalidTransition, ValidationFailed
from community_ade.client.governed import PayloadMismatch
from community_ade.storage.models import Task

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)

SERVICE = [{"type": "service", "id": "api", "actions": ["write"]}]

# What the governed functions below saw when they ran: (name, arguments, fence, start, end).
RUNS: list[tuple[str, dict[str, Any], int, float, float]] = []


@pytest.fixture
async def live(start_live: StartLive) -> Live:
    RUNS.clear()
    return await start_live()


@pytest.fixture
async def clients(live: Live) -> AsyncIterator[tuple[AdeClient, AdeClient]]:
    """(the agent's client, bob's: a reviewer)."""
    agent = AdeClient(live.server.url, await agent_token(live), backoff=FAST)
    bob = AdeClient(live.server.url, live.tokens["bob"], backoff=FAST)
    yield agent, bob
    await agent.aclose()
    await bob.aclose()


async def decide(bob: AdeClient, action: str, comment: str = "") -> uuid.UUID:
    """As soon as a task waits on bob, take ``action`` on it; its id."""
    for _ in range(int(WAIT / 0.05)):
        waiting = (await bob.awaiting_me()).items
        if waiting:
            task = waiting[0]
            assert task.preview_digest is not None
            await getattr(bob, action)(task.id, task.preview_digest, comment)
            return task.id
        await asyncio.sleep(0.05)
    pytest.fail("no task came to bob")


async def deploy(service: str, version: str, replicas: int = 2) -> str:
    start, fence = time.monotonic(), current_fence()
    await asyncio.sleep(0.2)
    RUNS.append(
        ("deploy", {"service": service, "version": version}, fence, start, time.monotonic())
    )
    return f"{service} {version} x{replicas}"


async def broken(service: str) -> None:
    RUNS.append(("broken", {"service": service}, current_fence(), 0, 0))
    raise RuntimeError("registry unreachable")


async def test_approved_runs_once_with_the_fence_and_completes(
    live: Live, clients: tuple[AdeClient, AdeClient]
) -> None:
    agent, bob = clients
    with pytest.raises(RuntimeError, match="inside a running @governed call"):
        current_fence()
    governed_deploy = governed(client=agent, resources=SERVICE, title="deploy api")(deploy)
    calling = asyncio.create_task(governed_deploy("api", version="1.4.2"))
    task_id = await decide(bob, "approve", "ship it")
    assert await asyncio.wait_for(calling, WAIT) == "api 1.4.2 x2"

    (run,) = RUNS
    task = await agent.get(task_id)
    assert task.state == "COMPLETED"
    assert run[2] == task.fence
    assert task.title == "deploy api"
    assert task.payload == {
        "function": f"{__name__}.deploy",
        "arguments": {"service": "api", "version": "1.4.2", "replicas": 2},
    }
    assert task.result is not None
    assert task.result["summary"] == 'returned "api 1.4.2 x2"'
    assert task.result["details"] == {"returned": "api 1.4.2 x2"}
    assert (await live.runtime.locks.inspect_resource("service:api")).holders == []


async def test_rejected_never_runs_and_the_comment_surfaces(
    clients: tuple[AdeClient, AdeClient],
) -> None:
    agent, bob = clients
    calling = asyncio.create_task(governed(client=agent, resources=SERVICE)(deploy)("api", "2.0"))
    task_id = await decide(bob, "reject", "not on Fridays")
    with pytest.raises(Rejected) as info:
        await asyncio.wait_for(calling, WAIT)
    assert info.value.comments == ["not on Fridays"]
    assert "not on Fridays" in str(info.value)
    assert RUNS == []
    assert (await agent.get(task_id)).state == "REJECTED"


async def test_changes_requested_come_back_raised_or_returned(
    clients: tuple[AdeClient, AdeClient],
) -> None:
    agent, bob = clients
    calling = asyncio.create_task(governed(client=agent)(deploy)("api", "2.0"))
    first = await decide(bob, "request_changes", "use 1.9 first")
    with pytest.raises(ChangesRequested) as info:
        await asyncio.wait_for(calling, WAIT)
    assert info.value.comments == ["use 1.9 first"]
    # The draft is cancelled: the next call, changed, is a new task.
    assert (await agent.get(first)).state == "CANCELLED"

    returning = governed(client=agent, on_rejection="return")(deploy)
    calling_again = asyncio.create_task(returning("api", "1.9"))
    await decide(bob, "request_changes", "replicas: 3")
    verdict = await asyncio.wait_for(calling_again, WAIT)
    assert isinstance(verdict, Verdict)
    assert (verdict.outcome, verdict.comments) == ("changes_requested", ["replicas: 3"])
    assert RUNS == []


async def test_a_caller_that_stops_waiting_cancels_the_task(
    live: Live, clients: tuple[AdeClient, AdeClient]
) -> None:
    agent, _ = clients
    with pytest.raises(WaitTimeout):
        await governed(client=agent, timeout=1)(deploy)("api", "4.0")
    async with httpx.AsyncClient(base_url=live.server.url) as http:
        listed = await http.get("/api/v1/tasks", headers=live.as_("admin"))
    assert [t["state"] for t in listed.json()["items"]] == ["CANCELLED"]
    assert RUNS == []


async def test_an_exception_fails_the_task_and_is_raised(
    clients: tuple[AdeClient, AdeClient],
) -> None:
    agent, bob = clients
    calling = asyncio.create_task(governed(client=agent, resources=SERVICE)(broken)("api"))
    task_id = await decide(bob, "approve")
    with pytest.raises(RuntimeError, match="registry unreachable"):
        await asyncio.wait_for(calling, WAIT)
    task = await agent.get(task_id)
    assert (task.state, task.rollback_outcome) == ("FAILED", "unknown")
    assert task.last_error == "RuntimeError: registry unreachable"
    assert len(RUNS) == 1


async def test_two_calls_sharing_resources_never_run_at_once(
    clients: tuple[AdeClient, AdeClient],
) -> None:
    agent, bob = clients
    governed_deploy = governed(client=agent, resources=SERVICE)(deploy)
    calls = [asyncio.create_task(governed_deploy("api", "3.0")) for _ in range(2)]
    ids = {await decide(bob, "approve"), await decide(bob, "approve")}
    assert await asyncio.wait_for(asyncio.gather(*calls), WAIT) == ["api 3.0 x2"] * 2
    assert len(ids) == 2  # two tasks, the same call
    first, second = sorted(RUNS, key=lambda run: run[3])
    assert first[4] <= second[3]  # the second ran only once the first had finished
    assert second[2] > first[2]
    for task_id in ids:
        assert (await agent.get(task_id)).state == "COMPLETED"


async def test_arguments_that_are_not_exact_json_are_refused_before_proposing(
    live: Live, clients: tuple[AdeClient, AdeClient]
) -> None:
    agent, _ = clients

    async def send(payload: Any) -> None:
        raise AssertionError("never runs")

    governed_send = governed(client=agent, name="send")(send)
    for bad in (object(), (1, 2), {1: "a"}, float("nan"), {"deep": {"x": b"bytes"}}):
        with pytest.raises(TypeError, match="argument 'payload'"):
            await governed_send(bad)
    with pytest.raises(TypeError):  # not the signature
        await governed_send(1, 2)
    with pytest.raises(ValidationFailed):  # too big for agent.call: refused before sending
        await governed_send("x" * 70_000)
    async with httpx.AsyncClient(base_url=live.server.url) as http:
        listed = await http.get("/api/v1/tasks", headers=live.as_("admin"))
    assert listed.json()["total"] == 0
    with pytest.raises(TypeError, match="name="):  # '<locals>' cannot be shown as a name
        governed(client=agent)(send)


async def test_a_swapped_payload_is_failed_not_run(
    live: Live, clients: tuple[AdeClient, AdeClient]
) -> None:
    """Someone with the database's keys swaps the payload under review: the approved
    digest no longer names what the claim hands over, and the call is refused."""
    agent, bob = clients
    calling = asyncio.create_task(governed(client=agent, resources=SERVICE)(deploy)("api", "1"))
    task_id = None
    for _ in range(int(WAIT / 0.05)):
        if waiting := (await bob.awaiting_me()).items:
            task_id = waiting[0].id
            break
        await asyncio.sleep(0.05)
    assert task_id is not None
    async with live.runtime.sessions.begin() as session:
        swapped = {"function": f"{__name__}.deploy", "arguments": {"service": "db"}}
        await session.execute(update(Task).where(Task.id == task_id).values(payload=swapped))
    await decide(bob, "approve")
    with pytest.raises(PayloadMismatch, match="not run"):
        await asyncio.wait_for(calling, WAIT)
    task = await agent.get(task_id)
    assert (task.state, task.rollback_outcome) == ("FAILED", "nothing_to_roll_back")
    assert RUNS == []


async def test_claim_reports_and_plain_complete_fail(
    clients: tuple[AdeClient, AdeClient],
) -> None:
    agent, bob = clients

    async def approved() -> uuid.UUID:
        proposal = await agent.propose(
            "agent.call", {"function": "migrate", "arguments": {}}, SERVICE
        )
        await bob.approve(proposal.task.id, proposal.preview_digest)
        return proposal.task.id

    # Explicit report inside the block.
    first = await approved()
    async with agent.claim(first, lease_seconds=3) as claim:
        assert claim.task.state == "APPLYING"
        await asyncio.sleep(2.5)  # past a renewal: the lease is kept alive meanwhile
        assert claim.lease.heartbeats >= 1
        done = await claim.complete("migrated", {"rows": 3})
    assert (done.state, done.result) == (
        "COMPLETED",
        {"summary": "migrated", "details": {"rows": 3}, "fence": str(claim.fence)},
    )

    # ApplyFailed says what became of the attempt; retry puts it back to APPROVED.
    second = await approved()
    with pytest.raises(ApplyFailed):
        async with agent.claim(second):
            raise ApplyFailed("busy", rollback_outcome="rolled_back", retry=True)
    assert (await agent.get(second)).state == "APPROVED"

    # The plain calls, with a stale fence refused.
    async with agent.claim(second) as held:
        with pytest.raises(FenceRejected):
            await agent.complete(second, held.fence - 1, "stale")
        failed = await agent.fail(second, held.fence, "gave up", "nothing_to_roll_back")
        held.reported = True  # reported by hand: the block leaves it alone
    assert failed.state == "FAILED"
    with pytest.raises(InvalidTransition):
        async with agent.claim(second):
            pass


def deploy_sync(service: str) -> int:
    RUNS.append(("deploy_sync", {"service": service}, current_fence(), 0, 0))
    return 7


async def test_plain_functions_are_governed_through_the_sync_client(
    live: Live, clients: tuple[AdeClient, AdeClient]
) -> None:
    agent, bob = clients

    def call_it() -> int:
        with SyncAdeClient(live.server.url, agent.transport.token) as sync:
            return governed(client=sync, resources=SERVICE)(deploy_sync)("api")

    calling = asyncio.create_task(asyncio.to_thread(call_it))
    task_id = await decide(bob, "approve")
    assert await asyncio.wait_for(calling, WAIT) == 7
    task = await agent.get(task_id)
    assert task.state == "COMPLETED"
    assert [("deploy_sync", {"service": "api"}, task.fence, 0, 0)] == RUNS


async def test_a_sync_function_refuses_an_async_client(
    clients: tuple[AdeClient, AdeClient],
) -> None:
    agent, _ = clients
    wrapped: Callable[..., int] = governed(client=agent)(deploy_sync)
    with pytest.raises(TypeError, match="SyncAdeClient"):
        await asyncio.to_thread(wrapped, "api")
