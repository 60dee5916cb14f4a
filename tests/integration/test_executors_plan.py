"""Planning against a real filesystem and real git repositories, and the plugin registry.

Each test builds its workspace in a temporary directory. "Plan writes nothing" is checked
by snapshotting every file and directory (type, size, mtime, content hash) before and
after, and for git also the refs, HEAD, index and status.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gitutil import GIT, git
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from community_ade.errors import InvalidInput, ServiceUnavailable
from community_ade.execution.executors import (
    Executor,
    PlanContext,
    digest_of,
    get_executor,
    load_executors,
)
from community_ade.execution.executors import git_patch as gp
from community_ade.execution.executors.files_write import FilesWriteExecutor
from community_ade.execution.executors.git_patch import GitPatchExecutor

pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")

FILES = FilesWriteExecutor()
PATCHER = GitPatchExecutor()


@dataclass(frozen=True)
class Workspace:
    allowed: Path  # the one allowed workspace root
    outside: Path  # a directory outside it
    context: PlanContext


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    allowed = tmp_path / "workspaces"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    return Workspace(allowed, outside, PlanContext(allowed_roots=(allowed,)))


def tree_snapshot(top: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under top (top included): kind, size, mtime_ns and content hash."""
    snap: dict[str, tuple[Any, ...]] = {}
    for entry in [top, *sorted(top.rglob("*"))]:
        info = entry.lstat()
        rel = str(entry.relative_to(top))
        if stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(entry.read_bytes()).hexdigest()
            snap[rel] = ("file", info.st_size, info.st_mtime_ns, digest)
        elif stat.S_ISLNK(info.st_mode):
            snap[rel] = ("link", os.readlink(entry), info.st_mtime_ns)
        else:
            snap[rel] = ("dir", info.st_mtime_ns)
    return snap


def files_payload(root: Path, *changes: dict[str, Any]) -> dict[str, Any]:
    return {"root": str(root), "changes": list(changes)}


def write(path: str, content: str) -> dict[str, Any]:
    return {"path": path, "action": "write", "content": content}


def delete(path: str) -> dict[str, Any]:
    return {"path": path, "action": "delete"}


def error_paths(caught: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [e["path"] for e in caught.value.details["errors"]]


@pytest.fixture
def project(ws: Workspace) -> Path:
    root = ws.allowed / "project"
    root.mkdir()
    (root / "keep.txt").write_text("old\n")
    (root / "gone.txt").write_text("bye\n")
    (root / "docs").mkdir()
    (root / "docs" / "readme.md").write_text("one\ntwo\nthree\nfour\nfive\nsix\nseven\n")
    return root


# --- files.write ------------------------------------------------------------------------


async def test_files_write_previews_create_replace_and_delete(ws: Workspace, project: Path) -> None:
    payload = files_payload(
        project,
        write("new/file.txt", "hello\nworld\n"),
        write("keep.txt", "new\n"),
        delete("gone.txt"),
    )
    plan = await FILES.plan(payload, ws.context)
    assert plan.preview == textwrap.dedent(
        """\
        --- a/gone.txt
        +++ /dev/null
        @@ -1 +0,0 @@
        -bye
        --- a/keep.txt
        +++ b/keep.txt
        @@ -1 +1 @@
        -old
        +new
        --- /dev/null
        +++ b/new/file.txt
        @@ -0,0 +1,2 @@
        +hello
        +world
        """
    )
    assert plan.format == "diff"
    assert plan.digest == digest_of(plan.preview)
    assert plan.lines_changed == 5
    assert "1 created, 1 replaced, 1 deleted" in plan.summary


async def test_files_write_preview_is_a_faithful_patch(ws: Workspace, project: Path) -> None:
    """git applies the preview to a copy of the root and gets exactly the payload's files:
    context lines, missing final newlines and carriage returns survive."""
    contents = {
        "docs/readme.md": "one\ntwo\nTHREE\nfour\nfive\nsix\nseven",  # no final newline
        "crlf.txt": "a\r\nb\r\n",
        "keep.txt": "old\nmore\n",
    }
    payload = files_payload(
        project, *(write(p, c) for p, c in contents.items()), delete("gone.txt")
    )
    plan = await FILES.plan(payload, ws.context)
    assert "-three\n+THREE\n" in plan.preview
    assert "+seven\n\\ No newline at end of file\n" in plan.preview
    assert "+a\r\n+b\r\n" in plan.preview

    copy = ws.outside / "copy"
    shutil.copytree(project, copy)
    git(copy, "init", "-q")  # so git applies relative to the copy, whatever lies above it
    git(copy, "apply", "-", stdin=plan.preview)
    for path, content in contents.items():
        assert (copy / path).read_bytes() == content.encode()
    assert not (copy / "gone.txt").exists()


async def test_files_write_digest_is_stable_and_independent_of_change_order(
    ws: Workspace, project: Path
) -> None:
    changes = [write("b.txt", "b\n"), write("keep.txt", "x\n"), delete("gone.txt")]
    first = await FILES.plan(files_payload(project, *changes), ws.context)
    again = await FILES.plan(files_payload(project, *changes), ws.context)
    reordered = await FILES.plan(files_payload(project, *reversed(changes)), ws.context)
    assert first == again
    assert (reordered.digest, reordered.precondition_fingerprint) == (
        first.digest,
        first.precondition_fingerprint,
    )


async def test_files_write_fingerprint_follows_the_files_it_changes(
    ws: Workspace, project: Path
) -> None:
    payload = files_payload(project, write("keep.txt", "new\n"), write("fresh.txt", "f\n"))
    base = await FILES.plan(payload, ws.context)

    (project / "unrelated.txt").write_text("not part of the task\n")
    assert (await FILES.plan(payload, ws.context)).precondition_fingerprint == (
        base.precondition_fingerprint
    )

    (project / "keep.txt").write_text("changed by someone else\n")
    moved = await FILES.plan(payload, ws.context)
    assert moved.precondition_fingerprint != base.precondition_fingerprint
    assert moved.digest != base.digest

    (project / "keep.txt").write_text("old\n")
    (project / "fresh.txt").write_text("f\n")  # now exists, with the very content to write
    appeared = await FILES.plan(payload, ws.context)
    assert appeared.precondition_fingerprint != base.precondition_fingerprint


async def test_files_write_plan_writes_nothing(ws: Workspace, project: Path) -> None:
    before = tree_snapshot(ws.allowed)
    payload = files_payload(
        project,
        write("deep/new/dir/file.txt", "x\n"),
        write("keep.txt", "y\n"),
        delete("gone.txt"),
        delete("docs/readme.md"),
    )
    await FILES.plan(payload, ws.context)
    with pytest.raises(InvalidInput):
        await FILES.plan(files_payload(project, delete("missing.txt")), ws.context)
    assert tree_snapshot(ws.allowed) == before


async def test_files_write_refuses_a_symlink_escape(ws: Workspace, project: Path) -> None:
    (ws.outside / "secret.txt").write_text("s\n")
    (project / "link").symlink_to(ws.outside)
    with pytest.raises(InvalidInput) as caught:
        await FILES.plan(files_payload(project, write("link/secret.txt", "pwned\n")), ws.context)
    assert error_paths(caught) == ["changes[0].path"]
    assert "outside root" in caught.value.message


async def test_files_write_refuses_a_symlinked_file_but_follows_inner_directory_links(
    ws: Workspace, project: Path
) -> None:
    (project / "alias.txt").symlink_to(project / "keep.txt")
    with pytest.raises(InvalidInput, match="symbolic link"):
        await FILES.plan(files_payload(project, write("alias.txt", "x\n")), ws.context)

    (project / "docs-link").symlink_to(project / "docs")
    plan = await FILES.plan(files_payload(project, write("docs-link/new.md", "n\n")), ws.context)
    assert "+++ b/docs-link/new.md" in plan.preview
    with pytest.raises(InvalidInput, match="same file"):
        await FILES.plan(
            files_payload(project, write("docs/x", "1"), write("docs-link/x", "2")), ws.context
        )


async def test_files_write_refuses_a_root_outside_the_allowed_roots(ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="outside the workspace roots") as caught:
        await FILES.plan(files_payload(ws.outside, write("a", "a")), ws.context)
    assert error_paths(caught) == ["root"]

    sneaky = ws.allowed / "sneaky"
    sneaky.symlink_to(ws.outside)
    with pytest.raises(InvalidInput, match="outside the workspace roots"):
        await FILES.plan(files_payload(sneaky, write("a", "a")), ws.context)

    with pytest.raises(InvalidInput, match="does not exist"):
        await FILES.plan(files_payload(ws.allowed / "nope", write("a", "a")), ws.context)

    nowhere = PlanContext(allowed_roots=())
    with pytest.raises(InvalidInput, match="no workspace roots"):
        await FILES.plan(files_payload(ws.allowed, write("a", "a")), nowhere)


async def test_files_write_accepts_the_allowed_root_itself_through_a_symlinked_root(
    ws: Workspace,
) -> None:
    via_link = ws.outside.parent / "workspaces-link"
    via_link.symlink_to(ws.allowed)
    context = PlanContext(allowed_roots=(via_link,))
    plan = await FILES.plan(files_payload(ws.allowed, write("a.txt", "a\n")), context)
    assert "+++ b/a.txt" in plan.preview


async def test_files_write_reports_every_problem_found_on_disk(
    ws: Workspace, project: Path
) -> None:
    (project / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    os.mkfifo(project / "fifo")
    payload = files_payload(
        project,
        delete("missing.txt"),
        write("blob.bin", "text now\n"),
        write("docs", "a directory\n"),
        write("keep.txt/child", "under a file\n"),
        write("fifo", "would block a naive read\n"),
    )
    with pytest.raises(InvalidInput) as caught:
        await FILES.plan(payload, ws.context)
    messages = {e["path"]: e["message"] for e in caught.value.details["errors"]}
    assert "cannot be deleted" in messages["changes[0].path"]
    assert "binary" in messages["changes[1].path"]
    assert "directory" in messages["changes[2].path"]
    assert "parent that is a file" in messages["changes[3].path"]
    assert "not a regular file" in messages["changes[4].path"]


async def test_files_write_handles_empty_files(ws: Workspace, project: Path) -> None:
    (project / "empty.txt").write_text("")
    payload = files_payload(project, write("new-empty.txt", ""), delete("empty.txt"))
    plan = await FILES.plan(payload, ws.context)
    assert plan.preview == "--- a/empty.txt\n+++ /dev/null\n--- /dev/null\n+++ b/new-empty.txt\n"
    assert plan.lines_changed == 0


# --- git.patch --------------------------------------------------------------------------


@pytest.fixture
def repo(ws: Workspace) -> Path:
    """main: app.py and notes.txt; feature: main plus one commit changing app.py."""
    path = ws.allowed / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("def f():\n    return 1\n\n\nprint(f())\n")
    (path / "notes.txt").write_text("first\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "initial")
    git(path, "checkout", "-q", "-b", "feature")
    (path / "app.py").write_text("def f():\n    return 2\n\n\nprint(f())\n")
    git(path, "commit", "-q", "-am", "feature work")
    git(path, "checkout", "-q", "main")
    return path


def diff_of(repo: Path, edit: dict[str, str]) -> str:
    """The patch turning the checked-out tree into one with ``edit`` applied."""
    for name, content in edit.items():
        (repo / name).write_text(content)
    git(repo, "add", "-N", ".")
    patch = git(repo, "diff")
    git(repo, "reset", "-q")
    git(repo, "checkout", "-q", "--", ".")
    for name in edit:
        if not git(repo, "ls-files", name):
            (repo / name).unlink()
    return patch


def patch_payload(repo: Path, patch: str, branch: str = "main") -> dict[str, Any]:
    return {"repo": str(repo), "branch": branch, "patch": patch, "message": "Change f\n\nBody"}


def repo_state(repo: Path) -> dict[str, Any]:
    """Everything plan must leave alone. Files first, and status without optional locks:
    a plain ``git status`` may itself refresh (rewrite) the index."""
    index = repo / ".git" / "index"
    files = tree_snapshot(repo)
    return {
        "files": files,
        "status": git(
            repo,
            "--no-optional-locks",
            "status",
            "--porcelain=v1",
            "--ignored",
            "--untracked-files=all",
        ),
        "head": git(repo, "rev-parse", "HEAD"),
        "symbolic_head": git(repo, "symbolic-ref", "HEAD"),
        "refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        "index": (index.stat().st_mtime_ns, hashlib.sha256(index.read_bytes()).hexdigest()),
    }


async def test_git_patch_plan_checks_against_the_branch(ws: Workspace, repo: Path) -> None:
    patch = diff_of(repo, {"notes.txt": "first\nsecond\n", "new.txt": "brand new\n"})
    plan = await PATCHER.plan(patch_payload(repo, patch), ws.context)
    assert plan.preview == patch
    assert plan.format == "diff"
    assert plan.digest == digest_of(patch)
    assert plan.precondition_fingerprint == git(repo, "rev-parse", "main").strip()
    assert plan.lines_changed == 2
    assert "2 file(s) on main" in plan.summary
    assert plan.summary.endswith(": Change f")


async def test_git_patch_plan_leaves_the_repository_untouched(ws: Workspace, repo: Path) -> None:
    patch = diff_of(repo, {"notes.txt": "first\nsecond\n"})
    # Something to disturb: a staged change, an unstaged one, an untracked file.
    (repo / "app.py").write_text("staged\n")
    git(repo, "add", "app.py")
    (repo / "notes.txt").write_text("dirty\n")
    (repo / "scratch.tmp").write_text("untracked\n")
    before = repo_state(repo)
    plan = await PATCHER.plan(patch_payload(repo, patch), ws.context)
    assert plan.precondition_fingerprint == before["head"].strip()
    with pytest.raises(InvalidInput):
        await PATCHER.plan(patch_payload(repo, "not a patch\n"), ws.context)
    assert repo_state(repo) == before


async def test_git_patch_checks_the_named_branch_not_the_checkout(
    ws: Workspace, repo: Path
) -> None:
    git(repo, "checkout", "-q", "feature")
    feature_patch = diff_of(repo, {"app.py": "def f():\n    return 3\n\n\nprint(f())\n"})
    git(repo, "checkout", "-q", "main")

    plan = await PATCHER.plan(patch_payload(repo, feature_patch, "feature"), ws.context)
    assert plan.precondition_fingerprint == git(repo, "rev-parse", "feature").strip()

    with pytest.raises(InvalidInput) as caught:
        await PATCHER.plan(patch_payload(repo, feature_patch, "main"), ws.context)
    assert error_paths(caught) == ["patch"]
    assert "patch does not apply" in caught.value.message  # git's own words
    assert "app.py" in caught.value.details["git_stderr"]


async def test_git_patch_fingerprint_moves_with_the_branch(ws: Workspace, repo: Path) -> None:
    patch = diff_of(repo, {"notes.txt": "first\nsecond\n"})
    first = await PATCHER.plan(patch_payload(repo, patch), ws.context)
    assert first == await PATCHER.plan(patch_payload(repo, patch), ws.context)
    (repo / "app.py").write_text("unrelated\n")
    git(repo, "commit", "-q", "-am", "someone else")
    moved = await PATCHER.plan(patch_payload(repo, patch), ws.context)
    assert moved.digest == first.digest  # same change...
    assert moved.precondition_fingerprint != first.precondition_fingerprint  # ...new base


async def test_git_patch_refuses_an_unknown_branch(ws: Workspace, repo: Path) -> None:
    patch = diff_of(repo, {"notes.txt": "x\n"})
    with pytest.raises(InvalidInput, match="no branch 'nope'") as caught:
        await PATCHER.plan(patch_payload(repo, patch, "nope"), ws.context)
    assert error_paths(caught) == ["branch"]


async def test_git_patch_refuses_what_is_not_a_repository(ws: Workspace, repo: Path) -> None:
    plain = ws.allowed / "plain"
    plain.mkdir()
    with pytest.raises(InvalidInput, match="not a git repository") as caught:
        await PATCHER.plan(patch_payload(plain, "--- a/x\n"), ws.context)
    assert error_paths(caught) == ["repo"]

    sub = repo / "sub"
    sub.mkdir()
    with pytest.raises(InvalidInput, match="not a git repository"):
        await PATCHER.plan(patch_payload(sub, "--- a/x\n"), ws.context)

    with pytest.raises(InvalidInput, match="not the top directory"):
        await PATCHER.plan(patch_payload(repo / ".git", "--- a/x\n"), ws.context)

    (repo / "notes.txt").write_text("x\n")
    with pytest.raises(InvalidInput, match="not a directory"):
        await PATCHER.plan(patch_payload(repo / "notes.txt", "--- a/x\n"), ws.context)


async def test_git_patch_refuses_a_repository_outside_the_allowed_roots(
    ws: Workspace, repo: Path
) -> None:
    elsewhere = ws.outside / "repo"
    shutil.copytree(repo, elsewhere)
    with pytest.raises(InvalidInput, match="outside the workspace roots"):
        await PATCHER.plan(patch_payload(elsewhere, "--- a/x\n"), ws.context)


async def test_git_patch_works_on_a_bare_repository(ws: Workspace, repo: Path) -> None:
    bare = ws.allowed / "bare.git"
    git(ws.allowed, "clone", "-q", "--bare", str(repo), str(bare))
    patch = diff_of(repo, {"notes.txt": "first\nsecond\n"})
    plan = await PATCHER.plan(patch_payload(bare, patch), ws.context)
    assert plan.precondition_fingerprint == git(bare, "rev-parse", "main").strip()


async def test_git_patch_refuses_garbage_with_gits_message(ws: Workspace, repo: Path) -> None:
    with pytest.raises(InvalidInput, match="No valid patches in input"):
        await PATCHER.plan(patch_payload(repo, "hello, not a diff\n"), ws.context)


async def test_git_patch_crlf_transport_is_normalised_before_the_check(
    ws: Workspace, repo: Path
) -> None:
    patch = diff_of(repo, {"notes.txt": "first\nsecond\n"})
    plan = await PATCHER.plan(patch_payload(repo, patch.replace("\n", "\r\n")), ws.context)
    assert plan.preview == patch
    assert plan.digest == digest_of(patch)


async def test_git_patch_keeps_binary_patches_intact(ws: Workspace, repo: Path) -> None:
    (repo / "blob.bin").write_bytes(b"\x00\x01binary\xff")
    git(repo, "add", "blob.bin")
    patch = git(repo, "diff", "--cached", "--binary")
    git(repo, "reset", "-q")
    (repo / "blob.bin").unlink()
    plan = await PATCHER.plan(patch_payload(repo, patch), ws.context)
    assert plan.preview == patch
    assert plan.lines_changed == 1
    assert "1 binary" in plan.summary


def fake_git(tmp: Path, body: str) -> str:
    script = tmp / "fake-git"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


async def test_git_runs_in_a_scrubbed_environment_with_the_index_outside_the_repo(
    ws: Workspace, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ws.outside / "env.log"
    wrapper = fake_git(ws.outside, f'env >> "{log}"\necho "--- $*" >> "{log}"\nexec {GIT} "$@"')
    patch = diff_of(repo, {"notes.txt": "first\nsecond\n"})
    monkeypatch.setenv("ADE_TEST_SECRET", "must-not-leak")
    monkeypatch.setenv("GIT_DIR", str(ws.outside))  # would redirect git if inherited
    context = PlanContext(allowed_roots=(ws.allowed,), git_executable=wrapper)
    await PATCHER.plan(patch_payload(repo, patch), context)
    assert_scrubbed(log.read_text(), ws, repo)


def assert_scrubbed(logged: str, ws: Workspace, repo: Path) -> None:
    assert "must-not-leak" not in logged
    assert f"GIT_DIR={ws.outside}" not in logged
    assert "GIT_TERMINAL_PROMPT=0" in logged
    assert "GIT_CONFIG_NOSYSTEM=1" in logged
    index_files = {
        line.split("=", 1)[1] for line in logged.splitlines() if line.startswith("GIT_INDEX_FILE=")
    }
    assert index_files
    for index in index_files:
        assert not Path(index).is_relative_to(repo)
        assert not Path(index).exists()  # the scratch directory is gone


async def test_git_that_hangs_is_killed_at_the_timeout(ws: Workspace, repo: Path) -> None:
    pid_file = ws.outside / "pid"
    hanging = fake_git(ws.outside, f'echo $$ > "{pid_file}"\nexec sleep 30')
    context = PlanContext(
        allowed_roots=(ws.allowed,), git_executable=hanging, command_timeout_seconds=0.5
    )
    with pytest.raises(ServiceUnavailable, match=r"did not finish within 0\.5 s"):
        await PATCHER.plan(patch_payload(repo, "--- a/x\n"), context)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_a_missing_git_is_a_service_problem(ws: Workspace, repo: Path) -> None:
    context = PlanContext(allowed_roots=(ws.allowed,), git_executable="no-such-git-binary")
    with pytest.raises(ServiceUnavailable, match="not found"):
        await PATCHER.plan(patch_payload(repo, "--- a/x\n"), context)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="ab9_./-+@{}~^: *[?\\", min_size=1, max_size=12))
def test_every_accepted_branch_name_is_one_git_accepts(branch: str) -> None:
    if gp.branch_problem(branch) is not None:
        return
    result = subprocess.run(
        [GIT or "git", "check-ref-format", "--branch", branch], capture_output=True, check=False
    )
    assert result.returncode == 0, branch


# --- registry ---------------------------------------------------------------------------


@pytest.fixture
def rescan() -> Iterator[None]:
    load_executors.cache_clear()
    yield
    load_executors.cache_clear()


def test_registry_finds_the_builtins_through_entry_points(rescan: None) -> None:
    found = load_executors()
    assert isinstance(found["files.write"], FilesWriteExecutor)
    assert isinstance(found["git.patch"], GitPatchExecutor)
    assert get_executor("git.patch") is found["git.patch"]
    with pytest.raises(TypeError):
        found["x"] = found["git.patch"]  # type: ignore[index]


def test_registry_refuses_an_unknown_task_type(rescan: None) -> None:
    known = r"files\.write, git\.patch, http\.request, shell"
    with pytest.raises(InvalidInput, match=rf"unknown task type 'nope'.*{known}"):
        get_executor("nope")


PLUGIN = """
from community_ade.execution.executors import Plan, ValidationReport


class EchoExecutor:
    task_type = "demo.echo"

    def validate(self, payload):
        return ValidationReport()

    async def plan(self, payload, context):
        return Plan.build(preview=str(payload), format="text",
                          precondition_fingerprint="-", lines_changed=0, summary="echo")


class Impostor(EchoExecutor):
    task_type = "files.write"


class Liar(EchoExecutor):
    task_type = "something.else"


class NotAnExecutor:
    task_type = "demo.broken"
"""


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescan: None) -> None:
    """An installed third-party distribution, as pip would leave it on sys.path."""
    site = tmp_path / "site"
    dist_info = site / "ade_demo_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (site / "ade_demo_plugin.py").write_text(PLUGIN)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ade-demo-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[community_ade.executors]\n"
        "demo.echo = ade_demo_plugin:EchoExecutor\n"
        "files.write = ade_demo_plugin:Impostor\n"
        "demo.liar = ade_demo_plugin:Liar\n"
        "demo.broken = ade_demo_plugin:NotAnExecutor\n"
        "demo.missing = ade_demo_plugin_gone:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "ade_demo_plugin", raising=False)


async def test_a_third_party_executor_appears_without_code_changes(
    third_party: None, ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="community_ade.execution.executors"):
        found = load_executors()
    assert sorted(found) == [
        "agent.call",
        "demo.echo",
        "files.write",
        "git.patch",
        "http.request",
        "shell",
    ]
    echo = get_executor("demo.echo")
    assert isinstance(echo, Executor)
    assert (await echo.plan({"a": 1}, ws.context)).preview == "{'a': 1}"
    # A plugin cannot replace a built-in, and broken plugins are left out, loudly.
    assert isinstance(found["files.write"], FilesWriteExecutor)
    logged = caplog.text
    assert "built-in one is used" in logged
    assert "demo.liar" in logged
    assert "demo.broken" in logged
    assert "demo.missing" in logged
