"""The world of the shell tests: a data directory with the files an attacker wants, a
workspace root with a git repository, and a directory outside every root.

The tree lives in a fresh directory under /tmp (not pytest's tmp_path, which is mode
0700 and so out of reach of the unprivileged user commands run as); the working
directories belong to that user, as an operator would set them up. Needs bubblewrap:
``require_bwrap`` skips locally and fails under CI=true without it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import unavailable

from community_ade.execution.executors.base import ApplyContext, PlanContext
from community_ade.execution.executors.shell_profile import ShellProfile, StaticShellProfiles
from community_ade.settings import Settings

IS_ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody")
TOKEN = "ade_u1234567_THE-DEMO-TOKEN-AN-ATTACKER-WANTS"
SECRET = "the-csrf-secret-an-attacker-wants"


def require_bwrap() -> None:
    if shutil.which("bwrap") is None:
        unavailable("bubblewrap (bwrap) is not installed")


def require_root() -> None:
    if not IS_ROOT:
        unavailable("switching to the shell user needs the tests to run as root")


def _give_to_shell_user(path: Path) -> None:
    """Make ``path`` (recursively) the shell user's, as an operator would."""
    if IS_ROOT:
        for entry in [path, *path.rglob("*")]:
            os.lchown(entry, NOBODY.pw_uid, NOBODY.pw_gid)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@dataclass(frozen=True)
class Site:
    top: Path
    data: Path
    roots: Path
    repo: Path
    outside: Path

    def settings(self, **extra: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": self.data, "workspace_roots": [self.roots]}
        return Settings(**(values | extra))

    def plan_context(
        self, profiles: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any
    ) -> PlanContext:
        stored = {n: ShellProfile.model_validate(d) for n, d in (profiles or {}).items()}
        return PlanContext.from_settings(
            self.settings(**settings), shell_profiles=StaticShellProfiles(stored)
        )

    def apply_context(
        self, profiles: Mapping[str, Mapping[str, Any]] | None = None, *, fence: int = 1, **s: Any
    ) -> ApplyContext:
        return ApplyContext(self.plan_context(profiles, **s), task_id="task-1", fence=fence)

    def task(self, profile: str, cwd: Path | None = None, **params: Any) -> dict[str, Any]:
        return {"profile": profile, "params": params, "cwd": str(cwd or self.repo)}

    def database_digest(self) -> bytes:
        return (self.data / "ade.db").read_bytes()


@contextlib.contextmanager
def site() -> Iterator[Site]:
    """The tree; the data directory is left world-readable on purpose, so that what
    keeps a preview out of it is the sandbox, not its permissions."""
    top = Path(tempfile.mkdtemp(prefix="ade-shell-", dir="/tmp"))
    try:
        top.chmod(0o755)
        data, roots, outside = top / "data", top / "workspaces", top / "outside"
        for directory in (data, roots, outside):
            directory.mkdir(mode=0o755)
            directory.chmod(0o755)
        (data / "demo-tokens.json").write_text(f'{{"alice": "{TOKEN}"}}\n')
        (data / "secret.key").write_text(SECRET)
        with contextlib.closing(sqlite3.connect(data / "ade.db")) as connection:
            connection.execute("CREATE TABLE users (name TEXT, role TEXT)")
            connection.execute("INSERT INTO users VALUES ('alice', 'submitter')")
            connection.commit()
        for name in ("demo-tokens.json", "secret.key", "ade.db"):
            (data / name).chmod(0o666)
        repo = roots / "repo"
        repo.mkdir()
        _git(repo, "init", "-q", "-b", "main")
        (repo / "app.conf").write_text("debug = false\n")
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", "base")
        _give_to_shell_user(repo)
        _give_to_shell_user(outside)
        yield Site(top, data, roots, repo, outside)
    finally:
        shutil.rmtree(top, ignore_errors=True)
