"""CI's variant of the fault campaign (``bench/chaos.py --quick``, issue 12 §1): two API
servers, three workers, a private redis-server and a fresh PostgreSQL database, real
processes all; at least 20 faults while 100 tasks are submitted; then no task applied
twice, lost, left unfinished or half-undone, no lock left held, no traceback, no process
that exited by itself, and the audit chain intact.

``CI_KINDS`` are the fault kinds CI injects: all six, the issue's target (bench/README.md,
"Fault campaign", lists what the campaign found and the fix of each). ``bench/chaos.py
--kinds ...`` runs any set by hand."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEFAULT_DATABASE_URL, unavailable
from lockutil import PrivateRedis
from sqlalchemy.engine import make_url

CHAOS = Path(__file__).parents[2] / "bench" / "chaos.py"
CI_KINDS = "worker-kill,worker-stop,api-kill,redis-restart-persist,redis-restart-empty,db-terminate"
MUST_BE_ZERO = (
    "double_applies",
    "lost",
    "stray_effects",
    "stuck",
    "unsubmitted",
    "orphaned_locks",
    "tracebacks",
    "crashes",
)


async def postgres_answers(url: str) -> str | None:
    """Why the PostgreSQL server of ``url`` cannot be used, or None."""
    import asyncpg  # type: ignore[import-untyped]

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL answers at {dsn} ({exc}); set ADE_TEST_DATABASE_URL"
    await connection.close()
    return None


@pytest.mark.slow
@pytest.mark.timeout(450)
def test_the_quick_fault_campaign_finds_nothing() -> None:
    database_url = os.environ.get("ADE_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    if PrivateRedis.binary() is None:
        unavailable("no redis-server binary for the campaign's private Redis")
    if shutil.which("git") is None:
        unavailable("no git for the campaign's git.patch tasks")
    problem = asyncio.run(postgres_answers(database_url))
    if problem is not None:
        unavailable(problem)

    done = subprocess.run(
        [
            sys.executable,
            str(CHAOS),
            "--quick",
            "--kinds",
            CI_KINDS,
            "--database-url",
            database_url,
        ],
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"no report (exit {done.returncode}):\n{done.stderr[-5000:]}"
    result = json.loads(lines[-1])
    context = f"{lines[-1]}\n{done.stderr[-5000:]}"
    assert result["faults"] >= 20, context
    assert result["tasks"] >= 100, context
    assert {key: result[key] for key in MUST_BE_ZERO} == dict.fromkeys(MUST_BE_ZERO, 0), context
    assert result["audit_ok"], context
    assert done.returncode == 0, context
