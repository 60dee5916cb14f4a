"""Transparency-log receipts of a task, in its approval view: the list (what the page
shows) and the downloads, files that ``ade audit verify-receipt FILE --key KEY`` checks
offline (docs/audit.md). The visitor needs read access to the task, as for the API's
``GET /api/v1/tasks/{id}/receipts``."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.api.deps import AuditSignerDep, SessionDep, TasksDep
from community_ade.api.schemas import MAX_SEQ
from community_ade.audit import checkpoints
from community_ade.audit.notes import Signer
from community_ade.dashboard.web import PAGE_HEADERS, PageRoute, VisitorDep
from community_ade.errors import NotFound
from community_ade.storage.models import Task

router = APIRouter(route_class=PageRoute)

SizeQuery = Annotated[int | None, Query(ge=1, le=MAX_SEQ)]


@dataclass(frozen=True)
class ReceiptRow:
    """One line of the page's Receipts section."""

    seq: int
    type: str
    checkpoint_size: int
    href: str

    @property
    def index(self) -> int:
        return self.seq - 1


@dataclass(frozen=True)
class ReceiptList:
    rows: list[ReceiptRow]
    all_href: str


async def receipt_list(session: AsyncSession, signer: Signer, task: Task) -> ReceiptList:
    """The task's receipts under one checkpoint that covers them all (signed now if the
    newest does not). The links name that checkpoint's size, so a download holds exactly
    the receipt the page listed, however the log grew since."""
    entries = await checkpoints.receipt_entries(session, f"task:{task.id}")
    if not entries:
        return ReceiptList([], "")
    size = (await checkpoints.covering(session, signer, entries[-1][0])).size
    base = f"/tasks/{task.id}/receipts"
    rows = [ReceiptRow(seq, kind, size, f"{base}/{seq}?size={size}") for seq, kind in entries]
    return ReceiptList(rows, f"{base}?size={size}")


def _attachment(document: Any, filename: str) -> Response:
    return Response(
        json.dumps(document, indent=2) + "\n",
        media_type="application/json",
        headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/tasks/{task_id}/receipts")
async def download_all(
    task_id: uuid.UUID,
    visitor: VisitorDep,
    session: SessionDep,
    tasks: TasksDep,
    signer: AuditSignerDep,
    size: SizeQuery = None,
) -> Response:
    """Every receipt of the task, one JSON list (``verify-receipt`` checks each)."""
    task = await tasks.get(visitor.principal, task_id)
    entries = await checkpoints.receipt_entries(session, f"task:{task.id}")
    if size is None and entries:
        size = (await checkpoints.covering(session, signer, entries[-1][0])).size
    found = [await checkpoints.receipt(session, signer, seq, size) for seq, _ in entries]
    return _attachment(found, f"receipts-{task.id}.json")


@router.get("/tasks/{task_id}/receipts/{seq}")
async def download_one(
    task_id: uuid.UUID,
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ)],
    visitor: VisitorDep,
    session: SessionDep,
    tasks: TasksDep,
    signer: AuditSignerDep,
    size: SizeQuery = None,
) -> Response:
    """The receipt of entry ``seq`` of this task (under the checkpoint of ``size``)."""
    task = await tasks.get(visitor.principal, task_id)
    offered = {s for s, _ in await checkpoints.receipt_entries(session, f"task:{task.id}")}
    if seq not in offered:  # only this task's decisions and apply, never another entry
        raise NotFound(f"task {task.id} has no receipt for audit entry {seq}")
    found = await checkpoints.receipt(session, signer, seq, size)
    return _attachment(found, f"receipt-{task.id}-{seq}.json")
