"""`ade locks release` ends the grants and leaves the same audit record as the API."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import run_ade
from sqlalchemy import select

from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage.models import AuditEvent


def ade(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADE_")}
    env["ADE_DATA_DIR"] = str(data_dir)
    return run_ade(env, *args, timeout=60)


async def test_cli_force_release_is_audited_and_refuses_what_is_not_held(tmp_path: Path) -> None:
    async with Runtime.open(Settings(data_dir=tmp_path)) as runtime:  # the embedded default
        grant = await runtime.locks.acquire("task-1", "agent-1", {"repo:x": "exclusive"})

        done = ade(tmp_path, "locks", "release", "repo:x", "--reason", "stuck deploy")
        assert done.returncode == 0, done.stderr
        assert "released 1 grant(s) on repo:x" in done.stdout
        await grant.lost.wait()

        again = ade(tmp_path, "locks", "release", "repo:x", "--reason", "twice")
        assert again.returncode == 1
        assert "no grant holds 'repo:x'" in again.stdout + again.stderr

        blank = ade(tmp_path, "locks", "release", "repo:y", "--reason", "  ")
        assert blank.returncode == 2

        async with runtime.sessions() as session:
            rows = (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.type == "lock:force_released")
                )
            ).all()
        assert [(r.actor_id, r.data["resource"], r.data["reason"]) for r in rows] == [
            ("cli", "repo:x", "stuck deploy")
        ]
