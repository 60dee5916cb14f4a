"""A test-only executor plugin, ``test.slow_append``, installed for the fault tests as a
real entry point (a ``*.dist-info`` written at test time, see ``install_slow_plugin``).

It appends one line to a file after sleeping in a thread, the way a real target write is
a blocking step that asyncio cannot interrupt half-way. The file's fence record
(``<file>.fence``) refuses a writer (apply or rollback) older than the newest one seen; a
refused writer is logged to ``<file>.refused``, so a test can see that the stale worker
tried and failed.

Payload: ``{"path": "/abs/file", "line": "text", "seconds": 3}``, optionally
``"fail": "transient" | "permanent"`` and ``"fail_times": n`` (default: always): the apply
writes its line, then fails (counting attempts in ``<file>.attempts``), so the rollback
has something to undo; ``"snapshot_fail_times": n``: the first n snapshots fail
transiently.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from community_ade.errors import FenceRejected
from community_ade.execution.executors.base import (
    ApplyContext,
    ApplyFailed,
    ApplyResult,
    FieldError,
    Plan,
    PlanContext,
    RollbackOutcome,
    Snapshot,
    ValidationReport,
)

TASK_TYPE = "test.slow_append"


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _fence(path: Path, fence: int) -> None:
    """Check ``fence`` against the file's record and record it, as real executors do."""
    record = Path(f"{path}.fence")
    newest = int(record.read_text()) if record.exists() else 0
    if fence < newest:
        with Path(f"{path}.refused").open("a") as refused:
            refused.write(f"{fence}\n")
        raise FenceRejected(f"fence {fence} is older than {newest}", fence=fence, newest=newest)
    record.write_text(str(fence))


def _append(path: Path, line: str, seconds: float, fence: int) -> None:
    time.sleep(seconds)
    _fence(path, fence)
    with path.open("a") as target:
        target.write(line + "\n")


def _count_attempt(path: Path) -> int:
    counter = Path(f"{path}.attempts")
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    return count


def _count_snapshot(path: Path) -> int:
    counter = Path(f"{path}.snapshots")
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    return count


def _restore(path: Path, content: str | None, fence: int) -> RollbackOutcome:
    _fence(path, fence)
    if _read(path) == content:
        return "nothing_to_roll_back"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    return "rolled_back"


class SlowAppend:
    task_type = TASK_TYPE

    def validate(self, payload: Mapping[str, Any]) -> ValidationReport:
        errors = [
            FieldError(key, "required") for key in ("path", "line", "seconds") if key not in payload
        ]
        return ValidationReport.of(errors)

    async def plan(self, payload: Mapping[str, Any], context: PlanContext) -> Plan:
        self.validate(payload).raise_if_invalid(TASK_TYPE)
        path = Path(payload["path"])
        context.confine(str(path.parent), task_type=TASK_TYPE, field_path="path")
        current = _read(path) or ""
        return Plan.build(
            preview=f"append {payload['line']!r} to {path}",
            format="text",
            precondition_fingerprint=hashlib.sha256(current.encode()).hexdigest(),
            lines_changed=1,
            summary="append a line",
        )

    async def snapshot(
        self, payload: Mapping[str, Any], plan: Plan, context: ApplyContext
    ) -> Snapshot:
        path = Path(payload["path"])
        if payload.get("snapshot_fail_times", 0) >= await asyncio.to_thread(_count_snapshot, path):
            raise ApplyFailed("the target is busy", transient=True)
        return Snapshot(TASK_TYPE, {"content": _read(path)})

    async def apply(
        self, payload: Mapping[str, Any], plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult:
        path = Path(payload["path"])
        seconds = float(payload["seconds"])
        await asyncio.to_thread(_append, path, str(payload["line"]), seconds, context.fence)
        fail = payload.get("fail")
        if fail and await asyncio.to_thread(_count_attempt, path) <= payload.get("fail_times", 99):
            raise ApplyFailed(f"{fail} failure", transient=fail == "transient", exit_code=7)
        return ApplyResult(summary=f"appended to {path}", details={"fence": str(context.fence)})

    async def rollback(
        self, payload: Mapping[str, Any], snapshot: Snapshot, context: ApplyContext
    ) -> RollbackOutcome:
        return await asyncio.to_thread(
            _restore, Path(payload["path"]), snapshot.data.get("content"), context.fence
        )


def install_slow_plugin(site: Path) -> None:
    """Write a ``*.dist-info`` into ``site`` whose entry point is this executor: with
    ``site`` and this file's directory on ``sys.path``, the registry finds it."""
    info = site / "ade_test_slow_plugin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ade-test-slow-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        f"[community_ade.executors]\n{TASK_TYPE} = slow_write_plugin:SlowAppend\n"
    )
