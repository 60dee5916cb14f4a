"""The executors' apply side against real targets: a real filesystem, real git
repositories and a real HTTP server on localhost (shell: test_shell_executor.py).

Every task runs the way the worker runs it: plan, snapshot (stored as JSON and read
back), apply with the approved plan, rollback with the stored snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import select
import shutil
import socket
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from gitutil import GIT, git

from community_ade.audit.chain import SYSTEM
from community_ade.errors import FenceRejected, InvalidInput
from community_ade.execution.executors import (
    ApplyContext,
    ApplyingExecutor,
    ApplyResult,
    Plan,
    PlanContext,
    Snapshot,
    fencing,
)
from community_ade.execution.executors.base import ApplyFailed
from community_ade.execution.executors.files_write import FilesWriteExecutor, _temp_of
from community_ade.execution.executors.git_patch import GitPatchExecutor, parse_worktrees
from community_ade.execution.executors.http_request import HttpRequestExecutor
from community_ade.secrets.keys import SecretCipher
from community_ade.secrets.references import SecretSource
from community_ade.secrets.store import SecretVault, put_secret
from community_ade.settings import Settings
from community_ade.storage import db

pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")

FILES = FilesWriteExecutor()
PATCHER = GitPatchExecutor()
HTTP = HttpRequestExecutor()


@dataclass(frozen=True)
class Workspace:
    allowed: Path
    outside: Path
    fences: Path
    http_allowlist: tuple[str, ...] = ()
    secrets: SecretSource | None = None

    @property
    def plan_context(self) -> PlanContext:
        return PlanContext(
            allowed_roots=(self.allowed,),
            http_allowlist=self.http_allowlist,
            fence_dir=self.fences,
        )

    def at(self, fence: int, task_id: str = "task-1") -> ApplyContext:
        return ApplyContext(self.plan_context, task_id=task_id, fence=fence, secrets=self.secrets)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    allowed, outside = tmp_path / "workspaces", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    return Workspace(allowed, outside, tmp_path / "data" / "fences")


def stored(snapshot: Snapshot) -> Snapshot:
    """The snapshot as the worker reads it back from the database."""
    return Snapshot(snapshot.task_type, json.loads(json.dumps(snapshot.data)))


@dataclass
class Run:
    plan: Plan
    snapshot: Snapshot
    result: ApplyResult | None = None
    error: BaseException | None = None


async def run(executor: ApplyingExecutor, payload: dict[str, Any], context: ApplyContext) -> Run:
    """plan, snapshot, apply, the way the worker drives an executor."""
    plan = await executor.plan(payload, context.plan_context)
    snapshot = stored(await executor.snapshot(payload, plan, context))
    return Run(plan, snapshot, await executor.apply(payload, plan, snapshot, context))


def tree(top: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under top: kind, permission bits and content hash (not times)."""
    found: dict[str, tuple[Any, ...]] = {}
    for entry in sorted(top.rglob("*")):
        info = entry.lstat()
        rel = str(entry.relative_to(top))
        if stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(entry.read_bytes()).hexdigest()
            found[rel] = ("file", stat.S_IMODE(info.st_mode), digest)
        else:
            found[rel] = ("dir", stat.S_IMODE(info.st_mode))
    return found


def without_state(snap: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    return {k: v for k, v in snap.items() if not k.startswith((".ade", ".git/"))}


def records_in(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name != fencing.LOCK_NAME]


# --- fencing --------------------------------------------------------------------------


def test_a_record_refuses_an_older_fence_and_admits_an_equal_or_newer_one(tmp_path: Path) -> None:
    record = fencing.record_path(tmp_path / "fences", "file:/x")
    with fencing.fenced([record], 10, target="x"):
        pass
    assert fencing.newest_fence(record) == 10
    with pytest.raises(FenceRejected) as caught, fencing.fenced([record], 9, target="x"):
        pytest.fail("an older fence must not reach the write")
    assert (caught.value.fence, caught.value.newest, caught.value.code) == (9, 10, "fence_rejected")
    with fencing.fenced([record], 10, target="x"):  # the same grant writing again
        pass
    with fencing.fenced([record], 11, target="x"):
        pass
    assert fencing.newest_fence(record) == 11


def test_a_corrupt_record_refuses_every_write(tmp_path: Path) -> None:
    record = fencing.record_path(tmp_path, "t")
    record.write_text("garbage\n")
    with (
        pytest.raises(FenceRejected, match="corrupt"),
        fencing.fenced([record], 10**12, target="t"),
    ):
        pass


def test_one_lock_guards_many_records_and_an_empty_record_is_no_fence(tmp_path: Path) -> None:
    records = [fencing.record_path(tmp_path, f"file:{i}") for i in range(3000)]
    records[0].write_bytes(b"")  # a writer died between creating and recording
    with fencing.fenced(records, 7, target="many"):  # far more than a default fd limit
        pass
    assert {fencing.newest_fence(r) for r in records} == {7}
    assert sorted(p.name for p in tmp_path.iterdir())[0] == fencing.LOCK_NAME


def test_the_record_lock_serialises_writers_across_threads(tmp_path: Path) -> None:
    """Many writers with interleaved fences: whatever the order, the record ends at the
    largest fence and no write under an older fence happens after a newer one."""
    record = fencing.record_path(tmp_path, "t")
    written: list[int] = []

    def writer(fence: int) -> None:
        try:
            with fencing.fenced([record], fence, target="t"):
                written.append(fence)
        except FenceRejected:
            pass

    threads = [threading.Thread(target=writer, args=(f,)) for f in range(1, 41)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert written == sorted(written)
    assert fencing.newest_fence(record) == 40


async def test_finish_completes_the_work_before_the_cancellation_propagates() -> None:
    done = asyncio.Event()

    async def work() -> str:
        await asyncio.sleep(0.2)
        done.set()
        return "finished"

    task = asyncio.create_task(fencing.finish(work()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
    assert await fencing.finish(work()) == "finished"


def test_plan_context_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        workspace_roots=[tmp_path / "ws"],
        http_allowlist=["https://hooks.example.com/ade/"],
    )
    context = PlanContext.from_settings(settings)
    assert context.allowed_roots == (tmp_path / "ws",)
    assert context.http_allowlist == ("https://hooks.example.com/ade/",)
    assert context.fence_dir == tmp_path / "fences"
    with pytest.raises(ValueError, match="ADE_HTTP_ALLOWLIST"):
        PlanContext.from_settings(Settings(data_dir=tmp_path, http_allowlist=["ftp://x/"]))


# --- files.write ------------------------------------------------------------------------


@pytest.fixture
def project(ws: Workspace) -> Path:
    root = ws.allowed / "project"
    root.mkdir()
    (root / "keep.txt").write_text("old\n")
    (root / "keep.txt").chmod(0o600)
    (root / "gone.txt").write_text("bye\n")
    (root / "script.sh").write_text("#!/bin/sh\necho one\n")
    (root / "script.sh").chmod(0o755)
    return root


def files_payload(root: Path, *changes: dict[str, Any]) -> dict[str, Any]:
    return {"root": str(root), "changes": list(changes)}


def write(path: str, content: str) -> dict[str, Any]:
    return {"path": path, "action": "write", "content": content}


def delete(path: str) -> dict[str, Any]:
    return {"path": path, "action": "delete"}


def three_changes(project: Path) -> dict[str, Any]:
    return files_payload(
        project,
        write("new/deep/file.txt", "hello\nworld\n"),
        write("keep.txt", "new\n"),
        write("script.sh", "#!/bin/sh\necho two\n"),
        delete("gone.txt"),
    )


async def test_files_write_applies_exactly_the_preview(ws: Workspace, project: Path) -> None:
    expected = ws.outside / "expected"
    shutil.copytree(project, expected)
    done = await run(FILES, three_changes(project), ws.at(fence=10))
    # The approved diff, applied by git to a copy of the old tree, gives the same tree.
    git(expected, "apply", "-", stdin=done.plan.preview)
    got, want = without_state(tree(project)), tree(expected)
    assert {k: v[2:] for k, v in got.items()} == {k: v[2:] for k, v in want.items()}
    # Replaced files keep their mode; a created file gets the umask's default.
    assert got["keep.txt"][1] == 0o600
    assert got["script.sh"][1] == 0o755
    assert got["new/deep/file.txt"][1] == 0o666 & ~_umask()
    assert done.result is not None
    assert json.loads(done.result.details["created"]) == ["new/deep/file.txt"]
    assert json.loads(done.result.details["replaced"]) == ["keep.txt", "script.sh"]
    assert json.loads(done.result.details["deleted"]) == ["gone.txt"]
    assert not [name for name in tree(project) if name.endswith(".tmp")]


def _umask() -> int:
    line = next(
        x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("Umask")
    )
    return int(line.split()[1], 8)


async def test_files_write_rollback_restores_byte_for_byte(ws: Workspace, project: Path) -> None:
    (project / "crlf.txt").write_bytes(b"a\r\nb")
    before = tree(project)
    payload = three_changes(project)
    payload["changes"].append(write("crlf.txt", "a\nb\n"))
    done = await run(FILES, payload, ws.at(fence=10))
    assert without_state(tree(project)) != before
    # A killed apply may leave its temporary file; rollback removes it too.
    _temp_of(project / "keep.txt", "task-1").write_text("half")
    assert await FILES.rollback(payload, done.snapshot, ws.at(fence=10)) == "rolled_back"
    assert without_state(tree(project)) == before  # created directories are gone too
    # Idempotent: a second rollback (a worker that died after the first) changes nothing.
    second = await FILES.rollback(payload, done.snapshot, ws.at(fence=11))
    assert second == "nothing_to_roll_back"
    assert without_state(tree(project)) == before


async def test_files_write_keeps_a_directory_that_gained_other_files(
    ws: Workspace, project: Path
) -> None:
    payload = files_payload(project, write("made/it.txt", "x\n"))
    done = await run(FILES, payload, ws.at(fence=10))
    (project / "made" / "other.txt").write_text("not ours\n")
    assert await FILES.rollback(payload, done.snapshot, ws.at(fence=10)) == "rolled_back"
    assert sorted(p.name for p in (project / "made").iterdir()) == ["other.txt"]


async def test_files_write_refuses_an_older_fence_and_writes_nothing(
    ws: Workspace, project: Path
) -> None:
    await run(FILES, files_payload(project, write("keep.txt", "newer\n")), ws.at(fence=20))
    before = tree(project)
    payload = files_payload(project, write("other.txt", "x\n"), write("keep.txt", "stale\n"))
    plan = await FILES.plan(payload, ws.plan_context)
    snapshot = await FILES.snapshot(payload, plan, ws.at(fence=19))
    with pytest.raises(FenceRejected) as caught:
        await FILES.apply(payload, plan, snapshot, ws.at(fence=19))
    assert (caught.value.fence, caught.value.newest) == (19, 20)
    assert tree(project) == before  # not even the file the newer writer never touched
    with pytest.raises(FenceRejected):  # a stale holder cannot "roll back" either
        await FILES.rollback(payload, snapshot, ws.at(fence=19))
    assert tree(project) == before


async def test_files_write_refuses_a_file_changed_after_the_snapshot(
    ws: Workspace, project: Path
) -> None:
    payload = files_payload(project, write("keep.txt", "new\n"), write("fresh.txt", "x\n"))
    plan = await FILES.plan(payload, ws.plan_context)
    snapshot = stored(await FILES.snapshot(payload, plan, ws.at(fence=10)))
    (project / "keep.txt").write_text("someone else\n")
    with pytest.raises(ApplyFailed, match="changed") as caught:
        await FILES.apply(payload, plan, snapshot, ws.at(fence=10))
    assert caught.value.transient
    assert (project / "keep.txt").read_text() == "someone else\n"
    assert not (project / "fresh.txt").exists()
    # The worker rolls back: the other writer's change is not undone.
    outcome = await FILES.rollback(payload, snapshot, ws.at(fence=10))
    assert outcome == "nothing_to_roll_back"
    assert (project / "keep.txt").read_text() == "someone else\n"


async def test_files_write_rollback_undoes_only_its_own_writes(
    ws: Workspace, project: Path
) -> None:
    payload = files_payload(project, write("keep.txt", "ours\n"), write("gone.txt", "ours\n"))
    done = await run(FILES, payload, ws.at(fence=10))
    (project / "gone.txt").write_text("a later human edit\n")
    assert await FILES.rollback(payload, done.snapshot, ws.at(fence=10)) == "rollback_failed"
    assert (project / "keep.txt").read_text() == "old\n"
    assert (project / "gone.txt").read_text() == "a later human edit\n"


async def test_files_write_snapshot_refuses_a_world_that_moved_since_the_plan(
    ws: Workspace, project: Path
) -> None:
    payload = files_payload(project, write("keep.txt", "new\n"))
    plan = await FILES.plan(payload, ws.plan_context)
    (project / "keep.txt").write_text("moved\n")
    with pytest.raises(ApplyFailed, match="changed since the preview") as caught:
        await FILES.snapshot(payload, plan, ws.at(fence=10))
    assert caught.value.transient


async def test_files_write_applies_only_the_approved_preview(ws: Workspace, project: Path) -> None:
    approved = files_payload(project, write("keep.txt", "approved\n"))
    plan = await FILES.plan(approved, ws.plan_context)
    swapped = files_payload(project, write("keep.txt", "swapped\n"))
    snapshot = await FILES.snapshot(approved, plan, ws.at(fence=10))
    with pytest.raises(ApplyFailed, match="approved preview"):
        await FILES.apply(swapped, plan, snapshot, ws.at(fence=10))
    assert (project / "keep.txt").read_text() == "old\n"


async def test_files_write_cannot_reach_the_fence_records(ws: Workspace, project: Path) -> None:
    await run(FILES, files_payload(project, write("keep.txt", "x\n")), ws.at(fence=10))
    records = ws.allowed / ".ade" / "fences"
    assert [fencing.newest_fence(p) for p in records_in(records)] == [10]
    with pytest.raises(InvalidInput, match=r"\.ade"):
        await FILES.plan(files_payload(records, write("x", "0\n")), ws.plan_context)
    (ws.allowed / "link").symlink_to(ws.allowed / ".ade")
    with pytest.raises(InvalidInput, match=r"lies in \.ade/"):
        await FILES.plan(files_payload(ws.allowed, write("link/fences/x", "0\n")), ws.plan_context)


# --- git.patch --------------------------------------------------------------------------


@pytest.fixture
def repo(ws: Workspace) -> Path:
    """main (checked out): app.py and notes.txt; feature: one more commit."""
    path = ws.allowed / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("def f():\n    return 1\n\n\nprint(f())\n")
    (path / "notes.txt").write_text("first\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    git(path, "branch", "feature")
    return path


NOTES_PATCH = """\
diff --git a/notes.txt b/notes.txt
--- a/notes.txt
+++ b/notes.txt
@@ -1 +1,2 @@
 first
+second
diff --git a/added.txt b/added.txt
new file mode 100644
--- /dev/null
+++ b/added.txt
@@ -0,0 +1 @@
+brand new
"""


APP_PATCH = (
    "--- a/app.py\n+++ b/app.py\n@@ -1,3 +1,3 @@\n def f():\n-    return 1\n+    return 2\n \n"
)


def patch_payload(repo: Path, branch: str = "main", patch: str = NOTES_PATCH) -> dict[str, Any]:
    return {"repo": str(repo), "branch": branch, "patch": patch, "message": "Add notes\n\nBody"}


def repo_state(repo: Path) -> dict[str, Any]:
    return {
        "files": without_state(tree(repo)),
        "status": git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
        "head": git(repo, "symbolic-ref", "HEAD"),
        "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        "index": git(repo, "ls-files", "--stage"),
    }


async def test_git_patch_commits_onto_a_branch_that_is_not_checked_out(
    ws: Workspace, repo: Path
) -> None:
    before = repo_state(repo)
    old = git(repo, "rev-parse", "feature").strip()
    done = await run(PATCHER, patch_payload(repo, "feature"), ws.at(fence=4242, task_id="t-7"))
    assert done.result is not None
    new = done.result.details["commit"]
    assert git(repo, "rev-parse", "feature").strip() == new
    assert git(repo, "rev-parse", f"{new}^").strip() == old
    assert git(repo, "show", f"{new}:notes.txt") == "first\nsecond\n"
    assert git(repo, "show", f"{new}:added.txt") == "brand new\n"
    trailers = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", new)
    assert trailers.split() == ["ADE-Task:", "t-7", "ADE-Fence:", "4242"]
    assert git(repo, "log", "-1", "--format=%s", new) == "Add notes\n"
    # The checked-out main branch, its index and working tree are untouched.
    after = repo_state(repo)
    assert {k: v for k, v in after.items() if k != "refs"} == {
        k: v for k, v in before.items() if k != "refs"
    }
    # The commit's diff is the approved patch (git adds only its "index" lines).
    assert per_file(git(repo, "diff", old, new)) == per_file(done.plan.preview)


def per_file(patch: str) -> set[str]:
    blocks = patch.split("diff --git ")[1:]
    return {
        "\n".join(x for x in block.splitlines() if not x.startswith("index ")) for block in blocks
    }


async def test_git_patch_updates_the_checkout_of_a_checked_out_branch(
    ws: Workspace, repo: Path
) -> None:
    (repo / "untracked.txt").write_text("mine\n")
    (repo / "app.py").write_text("def f():\n    return 1\n\n\nprint(f())  # local\n")
    done = await run(PATCHER, patch_payload(repo), ws.at(fence=10))
    assert done.result is not None
    assert git(repo, "rev-parse", "HEAD").strip() == done.result.details["commit"]
    assert done.result.details["worktree"] == str(repo)
    assert (repo / "notes.txt").read_text() == "first\nsecond\n"
    assert (repo / "added.txt").read_text() == "brand new\n"
    # Local work elsewhere survives, and the checkout is exactly the commit plus it.
    assert (repo / "untracked.txt").read_text() == "mine\n"
    assert git(repo, "status", "--porcelain").splitlines() == [" M app.py", "?? untracked.txt"]


async def test_git_patch_rollback_restores_the_repository_exactly(
    ws: Workspace, repo: Path
) -> None:
    (repo / "untracked.txt").write_text("mine\n")
    before = repo_state(repo)
    payload = patch_payload(repo)
    done = await run(PATCHER, payload, ws.at(fence=10))
    assert repo_state(repo) != before
    assert await PATCHER.rollback(payload, done.snapshot, ws.at(fence=10)) == "rolled_back"
    assert repo_state(repo) == before
    # Twice is harmless (a worker that died after the first rollback).
    assert await PATCHER.rollback(payload, done.snapshot, ws.at(fence=11)) == "rolled_back"
    assert repo_state(repo) == before


async def test_git_patch_rollback_leaves_a_branch_someone_else_moved(
    ws: Workspace, repo: Path
) -> None:
    payload = patch_payload(repo, "feature")
    done = await run(PATCHER, payload, ws.at(fence=10))
    git(repo, "checkout", "-q", "feature")
    (repo / "notes.txt").write_text("human\n")
    git(repo, "commit", "-q", "-am", "human work on top")
    moved = git(repo, "rev-parse", "feature")
    assert await PATCHER.rollback(payload, done.snapshot, ws.at(fence=11)) == "rollback_failed"
    assert git(repo, "rev-parse", "feature") == moved


async def test_git_patch_knows_an_interrupted_commit_that_others_built_upon(
    ws: Workspace, repo: Path
) -> None:
    """Its commit on the branch with another on top: kept (a rollback would undo the
    other's work too). Alone at the tip, or not there at all: rolled back as usual."""
    payload = patch_payload(repo, "feature")
    done = await run(PATCHER, payload, ws.at(fence=10, task_id="t-1"))
    assert done.result is not None
    commit = done.result.details["commit"]
    assert await PATCHER.built_upon(payload, done.snapshot, ws.at(fence=11, task_id="t-1")) is None
    git(repo, "checkout", "-q", "feature")
    (repo / "notes.txt").write_text("human\n")
    git(repo, "commit", "-q", "-am", "human work on top")
    kept = await PATCHER.built_upon(payload, done.snapshot, ws.at(fence=11, task_id="t-1"))
    assert kept is not None
    assert kept.details["commit"] == commit
    other = await PATCHER.built_upon(payload, done.snapshot, ws.at(fence=11, task_id="t-2"))
    assert other is None  # not this task's commit


async def test_git_patch_brings_back_a_checkout_an_interrupted_rollback_reverted(
    ws: Workspace, repo: Path
) -> None:
    """The rollback reverted the checkout, then its worker died before moving the branch
    back; another patch was committed on top. The kept commit's files are put back into
    the checkout, which then matches the branch."""
    payload = patch_payload(repo)
    done = await run(PATCHER, payload, ws.at(fence=10, task_id="t-1"))
    assert done.result is not None
    git(repo, "read-tree", "-m", "-u", done.result.details["commit"], done.snapshot.data["commit"])
    assert not (repo / "added.txt").exists()
    await run(PATCHER, patch_payload(repo, patch=APP_PATCH), ws.at(fence=11, task_id="t-2"))
    kept = await PATCHER.built_upon(payload, done.snapshot, ws.at(fence=12, task_id="t-1"))
    assert kept is not None
    assert (repo / "added.txt").read_text() == "brand new\n"
    assert (repo / "notes.txt").read_text() == "first\nsecond\n"
    assert git(repo, "status", "--porcelain") == ""


async def test_git_patch_rollback_of_an_attempt_that_never_moved_a_moved_branch(
    ws: Workspace, repo: Path
) -> None:
    """The attempt died before it moved the branch; others committed meanwhile. Nothing
    of it is on the branch: nothing to roll back (and the task may be retried), not a
    failed rollback."""
    payload = patch_payload(repo, "feature")
    plan = await PATCHER.plan(payload, ws.at(fence=10).plan_context)
    snapshot = await PATCHER.snapshot(payload, plan, ws.at(fence=10))
    git(repo, "checkout", "-q", "feature")
    (repo / "notes.txt").write_text("human\n")
    git(repo, "commit", "-q", "-am", "human work")
    moved = git(repo, "rev-parse", "feature")
    assert await PATCHER.rollback(payload, snapshot, ws.at(fence=11)) == "nothing_to_roll_back"
    assert git(repo, "rev-parse", "feature") == moved


async def test_git_patch_works_on_a_bare_repository(ws: Workspace, repo: Path) -> None:
    bare = ws.allowed / "bare.git"
    git(ws.allowed, "clone", "-q", "--bare", str(repo), str(bare))
    payload = patch_payload(bare)
    done = await run(PATCHER, payload, ws.at(fence=10))
    assert done.result is not None
    assert git(bare, "show", "main:added.txt") == "brand new\n"
    assert await PATCHER.rollback(payload, done.snapshot, ws.at(fence=10)) == "rolled_back"
    assert git(bare, "rev-parse", "main") == git(repo, "rev-parse", "main")


async def test_git_patch_refuses_an_older_fence_and_moves_nothing(
    ws: Workspace, repo: Path
) -> None:
    await run(PATCHER, patch_payload(repo, "feature"), ws.at(fence=30))
    before = repo_state(repo)
    payload = patch_payload(repo, "feature", patch=APP_PATCH)
    plan = await PATCHER.plan(payload, ws.plan_context)
    # The worker re-planned on the moved branch: the stale holder is still older.
    snapshot = await PATCHER.snapshot(payload, plan, ws.at(fence=29))
    with pytest.raises(FenceRejected):
        await PATCHER.apply(payload, plan, snapshot, ws.at(fence=29))
    assert repo_state(repo) == before
    # Another branch has a record of its own: an older fence may still write there.
    await run(PATCHER, patch_payload(repo, "main"), ws.at(fence=29))
    common = Path(git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    assert sorted(fencing.newest_fence(p) for p in records_in(common / "ade-fences")) == [29, 30]


async def test_git_patch_refuses_local_changes_it_would_overwrite(
    ws: Workspace, repo: Path
) -> None:
    (repo / "notes.txt").write_text("uncommitted\n")
    before = repo_state(repo)
    payload = patch_payload(repo)
    plan = await PATCHER.plan(payload, ws.plan_context)
    snapshot = await PATCHER.snapshot(payload, plan, ws.at(fence=10))
    with pytest.raises(ApplyFailed, match="local changes") as caught:
        await PATCHER.apply(payload, plan, snapshot, ws.at(fence=10))
    assert not caught.value.transient
    assert repo_state(repo) == before


async def test_git_patch_refuses_a_branch_moved_after_the_snapshot(
    ws: Workspace, repo: Path
) -> None:
    payload = patch_payload(repo, "feature")
    plan = await PATCHER.plan(payload, ws.plan_context)
    snapshot = await PATCHER.snapshot(payload, plan, ws.at(fence=10))
    elsewhere = git(repo, "commit-tree", "main^{tree}", "-p", "main", "-m", "x").strip()
    git(repo, "update-ref", "refs/heads/feature", elsewhere)
    moved = git(repo, "rev-parse", "feature")
    with pytest.raises(ApplyFailed, match="moved") as caught:
        await PATCHER.apply(payload, plan, snapshot, ws.at(fence=10))
    assert caught.value.transient
    assert git(repo, "rev-parse", "feature") == moved
    with pytest.raises(ApplyFailed, match="moved"):  # and a fresh snapshot sees it too
        await PATCHER.snapshot(payload, plan, ws.at(fence=10))


async def test_git_patch_updates_a_linked_worktree(ws: Workspace, repo: Path) -> None:
    linked = ws.allowed / "linked"
    git(repo, "worktree", "add", "-q", str(linked), "feature")
    done = await run(PATCHER, patch_payload(repo, "feature"), ws.at(fence=10))
    assert done.result is not None
    assert done.result.details["worktree"] == str(linked)
    assert (linked / "added.txt").read_text() == "brand new\n"
    assert git(linked, "status", "--porcelain") == ""
    assert not (repo / "added.txt").exists()


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.01, 0.02, 0.04, 0.08])
async def test_a_cancelled_git_apply_leaves_a_state_rollback_restores(
    ws: Workspace, repo: Path, delay: float
) -> None:
    """Cancelled at any moment, the apply leaves the branch and its checkout either
    untouched or wholly moved (never a moved branch with a stale checkout), and rollback
    brings back exactly the state before."""
    before = repo_state(repo)
    payload = patch_payload(repo)
    plan = await PATCHER.plan(payload, ws.plan_context)
    snapshot = stored(await PATCHER.snapshot(payload, plan, ws.at(fence=10)))
    apply = asyncio.create_task(PATCHER.apply(payload, plan, snapshot, ws.at(fence=10)))
    await asyncio.sleep(delay)
    apply.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await apply
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    moved = git(repo, "rev-parse", "main") != before["refs"].split()[1] + "\n"
    assert status == "", f"inconsistent checkout after cancel (branch moved: {moved})"
    assert await PATCHER.rollback(payload, snapshot, ws.at(fence=10)) == "rolled_back"
    assert repo_state(repo) == before


async def test_git_patch_snapshot_of_a_repository_gone_is_a_permanent_failure(
    ws: Workspace, repo: Path
) -> None:
    payload = patch_payload(repo)
    plan = await PATCHER.plan(payload, ws.plan_context)
    shutil.rmtree(repo / ".git")
    with pytest.raises(ApplyFailed, match="not a git repository") as caught:
        await PATCHER.snapshot(payload, plan, ws.at(fence=1))
    assert not caught.value.transient


def test_parse_worktrees() -> None:
    porcelain = (
        "worktree /r\nHEAD abc\nbranch refs/heads/main\n\n"
        "worktree /r/w\nHEAD def\ndetached\n\nworktree /b\nbare\n"
    )
    assert parse_worktrees(porcelain) == {"refs/heads/main": Path("/r")}


# --- http.request -----------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[Server]:
    """A real HTTP server on localhost. ``/status/<n>`` answers n; ``/redirect``
    redirects; ``/echo`` answers with the request's headers (a careless receiver);
    everything else 200 with a JSON body."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            status = 200
            if self.path.startswith("/hooks/status/"):
                status = int(self.path.rsplit("/", 1)[1])
            if self.path == "/hooks/redirect":
                status = 302
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            if self.path.startswith("/hooks/echo"):
                reply = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
            else:
                reply = json.dumps({"ok": status < 300}).encode()
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}", seen)
    finally:
        httpd.shutdown()
        httpd.server_close()


HOOK_TOKEN = "hook-token-value-0123"


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[SecretVault]:
    """The real secrets store on a SQLite database, holding ``hook-token``."""
    settings = Settings(data_dir=tmp_path / "data")
    engine = db.create_engine(db.default_url(settings.data_dir))
    try:
        await db.upgrade(engine)
        sessions = db.sessionmaker(engine)
        async with sessions.begin() as session:
            cipher = SecretCipher.from_settings(settings)
            await put_secret(
                session, cipher, "hook-token", HOOK_TOKEN, description=None, actor=SYSTEM,
                user_id=None,
            )  # fmt: skip
        yield SecretVault(sessions, settings)
    finally:
        await engine.dispose()


@pytest.fixture
def hws(ws: Workspace, server: Server, vault: SecretVault) -> Workspace:
    return Workspace(ws.allowed, ws.outside, ws.fences, (f"{server.url}/hooks/",), vault)


def http_payload(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": url,
        "headers": {
            "Authorization": {"secret": "hook-token", "prefix": "Bearer "},
            "X-Custom": "v",
        },
        "body": {"service": "api", "replicas": 3},
        **extra,
    }


async def test_http_plan_opens_no_connection(ws: Workspace) -> None:
    """Not even a connection (which a request counter would not see): a listener's
    backlog holds every connection the kernel completed, accepted or not."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        allowed = Workspace(ws.allowed, ws.outside, ws.fences, (f"{url}/",))
        rollback = {"method": "DELETE", "url": f"{url}/undo"}
        for payload in (http_payload(f"{url}/do"), http_payload(f"{url}/do", rollback=rollback)):
            await HTTP.plan(payload, allowed.plan_context)
        assert select.select([listener], [], [], 0.2)[0] == []
        with socket.create_connection(listener.getsockname()):  # the probe itself works
            assert select.select([listener], [], [], 5)[0] == [listener]


async def test_http_plan_shows_the_request_and_sends_nothing(
    hws: Workspace, server: Server
) -> None:
    payload = http_payload(f"{server.url}/hooks/deploy?env=prod", timeout_seconds=5)
    plan = await HTTP.plan(payload, hws.plan_context)
    assert plan.preview == (
        f"POST {server.url}/hooks/deploy?env=prod\n"
        "Authorization: Bearer {secret:hook-token}\n"
        "Content-Type: application/json\n"
        "User-Agent: community-ade\n"
        "X-Custom: v\n"
        "X-ADE-Fence: <the apply's fencing token>\n"
        "X-ADE-Task: <the task id>\n"
        "\n"
        '{\n  "replicas": 3,\n  "service": "api"\n}\n'
        "\n"
        "timeout: 5 s; redirects are not followed\n"
        "rollback request: none\n"
    )
    assert server.seen == []
    # The reference is what is reviewed: naming another secret is another preview.
    other = http_payload(f"{server.url}/hooks/deploy?env=prod", timeout_seconds=5)
    other["headers"]["Authorization"] = {"secret": "other-token", "prefix": "Bearer "}
    changed = await HTTP.plan(other, hws.plan_context)
    assert changed.digest != plan.digest


async def test_http_apply_sends_exactly_the_previewed_request(
    hws: Workspace, server: Server
) -> None:
    payload = http_payload(f"{server.url}/hooks/deploy?env=prod")
    done = await run(HTTP, payload, hws.at(fence=123, task_id="t-5"))
    assert done.result is not None
    assert done.result.details == {"status": "200", "response": '{"ok": true}'}
    [request] = server.seen
    assert (request.method, request.path) == ("POST", "/hooks/deploy?env=prod")
    assert request.headers["Authorization"] == f"Bearer {HOOK_TOKEN}"
    assert request.headers["X-ADE-Task"] == "t-5"
    assert request.headers["X-ADE-Fence"] == "123"
    assert request.headers["X-Custom"] == "v"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body.decode() in done.plan.preview
    assert json.loads(request.body) == payload["body"]


async def test_http_text_body_is_sent_as_is(hws: Workspace, server: Server) -> None:
    payload = {"method": "PUT", "url": f"{server.url}/hooks/t", "body": "line 1\nline 2"}
    await run(HTTP, payload, hws.at(fence=1))
    [request] = server.seen
    assert request.body == b"line 1\nline 2"
    assert request.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("status", "transient"), [(500, True), (503, True), (429, True), (404, False), (400, False)]
)
async def test_http_failures_are_transient_for_5xx_and_permanent_for_4xx(
    hws: Workspace, server: Server, status: int, transient: bool
) -> None:
    payload = http_payload(f"{server.url}/hooks/status/{status}")
    with pytest.raises(ApplyFailed, match=f"answered {status}") as caught:
        await run(HTTP, payload, hws.at(fence=1))
    assert caught.value.transient is transient
    assert caught.value.details["status"] == status


async def test_http_does_not_follow_redirects(hws: Workspace, server: Server) -> None:
    with pytest.raises(ApplyFailed, match="answered 302") as caught:
        await run(HTTP, http_payload(f"{server.url}/hooks/redirect"), hws.at(fence=1))
    assert not caught.value.transient
    assert len(server.seen) == 1


async def test_http_connection_refused_is_transient(ws: Workspace, vault: SecretVault) -> None:
    with socket_on_free_port() as port:
        url = f"http://127.0.0.1:{port}/hooks/x"
    allowlist = (f"http://127.0.0.1:{port}/hooks/",)
    context = Workspace(ws.allowed, ws.outside, ws.fences, allowlist, vault)
    with pytest.raises(ApplyFailed, match="ConnectError") as caught:
        await run(HTTP, http_payload(url), context.at(fence=1))
    assert caught.value.transient


class socket_on_free_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


async def test_http_allowlist_is_enforced_at_plan_and_apply(
    hws: Workspace, server: Server, ws: Workspace
) -> None:
    for url in (
        f"{server.url}/hooksevil/x",  # a prefix of the string, not of the path
        f"{server.url}/other",
        f"{server.url.replace('127.0.0.1', 'localhost')}/hooks/x",
        f"{server.url}/hooks/../admin",
    ):
        with pytest.raises(InvalidInput):
            await HTTP.plan(http_payload(url), hws.plan_context)
    with pytest.raises(InvalidInput, match=r"rollback\.url: .* not on the allowlist"):
        await HTTP.plan(
            http_payload(
                f"{server.url}/hooks/x", rollback={"method": "DELETE", "url": "http://x/"}
            ),
            hws.plan_context,
        )
    payload = http_payload(f"{server.url}/hooks/x")
    plan = await HTTP.plan(payload, hws.plan_context)
    snapshot = await HTTP.snapshot(payload, plan, hws.at(fence=1))
    with pytest.raises(ApplyFailed, match="not on the allowlist"):  # the allowlist shrank
        await HTTP.apply(payload, plan, snapshot, ws.at(fence=1))
    assert server.seen == []


async def test_http_refuses_an_older_fence_and_sends_nothing(
    hws: Workspace, server: Server
) -> None:
    await run(HTTP, http_payload(f"{server.url}/hooks/x?a=1"), hws.at(fence=9))
    with pytest.raises(FenceRejected):
        await run(HTTP, http_payload(f"{server.url}/hooks/x?a=2"), hws.at(fence=8))
    assert len(server.seen) == 1
    await run(HTTP, http_payload(f"{server.url}/hooks/y"), hws.at(fence=8))  # its own record


async def test_http_rollback_sends_the_rollback_request(hws: Workspace, server: Server) -> None:
    rollback = {"method": "DELETE", "url": f"{server.url}/hooks/deploy/api"}
    payload = http_payload(f"{server.url}/hooks/status/500", rollback=rollback)
    plan = await HTTP.plan(payload, hws.plan_context)
    assert f"rollback request: \nDELETE {server.url}/hooks/deploy/api\n" in plan.preview
    snapshot = await HTTP.snapshot(payload, plan, hws.at(fence=3))
    with pytest.raises(ApplyFailed):
        await HTTP.apply(payload, plan, snapshot, hws.at(fence=3))
    assert await HTTP.rollback(payload, snapshot, hws.at(fence=3)) == "rolled_back"
    assert [(s.method, s.path, s.headers["X-ADE-Fence"]) for s in server.seen] == [
        ("POST", "/hooks/status/500", "3"),
        ("DELETE", "/hooks/deploy/api", "3"),
    ]
    plain = http_payload(f"{server.url}/hooks/x")
    assert await HTTP.rollback(plain, snapshot, hws.at(fence=3)) == "nothing_to_roll_back"


async def test_http_sends_query_secrets_encoded_and_records_no_value(
    hws: Workspace, server: Server
) -> None:
    """A receiver that echoes what it got (headers, URL) does not get the values into
    the task's result: the apply scrubs them."""
    payload = http_payload(
        f"{server.url}/hooks/echo?env=prod", query={"api_key": {"secret": "hook-token"}}
    )
    done = await run(HTTP, payload, hws.at(fence=4))
    assert "?env=prod&api_key={secret:hook-token}" in done.plan.preview
    [request] = server.seen
    assert request.path == f"/hooks/echo?env=prod&api_key={HOOK_TOKEN}"
    assert request.headers["Authorization"] == f"Bearer {HOOK_TOKEN}"
    assert done.result is not None
    recorded = json.dumps([done.result.summary, dict(done.result.details), done.snapshot.data])
    assert HOOK_TOKEN not in recorded
    assert "Bearer {secret:hook-token}" in done.result.details["response"]


async def test_http_failure_details_carry_no_value(hws: Workspace, server: Server) -> None:
    payload = http_payload(
        f"{server.url}/hooks/status/500", query={"token": {"secret": "hook-token"}}
    )
    with pytest.raises(ApplyFailed) as caught:
        await run(HTTP, payload, hws.at(fence=1))
    assert HOOK_TOKEN not in caught.value.message + json.dumps(caught.value.details)
    assert "token={secret:hook-token}" in caught.value.message


async def test_http_a_secret_deleted_after_approval_fails_the_apply_and_sends_nothing(
    hws: Workspace, server: Server, ws: Workspace
) -> None:
    payload = http_payload(f"{server.url}/hooks/x")
    payload["headers"]["Authorization"] = {"secret": "gone-token"}
    plan = await HTTP.plan(payload, hws.plan_context)  # planning needs no value
    snapshot = await HTTP.snapshot(payload, plan, hws.at(fence=1))
    with pytest.raises(ApplyFailed, match="no longer exist: gone-token") as caught:
        await HTTP.apply(payload, plan, snapshot, hws.at(fence=1))
    assert not caught.value.transient
    without_store = Workspace(ws.allowed, ws.outside, ws.fences, hws.http_allowlist)
    with pytest.raises(ApplyFailed, match="no secret store"):
        await HTTP.apply(
            http_payload(f"{server.url}/hooks/x"), plan, snapshot, without_store.at(fence=2)
        )
    assert server.seen == []
