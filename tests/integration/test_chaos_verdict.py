"""The fault campaign's verdict (``bench/chaos_checks.py``) on states and effects made by
hand: if it misjudged, the campaign would report a clean run over a broken one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).parents[2] / "bench"


@pytest.fixture(scope="module")
def checks() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    import chaos_checks

    yield chaos_checks
    sys.path.remove(str(BENCH))


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        check=True,
        capture_output=True,
    )


def commit(repo: Path, name: str, trailer: str) -> None:
    (repo / name).write_text(f"{name}\n")
    git(repo, "add", name)
    git(repo, "commit", "-qm", f"add {name}\n\nADE-Task: {trailer}\nADE-Fence: 1")


def test_judge_tells_each_wrong_outcome_apart(checks: ModuleType, tmp_path: Path) -> None:
    intent = checks.Intent
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "once", "t-once")
    commit(repo, "twice", "t-twice")
    commit(repo, "again", "t-twice")
    commit(repo, "failed", "t-failed")
    (tmp_path / "seeded").write_text("seed\n")
    (tmp_path / "written").write_text("new\n")

    def git_task(seq: int, name: str, content: str) -> Any:
        made = intent(seq, "git", "git.patch", {}, [], repo / name, content, repo=repo)
        made.task_id, made.submitted = f"t-{name}", True
        return made

    def files_task(seq: int, name: str, before: str | None) -> Any:
        made = intent(seq, "files", "files.write", {}, [], tmp_path / name, "new\n", before)
        made.task_id, made.submitted = f"f-{name}", True
        return made

    work = [
        git_task(1, "once", "once\n"),
        git_task(2, "twice", "twice\n"),
        git_task(3, "failed", "failed\n"),
        git_task(4, "missing", "missing\n"),
        files_task(5, "seeded", "seed\n"),  # FAILED and restored: fine
        files_task(6, "written", "seed\n"),  # FAILED but written: stray
        files_task(7, "absent", None),  # COMPLETED but absent: lost
    ]
    states = {
        "t-once": "COMPLETED",
        "t-twice": "COMPLETED",
        "t-failed": "FAILED",
        "t-missing": "COMPLETED",
        "f-seeded": "FAILED",
        "f-written": "FAILED",
        "f-absent": "COMPLETED",
    }
    unsent = intent(8, "files", "files.write", {}, [], tmp_path / "x", "x\n", error="create: 503")
    found = checks.judge([*work, unsent], states)
    assert found.counts() == {
        "double_applies": 1,
        "lost": 2,
        "stray_effects": 2,
        "stuck": 0,
        "unsubmitted": 1,
    }
    named = [[item.split()[2].rstrip(":") for item in items] for items in vars(found).values()]
    assert named[:3] == [["t-twice"], ["t-missing", "f-absent"], ["t-failed", "f-written"]]
    assert found.unsubmitted == ["#8 files.write: create: 503"]


def test_a_task_open_when_the_wait_ended_is_stuck(checks: ModuleType, tmp_path: Path) -> None:
    late = checks.Intent(1, "files", "files.write", {}, [], tmp_path / "a", "a\n")
    late.task_id, late.submitted, late.unfinished = "late", True, "APPROVED"
    found = checks.judge([late], {"late": "COMPLETED"})
    assert found.stuck == ["#1 files.write late: APPROVED at the end of the wait"]


LOG = """\
INFO:     Waiting for application startup.
ERROR:    Traceback (most recent call last):
  File "x.py", line 1, in <module>
OSError: refused

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "y.py", line 2, in <module>
ServiceUnavailable: cannot reach Redis
ERROR task 1234abcd-0000-0000-0000-000000000000: unexpected error; the message stays pending
Traceback (most recent call last):
  File "z.py", line 3, in f
LockLost: lock request of task 1234abcd-0000-0000-0000-000000000000/1-0 ended
INFO carrying on
"""


def test_tracebacks_are_counted_once_per_chain_with_their_last_exception(
    checks: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "serve.1.log").write_text(LOG)
    found = checks.tracebacks([tmp_path / "serve.1.log", tmp_path / "absent.log"])
    assert [(t.context, t.exception) for t in found] == [
        ("INFO:     Waiting for application startup.", "ServiceUnavailable: cannot reach Redis"),
        (
            "ERROR task 1234abcd-0000-0000-0000-000000000000: unexpected error; the message "
            "stays pending",
            "LockLost: lock request of task 1234abcd-0000-0000-0000-000000000000/1-0 ended",
        ),
    ]
    assert found[1].kind().startswith("LockLost: lock request of task <id>/1-0 ended  [after: ")


def test_held_locks_lists_every_holder(checks: ModuleType) -> None:
    listing = [
        {
            "resources": [
                {"resource": "task:t1", "holders": [{"task": "t1/1-0"}], "queue": []},
                {"resource": "storage:repo-1", "holders": [{"task": "t1/1-0"}], "queue": []},
            ]
        },
        {"resources": []},
    ]
    assert checks.held_locks(json.dumps(listing)) == [
        ("task:t1", "t1/1-0"),
        ("storage:repo-1", "t1/1-0"),
    ]
