"""The verdict of the fault campaign (``bench/chaos.py``): what each task was meant to
do, and whether the repositories, the files, the locks and the logs show it done exactly
once, or not at all, as its final state says."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "REJECTED", "EXPIRED"})
OPEN_STATES = frozenset({"APPROVED", "APPLYING", "SUBMITTED"})
"""States in which a task may rightly hold or wait for its locks."""
TRACEBACK = "Traceback (most recent call last):"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID = re.compile(rf"{_UUID.pattern}|\b[0-9a-f]{{12,}}\b")
_CHAINED = ("During handling of the above exception", "The above exception was the direct")


@dataclass
class Intent:
    """One task the client submits: a new file ``path`` with ``content`` (git: committed
    on ``main`` of ``repo``, whose work tree has it checked out; files: written over
    ``before``, None when the file did not exist)."""

    seq: int
    kind: str  # "git" | "files"
    task_type: str
    payload: dict[str, Any]
    resources: list[dict[str, Any]]
    path: Path
    content: str
    before: str | None = None
    repo: Path | None = None
    task_id: str | None = None
    submitted: bool = False
    error: str | None = None
    unfinished: str | None = None  # its state when the wait for the tasks gave up


@dataclass
class Findings:
    double_applies: list[str]
    lost: list[str]
    stray_effects: list[str]
    stuck: list[str]
    unsubmitted: list[str]

    def counts(self) -> dict[str, int]:
        return {name: len(items) for name, items in vars(self).items()}

    def task_ids(self) -> list[str]:
        """The ids of the tasks named in the findings, each once."""
        named = (_UUID.search(item) for items in vars(self).values() for item in items)
        return list(dict.fromkeys(found[0] for found in named if found))

    def examples(self, each: int = 3) -> dict[str, list[str]]:
        return {name: items[:each] for name, items in vars(self).items() if items}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def trailer_counts(repo: Path) -> Counter[str]:
    """How often each task id appears as an ``ADE-Task`` trailer on ``main``."""
    found: Counter[str] = Counter()
    for line in git(repo, "log", "--format=%B", "main").splitlines():
        if line.startswith("ADE-Task: "):
            found[line.removeprefix("ADE-Task: ").strip()] += 1
    return found


def _content(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def judge(intents: list[Intent], states: dict[str, str]) -> Findings:
    """Each submitted task against its final state: a COMPLETED one's effect exactly once
    (git: its trailer once on the branch, its file in the work tree; files: the approved
    content), any other's effect not at all (the file as it was before), except an
    APPLYING one's, which is in doubt (and the task stuck)."""
    trailers: Counter[str] = Counter()
    for repo in {i.repo for i in intents if i.repo is not None}:
        trailers.update(trailer_counts(repo))
    found = Findings([], [], [], [], [])
    for intent in intents:
        label = f"#{intent.seq} {intent.task_type} {intent.task_id}"
        if intent.task_id is None or not intent.submitted:
            found.unsubmitted.append(f"#{intent.seq} {intent.task_type}: {intent.error}")
            continue
        state = states.get(intent.task_id)
        if state is None:
            found.lost.append(f"{label}: acknowledged by the API, not in the database")
            continue
        if state not in FINAL_STATES or intent.unfinished:
            found.stuck.append(f"{label}: {intent.unfinished or state} at the end of the wait")
        applied = _content(intent.path) == intent.content
        commits = trailers[intent.task_id] if intent.kind == "git" else int(applied)
        if commits > 1:
            found.double_applies.append(f"{label}: {state}, trailer on main {commits} times")
        if state == "COMPLETED" and (commits == 0 or not applied):
            found.lost.append(f"{label}: COMPLETED, trailers {commits}, file applied {applied}")
        elif state not in ("COMPLETED", "APPLYING") and (
            commits or _content(intent.path) != intent.before
        ):  # (an APPLYING task's effect may rightly be there or not: it is stuck)
            found.stray_effects.append(
                f"{label}: {state}, trailers {commits}, file {_content(intent.path)!r}"
            )
    return found


def held_locks(listing: str) -> list[tuple[str, str]]:
    """The grants ``ade locks list --json`` shows: (resource, lock task) of each holder;
    a worker's lock task is ``<task id>/<stream entry>``."""
    return [
        (resource["resource"], str(holder.get("task")))
        for domain in json.loads(listing)
        for resource in domain["resources"]
        for holder in resource["holders"]
    ]


@dataclass(frozen=True)
class Traceback:
    log: str
    context: str  # the log line before it: who reported it, if anyone
    exception: str  # its last exception line

    def kind(self) -> str:
        """What it was and who reported it, ids masked: tracebacks of one kind group."""
        text = f"{self.exception[:160]}  [after: {self.context[:120]}]"
        return _ID.sub("<id>", text)


def _final_exception(lines: list[str], start: int) -> str:
    """The last exception line of the traceback (chain) whose header is ``lines[start]``."""
    exception = "?"
    i = start + 1
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.startswith((" ", "\t", *_CHAINED)) or TRACEBACK in line:
            continue
        exception = line
        following = next((x for x in lines[i:] if x.strip()), "")
        if not following.startswith(_CHAINED):
            break
    return exception


def tracebacks(logs: list[Path]) -> list[Traceback]:
    """Every traceback printed in ``logs`` (a chained one counts once)."""
    found = []
    for path in logs:
        if not path.exists():
            continue
        lines = path.read_text(errors="replace").splitlines()
        for n, line in enumerate(lines):
            if not line.rstrip().endswith(TRACEBACK):  # uvicorn prefixes "ERROR:    "
                continue
            before = [x for x in lines[max(0, n - 3) : n] if x.strip()]
            if before and before[-1].startswith(_CHAINED):
                continue
            context = before[-1] if before else ""
            found.append(Traceback(path.name, context, _final_exception(lines, n)))
    return found
