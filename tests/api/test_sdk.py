"""The SDK (``community_ade.client``) against a live server (uvicorn on a loopback port,
real Redis, SQLite and PostgreSQL): propose, wait, review, cancel, errors, leases, and
the network failing in between (a TCP proxy that drops answers and sockets)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from livesrv import Live, StartLive
from tcpproxy import TcpProxy
from websockets.asyncio.client import connect

from community_ade.api.schemas import SubmitOut, TaskOut
from community_ade.auth import service as auth
from community_ade.client import AdeClient, Backoff, SyncAdeClient, WaitTimeout
from community_ade.client.aio import UNTIL
from community_ade.client.errors import (
    InvalidTransition,
    LockLost,
    NotEligible,
    NotFound,
    StalePreview,
    Unauthenticated,
    ValidationFailed,
)
from community_ade.client.waiting import TaskWaiter

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)

WAIT = 30.0
FAST = Backoff(attempts=5, base=0.05, cap=0.2)
CONFIG = [{"type": "configuration", "id": "app.conf", "actions": ["write"]}]


def workspace(live: Live) -> Path:
    root = live.server.settings.data_dir / "workspaces" / "demo"
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.conf").write_text("debug = false\n")
    return root


def write(live: Live, content: str = "debug = true\n", path: str = "app.conf") -> dict[str, Any]:
    return {
        "root": str(workspace(live)),
        "changes": [{"path": path, "action": "write", "content": content}],
    }


@pytest.fixture
async def clients(start_live: StartLive) -> AsyncIterator[Callable[..., AdeClient]]:
    """``clients(live, who, url=None)``: an SDK client as that user, closed afterwards."""
    made: list[AdeClient] = []

    def make(live: Live, who: str, url: str | None = None, **options: Any) -> AdeClient:
        client = AdeClient(url or live.server.url, live.tokens[who], backoff=FAST, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def proxies() -> AsyncIterator[Callable[[Live], Any]]:
    started: list[TcpProxy] = []

    async def start(live: Live) -> TcpProxy:
        proxy = await TcpProxy.start(live.server.url)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


async def task_count(live: Live) -> int:
    async with httpx.AsyncClient(base_url=live.server.url) as http:
        listed = await http.get("/api/v1/tasks", headers=live.as_("alice"))
    total: int = listed.json()["total"]
    return total


async def test_task_types_publish_payload_schemas(start_live: StartLive, clients: Any) -> None:
    live = await start_live()
    listed = await clients(live, "alice").task_types()
    kinds = {t.type: t for t in listed}
    assert {"agent.call", "files.write", "git.patch", "http.request", "shell"} <= set(kinds)
    assert (kinds["files.write"].applied_by, kinds["agent.call"].applied_by) == ("worker", "agent")
    schema = kinds["files.write"].payload_schema
    assert schema is not None
    Draft202012Validator(schema).validate(write(live))  # a client checks before proposing
    assert not Draft202012Validator(schema).is_valid(write(live, path="../escape"))

    def blocking() -> list[str]:
        with SyncAdeClient(live.server.url, live.tokens["vic"]) as vic:
            return [t.type for t in vic.task_types()]

    assert await asyncio.to_thread(blocking) == [t.type for t in listed]


async def test_propose_then_get(start_live: StartLive, clients: Any) -> None:
    live = await start_live()
    alice = clients(live, "alice")
    proposal = await alice.propose("files.write", write(live), CONFIG, title="turn on debug")
    assert isinstance(proposal, SubmitOut)
    assert proposal.task.state == "SUBMITTED"
    assert proposal.task.title == "turn on debug"
    assert len(proposal.preview_digest) == 64
    task = await alice.get(proposal.task.id)
    assert task.id == proposal.task.id
    assert task.preview_digest == proposal.preview_digest
    assert "+debug = true" in (await alice.preview(task.id)).content
    assert task.submitter_id == uuid.UUID(live.ids["alice"])


async def test_a_retry_after_a_lost_answer_makes_one_task(
    start_live: StartLive, clients: Any, proxies: Any
) -> None:
    live = await start_live()
    proxy = await proxies(live)
    proxy.drop_answer_to = "POST /api/v1/tasks "  # the create, not the submit
    alice = clients(live, "alice", proxy.url)
    proposal = await alice.propose("files.write", write(live), CONFIG)
    creates = [line for line in proxy.lines if line.startswith("POST /api/v1/tasks ")]
    assert len(creates) == 2  # the first answer was lost after the server acted
    assert proposal.task.state == "SUBMITTED"
    assert await task_count(live) == 1

    # The same logical call made again with its key (a restarted process) is the same task.
    again = await clients(live, "alice").propose(
        "files.write", write(live), CONFIG, idempotency_key="deploy-42"
    )
    same = await clients(live, "alice").propose(
        "files.write", write(live), CONFIG, idempotency_key="deploy-42"
    )
    assert same.task.id == again.task.id
    assert await task_count(live) == 2


async def test_wait_returns_when_a_reviewer_approves(
    start_live: StartLive, clients: Any, proxies: Any
) -> None:
    live = await start_live()
    proxy = await proxies(live)  # only to see the socket open before the decision
    alice = clients(live, "alice", proxy.url)
    bob = clients(live, "bob")
    proposal = await alice.propose("files.write", write(live), CONFIG)
    # No polling: only the socket can bring the news.
    waiting = asyncio.create_task(alice.wait(proposal.task.id, WAIT, poll_interval=3600))
    await until(proxy.frames_arrived, "the events socket")
    assert not waiting.done()

    mine = await bob.awaiting_me()
    assert [t.id for t in mine.items] == [proposal.task.id]
    decision = await bob.approve(proposal.task.id, proposal.preview_digest, "fine")
    assert decision.task.state == "APPROVED"
    task = await waiting
    assert task.state == "APPROVED"
    assert len(proxy.websocket_lines()) == 1
    assert (await bob.awaiting_me()).items == []


async def test_waits_follow_the_task_on_the_events_url(
    start_live: StartLive, clients: Any, proxies: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``events_url`` (or ``ADE_EVENTS_URL``), ``wait`` opens its socket and reads
    there; proposing and deciding still go to ``url``."""
    live = await start_live()
    waits = await proxies(live)  # stands for server processes kept for waiting
    monkeypatch.setenv("ADE_EVENTS_URL", waits.url)
    alice = clients(live, "alice", live.server.url)
    assert alice.events.url == waits.url
    bob = clients(live, "bob")
    proposal = await alice.propose("files.write", write(live), CONFIG)
    waiting = asyncio.create_task(alice.wait(proposal.task.id, WAIT, poll_interval=3600))
    await until(waits.frames_arrived, "the events socket")
    await bob.approve(proposal.task.id, proposal.preview_digest)
    assert (await waiting).state == "APPROVED"
    assert len(waits.websocket_lines()) == 1
    assert any(line.startswith(f"GET /api/v1/tasks/{proposal.task.id} ") for line in waits.lines)
    assert not any(line.startswith("POST") for line in waits.lines)
    assert clients(live, "bob", events_url="http://elsewhere:1").events.url == "http://elsewhere:1"


async def test_wait_reads_the_task_only_when_an_event_may_end_it(
    start_live: StartLive, clients: Any
) -> None:
    """A burst of decisions costs each waiting agent one read, not one per event: the
    vote and the approval do not end a wait for a final state, so only the read after
    the socket opened and the one after the cancellation's event are made."""
    live = await start_live()
    alice = clients(live, "alice")
    bob = clients(live, "bob")
    proposal = await alice.propose("files.write", write(live), CONFIG)
    task_id = proposal.task.id
    states: list[str] = []

    async def read() -> TaskOut:
        task = await alice.get(task_id)
        states.append(task.state)
        return task

    waiter = TaskWaiter(alice.transport, str(task_id), UNTIL["final"], get=read, poll_interval=3600)
    waiting = asyncio.create_task(waiter.run())
    await until(lambda: states == ["SUBMITTED"], "the read after the socket opened")
    watcher = f"{live.server.ws_url}/api/v1/ws?topics=task,approval&subject=task:{task_id}"
    async with connect(watcher, additional_headers=live.as_("vic")) as ws:
        await ws.recv()  # hello
        await bob.approve(task_id, proposal.preview_digest)
        while '"approval:approved"' not in await asyncio.wait_for(ws.recv(), WAIT):
            pass
        await alice.cancel(task_id, "not needed after all")
        while '"task:cancelled"' not in await asyncio.wait_for(ws.recv(), WAIT):
            pass
    task = await asyncio.wait_for(waiting, WAIT)
    assert task.state == "CANCELLED"
    assert states == ["SUBMITTED", "CANCELLED"]


async def test_wait_resumes_after_the_socket_drops(
    start_live: StartLive, clients: Any, proxies: Any
) -> None:
    live = await start_live()
    proxy = await proxies(live)
    alice = clients(live, "alice", proxy.url)
    bob = clients(live, "bob")
    proposal = await alice.propose("files.write", write(live), CONFIG)
    task_id = proposal.task.id
    waiting = asyncio.create_task(alice.wait(task_id, WAIT, poll_interval=3600))
    await until(proxy.frames_arrived, "the events socket")

    # The network drops; the waiter's next socket is held until the decision is in the
    # events stream, so only a resume from `since` can bring it.
    proxy.websockets_open.clear()
    proxy.cut_websockets()
    await until(lambda: proxy.held == 1, "the waiter to reconnect")
    watcher = f"{live.server.ws_url}/api/v1/ws?topics=approval&subject=task:{task_id}"
    async with connect(watcher, additional_headers=live.as_("vic")) as ws:
        await ws.recv()  # hello: subscribed before the decision
        await bob.approve(task_id, proposal.preview_digest)
        while '"approval:approved"' not in await asyncio.wait_for(ws.recv(), WAIT):
            pass
    proxy.websockets_open.set()

    task = await waiting
    assert task.state == "APPROVED"
    first, second = proxy.websocket_lines()
    assert "since=" not in first
    assert "since=" in second


async def test_wait_polls_when_the_socket_cannot_open(
    start_live: StartLive, clients: Any, proxies: Any
) -> None:
    live = await start_live()
    proxy = await proxies(live)
    proxy.refuse_websockets = True  # like a reverse proxy without WebSocket support
    alice = clients(live, "alice", proxy.url)
    bob = clients(live, "bob")
    proposal = await alice.propose("files.write", write(live), CONFIG)
    waiting = asyncio.create_task(alice.wait(proposal.task.id, WAIT, poll_interval=0.1))
    await until(lambda: len(proxy.websocket_lines()) == 1, "the refused socket")
    await bob.reject(proposal.task.id, proposal.preview_digest, "not on Fridays")
    task = await waiting
    assert task.state == "REJECTED"
    assert len(proxy.websocket_lines()) == 1  # refused once, then polled


async def test_changes_requested_come_back_with_the_comment(
    start_live: StartLive, clients: Any
) -> None:
    live = await start_live()
    alice = clients(live, "alice")
    bob = clients(live, "bob")
    proposal = await alice.propose("files.write", write(live), CONFIG)
    waiting = asyncio.create_task(alice.wait(proposal.task.id, WAIT))
    await bob.request_changes(proposal.task.id, proposal.preview_digest, "keep debug off")
    task = await waiting
    assert task.state == "DRAFT"
    reviews = (await alice.approval(task.id)).reviews
    assert [(r.decision, r.comment) for r in reviews] == [("request_changes", "keep debug off")]


async def test_wait_times_out_with_the_last_state(start_live: StartLive, clients: Any) -> None:
    live = await start_live()
    alice = clients(live, "alice")
    proposal = await alice.propose("files.write", write(live), CONFIG)
    with pytest.raises(WaitTimeout) as info:
        await alice.wait(proposal.task.id, 3)
    assert info.value.task is not None
    assert info.value.task.state == "SUBMITTED"


async def test_cancel(start_live: StartLive, clients: Any) -> None:
    live = await start_live()
    alice = clients(live, "alice")
    proposal = await alice.propose("files.write", write(live), CONFIG)
    cancelled = await alice.cancel(proposal.task.id, "wrong file")
    assert cancelled.state == "CANCELLED"
    assert (await alice.wait(proposal.task.id, WAIT, until="final")).state == "CANCELLED"
    with pytest.raises(InvalidTransition) as info:
        await alice.cancel(proposal.task.id, "again")
    assert info.value.state == "CANCELLED"


async def test_problems_become_exceptions_by_type(start_live: StartLive, clients: Any) -> None:
    live = await start_live()
    async with live.runtime.sessions.begin() as session:
        owners = await auth.create_group(session, "db-owners")
        await auth.add_member(session, owners.id, uuid.UUID(live.ids["carol"]))
    policy = {"rules": [{"name": "db", "resource_types": ["database"], "groups": [
        {"group": "db-owners", "count": 1}]}]}  # fmt: skip
    async with httpx.AsyncClient(base_url=live.server.url) as http:
        stored = await http.put("/api/v1/policies", json=policy, headers=live.as_("admin"))
        assert stored.status_code == 200, stored.text
    alice, bob = clients(live, "alice"), clients(live, "bob")

    proposal = await alice.propose("files.write", write(live), CONFIG)
    with pytest.raises(StalePreview) as stale:
        await bob.approve(proposal.task.id, "0" * 64)
    assert stale.value.current_digest == proposal.preview_digest
    assert stale.value.status == 409

    database = [{"type": "database", "id": "orders", "actions": ["write"]}]
    # One new line: risk below 50, a quorum of one, and that slot is db-owners'.
    guarded = await alice.propose("files.write", write(live, path="pool.conf"), database)
    with pytest.raises(NotEligible) as not_eligible:
        await bob.approve(guarded.task.id, guarded.preview_digest)
    assert not_eligible.value.actor == live.ids["bob"]

    with pytest.raises(ValidationFailed) as bad_payload:  # refused by the executor at create
        await alice.propose("files.write", write(live, path="../escape"), CONFIG)
    (error,) = bad_payload.value.errors
    assert error["path"] == "changes[0].path"
    assert "task_id" not in bad_payload.value.fields  # nothing was created

    with pytest.raises(ValidationFailed) as bad_resource:  # refused before it is sent
        await alice.propose("files.write", write(live), [{"type": "planet", "id": "x"}])
    assert bad_resource.value.errors[0]["loc"] == ["body", "resources", 0, "type"]

    with pytest.raises(NotFound):
        await alice.get(uuid.uuid4())
    with pytest.raises(ValidationFailed):
        await alice.get("../approvals")
    with pytest.raises(Unauthenticated):
        await AdeClient(live.server.url, "ade_nope_nope", backoff=FAST).get(uuid.uuid4())
    with pytest.raises(AttributeError, match="no field 'nope'"):
        _ = stale.value.nope


async def agent_token(live: Live) -> str:
    """A new agent of alice's, and a token of its own."""
    # A fresh live server's first requests can take seconds on a loaded machine (parallel
    # test workers): httpx's default 5 s read timeout failed this setup step in CI.
    headers = live.as_("alice")
    async with httpx.AsyncClient(base_url=live.server.url, headers=headers, timeout=30) as http:
        agent = await http.post("/api/v1/agents", json={"name": "deployer", "model": "gpt-4o"})
        assert agent.status_code == 201, agent.text
        token = await http.post(f"/api/v1/agents/{agent.json()['id']}/tokens", json={"name": "t"})
        assert token.status_code == 201, token.text
    secret: str = token.json()["token"]
    return secret


async def test_lease_holds_renews_exposes_the_fence_and_releases(start_live: StartLive) -> None:
    live = await start_live()
    async with AdeClient(live.server.url, await agent_token(live), backoff=FAST) as agent:
        held = agent.lease(resources={"db": "exclusive"}, task="migrate", lease_seconds=3)
        async with held as lease:
            (holder,) = (await live.runtime.locks.inspect_resource("db")).holders
            assert lease.fence == holder.fence
            assert holder.task == "migrate"
            await until(lambda: lease.heartbeats >= 3, "three heartbeats")  # > one lease long
            lease.check()
            assert (await live.runtime.locks.inspect_resource("db")).holders
        assert (await live.runtime.locks.inspect_resource("db")).holders == []
        with pytest.raises(NotFound):  # closed, not lapsed later
            await lease.heartbeat()


async def test_a_lost_lease_raises_on_exit(start_live: StartLive) -> None:
    live = await start_live(lock_lease_seconds=3)
    async with AdeClient(live.server.url, await agent_token(live), backoff=FAST) as agent:

        async def hold_until_lost() -> None:
            async with agent.lease(resources={"queue": "exclusive"}, lease_seconds=1.5) as lease:
                await live.runtime.locks.force_release("queue", "stuck migration")
                await until(lambda: lease.lost is not None, "the loss to be noticed")
                with pytest.raises(LockLost):
                    lease.check()

        with pytest.raises(LockLost, match="stuck"):  # and again on the way out
            await hold_until_lost()


def sync_scenario(url: str, tokens: dict[str, str], payload: dict[str, Any]) -> list[Any]:
    """Plain synchronous code, as a script would use the SDK."""
    seen: list[Any] = []
    with SyncAdeClient(url, tokens["alice"]) as alice, SyncAdeClient(url, tokens["bob"]) as bob:
        proposal = alice.propose("files.write", payload, CONFIG, title="sync")
        seen.append(alice.get(proposal.task.id).state)
        try:
            alice.wait(proposal.task.id, 3)
        except WaitTimeout as exc:
            seen.append(f"timeout {exc.task.state if exc.task else None}")
        bob.approve(proposal.task.id, proposal.preview_digest)
        seen.append(alice.wait(proposal.task.id, WAIT).state)
    with SyncAdeClient(url, tokens["agent"]) as agent:
        with agent.lease(resources={"db": "exclusive"}, lease_seconds=3) as lease:
            for _ in range(int(WAIT / 0.05)):  # heartbeats go on while this thread works
                if lease.heartbeats >= 1:
                    break
                time.sleep(0.05)
            seen.append((lease.heartbeats >= 1, lease.fence is not None))
        seen.append(lease.lost)
    agent.close()  # again: nothing to do
    return seen


async def test_the_sync_client_works_from_plain_code(start_live: StartLive) -> None:
    live = await start_live()
    tokens = {**live.tokens, "agent": await agent_token(live)}
    seen = await asyncio.to_thread(sync_scenario, live.server.url, tokens, write(live))
    assert seen == ["SUBMITTED", "timeout SUBMITTED", "APPROVED", (True, True), None]
    assert (await live.runtime.locks.inspect_resource("db")).holders == []
