"""Slow twins of the built-in executors for the fault campaign (``bench/chaos.py``).

``chaos.git_patch`` and ``chaos.files_write`` plan, snapshot, apply and roll back with
the real ``git.patch`` and ``files.write`` executors, but their apply sleeps before and
after the real write (``"sleep": [before, after]`` in the payload, seconds). A real apply
takes 20-100 ms, too short for a random fault to land in; these make kills and stops
land mid-apply: before the write (the adopter must apply it) or after it (the adopter
must roll the write back first, then apply it once).

They are found the way any third-party executor is: through an entry point of the group
``community_ade.executors``, here a ``*.dist-info`` that ``install`` writes into a
directory the campaign puts on the servers' and workers' ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from community_ade.execution.executors.base import (
    ApplyContext,
    ApplyingExecutor,
    ApplyResult,
    FieldError,
    Plan,
    PlanContext,
    RollbackOutcome,
    Snapshot,
    ValidationReport,
)
from community_ade.execution.executors.files_write import FilesWriteExecutor
from community_ade.execution.executors.git_patch import GitPatchExecutor

MAX_SLEEP_SECONDS = 10.0


def _sleeps(payload: Mapping[str, Any]) -> tuple[float, float]:
    before, after = payload["sleep"]
    return float(before), float(after)


class _Slowed:
    """``inner`` with a sleep around its apply; the payload is the inner one plus
    ``sleep``. Snapshots are stored under this task type and handed back to ``inner``
    under its own (a snapshot says which executor took it)."""

    task_type: str
    inner: ApplyingExecutor

    def _inner_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payload.items() if k != "sleep"}

    def _inner_snapshot(self, snapshot: Snapshot) -> Snapshot:
        return Snapshot(self.inner.task_type, snapshot.data_of(self.task_type))

    def validate(self, payload: Mapping[str, Any]) -> ValidationReport:
        sleep = payload.get("sleep")
        ok = (
            isinstance(sleep, list)
            and len(sleep) == 2
            and all(isinstance(s, int | float) and 0 <= s <= MAX_SLEEP_SECONDS for s in sleep)
        )
        errors = [] if ok else [FieldError("sleep", "two numbers of seconds, 0-10")]
        inner = self.inner.validate(self._inner_payload(payload))
        return ValidationReport.of([*errors, *inner.errors])

    async def plan(self, payload: Mapping[str, Any], context: PlanContext) -> Plan:
        self.validate(payload).raise_if_invalid(self.task_type)
        return await self.inner.plan(self._inner_payload(payload), context)

    async def snapshot(
        self, payload: Mapping[str, Any], plan: Plan, context: ApplyContext
    ) -> Snapshot:
        taken = await self.inner.snapshot(self._inner_payload(payload), plan, context)
        return Snapshot(self.task_type, taken.data)

    async def apply(
        self, payload: Mapping[str, Any], plan: Plan, snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult:
        before, after = _sleeps(payload)
        await asyncio.sleep(before)
        inner = self._inner_payload(payload)
        result = await self.inner.apply(inner, plan, self._inner_snapshot(snapshot), context)
        await asyncio.sleep(after)
        return result

    async def rollback(
        self, payload: Mapping[str, Any], snapshot: Snapshot, context: ApplyContext
    ) -> RollbackOutcome:
        inner = self._inner_payload(payload)
        return await self.inner.rollback(inner, self._inner_snapshot(snapshot), context)


class SlowGitPatch(_Slowed):
    task_type = "chaos.git_patch"
    inner = GitPatchExecutor()

    async def built_upon(
        self, payload: Mapping[str, Any], snapshot: Snapshot, context: ApplyContext
    ) -> ApplyResult | None:
        inner = self._inner_payload(payload)
        return await self.inner.built_upon(inner, self._inner_snapshot(snapshot), context)


class SlowFilesWrite(_Slowed):
    task_type = "chaos.files_write"
    inner = FilesWriteExecutor()


SLOW_TYPES = {"git.patch": SlowGitPatch.task_type, "files.write": SlowFilesWrite.task_type}


def install(site: Path) -> None:
    """Write the entry points into ``site``: with ``site`` and this file's directory on
    ``sys.path``, the executor registry of that process finds both task types."""
    info = site / "ade_chaos_plugin-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ade-chaos-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[community_ade.executors]\n"
        f"{SlowGitPatch.task_type} = chaos_plugin:SlowGitPatch\n"
        f"{SlowFilesWrite.task_type} = chaos_plugin:SlowFilesWrite\n"
    )
