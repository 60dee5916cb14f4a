"""Real git for the executor tests: the binary, and a runner with a fixed identity."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

GIT = shutil.which("git")


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [GIT or "git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout
