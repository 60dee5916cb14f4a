"""git.patch on a repository a submitter prepared to run programs: its configuration,
attributes and hooks name programs that would leave a marker file. Preview (at submit,
before any approval), apply and rollback must run none of them. Real git throughout."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from gitutil import GIT, git

from community_ade.errors import InvalidInput
from community_ade.execution.executors import ApplyContext, PlanContext, Snapshot
from community_ade.execution.executors.base import ApplyFailed
from community_ade.execution.executors.git_patch import GitPatchExecutor
from community_ade.execution.executors.git_runner import neutralised_filters

pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")

PATCHER = GitPatchExecutor()
HOOKS = (
    "reference-transaction", "post-index-change", "post-checkout", "pre-commit",
    "commit-msg", "post-commit", "post-merge", "pre-auto-gc", "fsmonitor-watchman",
)  # fmt: skip

PATCH = """\
diff --git a/notes.txt b/notes.txt
--- a/notes.txt
+++ b/notes.txt
@@ -1 +1 @@
-first
+first, amended
diff --git a/readme.md b/readme.md
--- a/readme.md
+++ b/readme.md
@@ -1 +1 @@
-old
+new
"""


def marking(markers: Path, name: str) -> str:
    """A shell command that leaves the marker ``name`` and passes its input through."""
    return f"touch {markers / name}; cat"


def executable(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    found = tmp_path / "markers"
    found.mkdir()
    return found


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    allowed = tmp_path / "workspaces"
    allowed.mkdir()
    return allowed


def context(roots: Path, tmp_path: Path, fence: int = 7) -> ApplyContext:
    plan = PlanContext(allowed_roots=(roots,), fence_dir=tmp_path / "fences")
    return ApplyContext(plan, task_id="t-1", fence=fence)


def arm(repo: Path, markers: Path) -> None:
    """Every way the repository's own files could make git run a program."""
    mark = str(markers)
    (repo / ".gitattributes").write_text(
        "*.txt filter=evil diff=evil merge=evil\n*.md filter=odd.name=x\n"
    )
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "attributes")
    settings = {
        "core.fsmonitor": f"touch {mark}/fsmonitor; false",
        "filter.evil.clean": marking(markers, "clean"),
        "filter.evil.smudge": marking(markers, "smudge"),
        "filter.evil.required": "true",
        "filter.odd.name=x.process": f"touch {mark}/process; false",
        "diff.external": f"touch {mark}/diff-external",
        "diff.evil.textconv": marking(markers, "textconv"),
        "diff.evil.command": f"touch {mark}/diff-command",
        "merge.evil.driver": f"touch {mark}/merge-driver",
        "core.pager": f"touch {mark}/pager; cat",
        "log.showSignature": "true",
        "gpg.program": f"touch {mark}/gpg",
        "submodule.recurse": "true",
        "core.hooksPath": str(repo / "evil-hooks"),
    }
    # Written into .git/config directly: `git config` cannot take "=" in a key.
    config = repo / ".git" / "config"
    with config.open("a") as out:
        for key, value in settings.items():
            section, _, rest = key.partition(".")
            sub, _, var = rest.rpartition(".")
            header = f'[{section} "{sub}"]' if sub else f"[{section}]"
            out.write(f"{header}\n\t{var} = {json.dumps(value)}\n")
    for hook in HOOKS:
        for where in (repo / ".git" / "hooks", repo / "evil-hooks"):
            executable(where / hook, f"touch {mark}/hook-{hook}")


def plain_repo(where: Path) -> Path:
    where.mkdir()
    git(where, "init", "-q", "-b", "main")
    (where / "notes.txt").write_text("first\n")
    (where / "readme.md").write_text("old\n")
    git(where, "add", ".")
    git(where, "commit", "-q", "-m", "initial")
    return where


@pytest.fixture
def hostile(roots: Path, markers: Path) -> Path:
    repo = plain_repo(roots / "repo")
    arm(repo, markers)
    assert (repo / ".git" / "config").read_text().count("[filter") == 4
    return repo


def payload(repo: Path) -> dict[str, str]:
    return {"repo": str(repo), "branch": "main", "patch": PATCH, "message": "Add a line"}


def left(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


def test_the_armed_repository_does_run_programs_under_plain_git(
    hostile: Path, markers: Path
) -> None:
    """The fixture is live: ordinary git in it runs the filters and hooks (whether or
    not the command then succeeds)."""
    (hostile / "notes.txt").unlink()
    (hostile / "readme.md").unlink()
    for command in (
        ["checkout", "--", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--allow-empty", "-m", "x"],
    ):
        subprocess.run([GIT or "git", *command], cwd=hostile, capture_output=True, check=False)
    assert {"fsmonitor", "smudge", "process", "hook-pre-commit"} <= set(left(markers))


async def test_plan_apply_and_rollback_run_nothing_the_repository_names(
    hostile: Path, markers: Path, roots: Path, tmp_path: Path
) -> None:
    ctx = context(roots, tmp_path)
    spec = payload(hostile)
    plan = await PATCHER.plan(spec, ctx.plan_context)
    assert left(markers) == []
    snapshot = await PATCHER.snapshot(spec, plan, ctx)
    stored = Snapshot(snapshot.task_type, json.loads(json.dumps(snapshot.data)))
    result = await PATCHER.apply(spec, plan, stored, ctx)
    assert left(markers) == []
    # The checked-out branch moved and its working tree with it, filters unapplied.
    assert result.details["worktree"] == str(hostile)
    assert (hostile / "notes.txt").read_text() == "first, amended\n"
    assert (hostile / "readme.md").read_text() == "new\n"
    assert await PATCHER.rollback(spec, stored, ctx) == "rolled_back"
    assert left(markers) == []
    assert (hostile / "notes.txt").read_text() == "first\n"


async def test_a_lazy_fetch_from_a_promisor_remote_is_never_attempted(
    markers: Path, roots: Path, tmp_path: Path
) -> None:
    """A partial clone fetches a missing object on demand, through ``core.sshCommand``
    or the remote's ``uploadpack``: both programs the repository names."""
    repo = plain_repo(roots / "partial")
    blob = git(repo, "rev-parse", "main:notes.txt").strip()
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    for key, value in {
        "core.repositoryformatversion": "1",
        "extensions.partialClone": "origin",
        "remote.origin.promisor": "true",
        "remote.origin.url": "ssh://example.invalid/repo",
        "core.sshCommand": f"touch {markers}/ssh; false",
        "remote.origin.uploadpack": f"touch {markers}/uploadpack; false",
    }.items():
        git(repo, "config", key, value)
    with pytest.raises(InvalidInput, match="does not apply"):
        await PATCHER.plan(payload(repo), context(roots, tmp_path).plan_context)
    assert left(markers) == []


async def test_a_worktree_the_repository_records_outside_the_roots_is_refused(
    roots: Path, tmp_path: Path
) -> None:
    """A linked worktree is found in the repository's own records: it is confined like
    any path a task names before anything is checked out into it."""
    repo, outside = plain_repo(roots / "repo"), tmp_path / "elsewhere"
    git(repo, "branch", "side")
    git(repo, "worktree", "add", "-q", str(outside), "side")
    ctx = context(roots, tmp_path)
    spec = {**payload(repo), "branch": "side"}
    before = (outside / "notes.txt").read_text()
    plan = await PATCHER.plan(spec, ctx.plan_context)
    snapshot = await PATCHER.snapshot(spec, plan, ctx)
    with pytest.raises(ApplyFailed, match="outside the workspace roots"):
        await PATCHER.apply(spec, plan, snapshot, ctx)
    assert (outside / "notes.txt").read_text() == before
    assert git(repo, "rev-parse", "side") == git(repo, "rev-parse", "main")


def test_every_declared_filter_driver_is_blanked() -> None:
    keys = ["filter.lfs.smudge", "filter.odd.name=x.process", "filter.Case.clean", "filter.x"]
    blanked = dict(neutralised_filters(keys))
    for driver in ("lfs", "odd.name=x", "Case"):
        for variable in ("clean", "smudge", "process"):
            assert blanked[f"filter.{driver}.{variable}"] == ""
        assert blanked[f"filter.{driver}.required"] == "false"
    assert len(blanked) == 12


@pytest.fixture(autouse=True)
def _no_inherited_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' own git runs must not pick up the developer's global configuration."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


async def test_a_git_directory_outside_the_roots_is_refused(roots: Path, tmp_path: Path) -> None:
    """A ``.git`` file inside the roots may name any git directory: its refs are what
    apply would move, so that directory must lie inside the roots too."""
    elsewhere = plain_repo(tmp_path / "elsewhere")
    front = roots / "front"
    front.mkdir()
    (front / ".git").write_text(f"gitdir: {elsewhere / '.git'}\n")
    with pytest.raises(InvalidInput, match=r"keeps its git directory at .* outside the workspace"):
        await PATCHER.plan(payload(front), context(roots, tmp_path).plan_context)
