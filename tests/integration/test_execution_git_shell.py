"""Real git and a real HTTP server through the worker: a patch commits with the task id and
fence, two patches on one branch are serialised, a moved branch sends the task back to
review with its votes stale, and an http.request reaches a local server with the task id
and fence. (Shell tasks through the worker: test_shell_executor.py.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import Backend, forget_domain
from execution_util import (
    AUTO,
    events_of,
    make_user,
    open_runtime,
    reload,
    set_policy,
    settings_for,
    submit,
)
from sqlalchemy import select

from community_ade.approvals.reviews import DecisionSurface, ReviewAction, ReviewService
from community_ade.approvals.risk import ResourceRef
from community_ade.approvals.states import TaskState
from community_ade.execution.executors import ApplyContext
from community_ade.execution.executors.git_patch import GitPatchExecutor
from community_ade.execution.service import ExecutionService
from community_ade.execution.worker import Worker
from community_ade.runtime import Runtime
from community_ade.storage.models import Review

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)
REPO_LOCK = [ResourceRef(type="storage", id="repo", actions=("write",))]
PATCHER = GitPatchExecutor()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.received.append(
            {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def runtime(
    database_url: str, backend: Backend, tmp_path: Path, domain: str, http_server: str
) -> AsyncIterator[Runtime]:
    settings = settings_for(
        database_url, backend.url, tmp_path, domain, http_allowlist=[f"{http_server}/hooks"]
    )
    try:
        async with open_runtime(settings) as rt:
            yield rt
    finally:
        await forget_domain(backend.url, domain)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "workspaces" / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "a.txt").write_text("one\n")
    (repo / "b.txt").write_text("uno\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def patch(path: str, old: str, new: str) -> str:
    return (
        f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-{old}\n+{new}\n"
    )


def patch_payload(repo: Path, diff: str) -> dict[str, str]:
    return {"repo": str(repo), "branch": "main", "patch": diff, "message": "change"}


async def burst(runtime: Runtime) -> Worker:
    worker = Worker(runtime, concurrency=2, burst=True)
    await asyncio.wait_for(worker.run(), 90)
    return worker


async def test_a_patch_is_committed_with_task_id_and_fence(runtime: Runtime, repo: Path) -> None:
    await set_policy(runtime, AUTO)
    alice = await make_user(runtime)
    task = await submit(
        runtime, alice, "git.patch", patch_payload(repo, patch("a.txt", "one", "two")), REPO_LOCK
    )
    await runtime.queue.drain_background()
    await burst(runtime)
    done = await reload(runtime, task.id)
    assert done.state == TaskState.COMPLETED, done.last_error
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert str(task.id) in message
    assert str(done.fence) in message
    assert git(repo, "show", "main:a.txt") == "two"
    assert int(git(repo, "rev-list", "--count", "main")) == 2


async def test_two_patches_on_one_branch_are_serialised(runtime: Runtime, repo: Path) -> None:
    await set_policy(runtime, AUTO)
    alice = await make_user(runtime)
    first = await submit(
        runtime, alice, "git.patch", patch_payload(repo, patch("a.txt", "one", "two")), REPO_LOCK
    )
    second = await submit(
        runtime, alice, "git.patch", patch_payload(repo, patch("b.txt", "uno", "dos")), REPO_LOCK
    )
    await runtime.queue.drain_background()
    await burst(runtime)
    for task in (first, second):
        assert (await reload(runtime, task.id)).state == TaskState.COMPLETED
    # One after the other: the second saw the branch move, was re-previewed (and, by this
    # policy, re-approved) and then applied on top of the first.
    assert int(git(repo, "rev-list", "--count", "main")) == 3
    assert git(repo, "show", "main:a.txt") == "two"
    assert git(repo, "show", "main:b.txt") == "dos"
    moved = ["task:preconditions_moved" in await events_of(runtime, t.id) for t in (first, second)]
    assert sorted(moved) == [False, True]


async def test_a_moved_branch_sends_the_task_back_with_stale_votes(
    runtime: Runtime, repo: Path
) -> None:
    alice = await make_user(runtime)
    bob = await make_user(runtime, "reviewer")
    task = await submit(
        runtime, alice, "git.patch", patch_payload(repo, patch("a.txt", "one", "two")), REPO_LOCK
    )
    assert task.state == TaskState.SUBMITTED
    old_digest, old_fingerprint = task.preview_digest, task.precondition_fingerprint
    async with runtime.sessions.begin() as session:
        outcome = await ReviewService(session).decide(
            bob, task.id, ReviewAction.APPROVE, str(old_digest), surface=DecisionSurface.API
        )
        assert outcome.task.state == TaskState.APPROVED
    (repo / "b.txt").write_text("moved\n")
    git(repo, "commit", "-q", "-am", "someone else")
    await runtime.queue.drain_background()
    worker = await burst(runtime)
    back = await reload(runtime, task.id)
    assert back.state == TaskState.SUBMITTED
    assert worker.stats.moved == 1
    assert back.precondition_fingerprint != old_fingerprint
    assert git(repo, "show", "main:a.txt") == "one"  # nothing applied
    async with runtime.sessions() as session:
        votes = list(await session.scalars(select(Review).where(Review.task_id == task.id)))
    assert [v.stale for v in votes] == [True]
    events = await events_of(runtime, task.id)
    assert events[-2:] == ["task:preconditions_moved", "approval:requested"]


async def test_an_http_request_reaches_a_local_server_with_task_and_fence(
    runtime: Runtime, http_server: str
) -> None:
    await set_policy(runtime, AUTO)
    alice = await make_user(runtime)
    payload = {"method": "POST", "url": f"{http_server}/hooks/deploy", "body": {"svc": "api"}}
    task = await submit(runtime, alice, "http.request", payload)
    await runtime.queue.drain_background()
    await burst(runtime)
    done = await reload(runtime, task.id)
    assert done.state == TaskState.COMPLETED, done.last_error
    (request,) = Receiver.received
    assert request["path"] == "/hooks/deploy"
    assert request["body"] == {"svc": "api"}
    headers = {k.lower(): v for k, v in request["headers"].items()}  # type: ignore[attr-defined]
    assert headers["x-ade-task"] == str(task.id)
    assert headers["x-ade-fence"] == str(done.fence)


async def test_an_interrupted_commit_that_others_built_upon_is_kept(
    runtime: Runtime, repo: Path
) -> None:
    """A worker died right after committing; its locks lapsed with its lease and someone
    committed on top before its message was reclaimed. Rolling back would undo their
    work: the adopter finds the task's commit on the branch and records it COMPLETED,
    applied once."""
    await set_policy(runtime, AUTO)
    alice = await make_user(runtime)
    task = await submit(
        runtime, alice, "git.patch", patch_payload(repo, patch("a.txt", "one", "two")), REPO_LOCK
    )
    await runtime.queue.drain_background()
    # The dead worker's attempt: started under its grant's fence, applied, then nothing.
    async with runtime.locks.hold("dead", "dead", {"elsewhere": "exclusive"}) as grant:
        fence = grant.fence
    dead = ExecutionService(runtime.sessions, worker_id="dead", plan_context=runtime.plan_context())
    loaded = await dead.load_for_apply(task.id)
    assert loaded is not None
    approved, stash = loaded
    assert stash is not None
    executor = PATCHER
    context = ApplyContext(runtime.plan_context(), str(task.id), fence)
    snapshot = await executor.snapshot(approved.payload, stash, context)
    assert await dead.start(approved, fence, dict(snapshot.data)) is not None
    await executor.apply(approved.payload, stash, snapshot, context)
    (repo / "b.txt").write_text("dos\n")
    git(repo, "commit", "-q", "-am", "someone else's work on top")

    await burst(runtime)
    done = await reload(runtime, task.id)
    assert done.state == TaskState.COMPLETED, done.last_error
    assert git(repo, "log", "--format=%B", "main").count(f"ADE-Task: {task.id}") == 1
    assert git(repo, "show", "main:a.txt") == "two"
    assert git(repo, "show", "main:b.txt") == "dos"
    events = await events_of(runtime, task.id)
    assert events[-2:] == ["task:apply_reclaimed", "task:completed"]


async def test_a_task_approved_again_after_its_branch_moved_does_not_wait_for_the_reconciler(
    runtime: Runtime, repo: Path
) -> None:
    """The second patch of a branch is re-planned and approved again by the policy while
    its message is still in flight: it is queued again when that message is settled, not
    left for the reconciler (here: not before an hour)."""
    await set_policy(runtime, AUTO)
    alice = await make_user(runtime)
    tasks = [
        await submit(runtime, alice, "git.patch", patch_payload(repo, diff), REPO_LOCK)
        for diff in (patch("a.txt", "one", "two"), patch("b.txt", "uno", "dos"))
    ]
    await runtime.queue.drain_background()
    worker = Worker(runtime, concurrency=2)
    worker.settings = runtime.settings.model_copy(update={"worker_reconcile_seconds": 3600})
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(300):
            states = [(await reload(runtime, t.id)).state for t in tasks]
            if states == [TaskState.COMPLETED] * 2:
                break
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    assert states == [TaskState.COMPLETED] * 2
    assert worker.stats.moved == 1
