"""The audit log as a transparency log: signed checkpoints, inclusion and consistency
proofs, per-task receipts, and the public key (docs/audit.md).

Checkpoints, consistency proofs and the key are public (hashes and sizes only): a
witness in another organisation needs no account here. Inclusion proofs and receipts
name entries, so they need ``audit_read`` (receipts: read access to the task)."""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from community_ade.api.deps import AuditSignerDep, PrincipalDep, SessionDep, TasksDep
from community_ade.api.schemas import MAX_SEQ
from community_ade.audit import checkpoints
from community_ade.audit.tree import Tree
from community_ade.auth.principal import Permission, require
from community_ade.errors import NotFound

router = APIRouter(tags=["audit"])
WELL_KNOWN_KEY = "/.well-known/ade-audit-key"


def _b64(values: list[bytes]) -> list[str]:
    return [base64.b64encode(v).decode("ascii") for v in values]


@router.get(WELL_KNOWN_KEY, response_class=PlainTextResponse)
async def audit_key(signer: AuditSignerDep) -> str:
    """The checkpoints' verifier key (C2SP vkey: ``<origin>+<key id>+<base64 key>``)."""
    return signer.verifier.encode() + "\n"


@router.get("/api/v1/audit/checkpoint")
async def get_checkpoint(session: SessionDep) -> dict[str, Any]:
    """The newest signed checkpoint: ``{size, root, note}`` (``note`` is the C2SP signed
    note). Public."""
    found = await checkpoints.latest(session)
    if found is None:
        raise NotFound("no checkpoint yet: POST /api/v1/audit/checkpoint makes one")
    return found.document()


@router.post("/api/v1/audit/checkpoint")
async def make_checkpoint(
    principal: PrincipalDep, session: SessionDep, signer: AuditSignerDep
) -> dict[str, Any]:
    """Sign a checkpoint of the log as it is now (or answer the one of this size)."""
    require(principal, Permission.AUDIT_READ)
    return (await checkpoints.make(session, signer)).document()


@router.get("/api/v1/audit/consistency")
async def consistency(
    session: SessionDep,
    first: Annotated[int, Query(alias="from", ge=1, le=MAX_SEQ)],
    second: Annotated[int, Query(alias="to", ge=1, le=MAX_SEQ)],
) -> dict[str, Any]:
    """That the log of size ``to`` extends the one of size ``from`` (RFC 6962). Public."""
    proof = await Tree(session).consistency(first, second)
    return {"from": first, "to": second, "proof": _b64(proof)}


@router.get("/api/v1/audit/{seq}/proof")
async def inclusion(
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ)],
    principal: PrincipalDep,
    session: SessionDep,
    size: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
) -> dict[str, Any]:
    """The inclusion proof of entry ``seq`` in the log of ``size`` entries (default: the
    newest checkpoint's size)."""
    require(principal, Permission.AUDIT_READ)
    if size is None:
        newest = await checkpoints.latest(session)
        if newest is None or newest.size < seq:
            raise NotFound(f"no checkpoint covers entry {seq} yet: pass size, or make one")
        size = newest.size
    tree = Tree(session)
    proof = await tree.inclusion(seq - 1, size)
    root = await tree.root(size)
    return {
        "seq": seq,
        "index": seq - 1,
        "size": size,
        "root": _b64([root])[0],
        "proof": _b64(proof),
    }


@router.get("/api/v1/tasks/{task_id}/receipts")
async def task_receipts(
    task_id: uuid.UUID,
    principal: PrincipalDep,
    tasks: TasksDep,
    session: SessionDep,
    signer: AuditSignerDep,
) -> list[dict[str, Any]]:
    """A receipt for every decision on the task and its apply: the audit entry and its
    ``c2sp.org/tlog-proof@v1`` proof under a signed checkpoint, checkable offline with
    ``ade audit verify-receipt``."""
    task = await tasks.get(principal, task_id)
    return [
        await checkpoints.receipt(session, signer, seq)
        for seq, _ in await checkpoints.receipt_entries(session, f"task:{task.id}")
    ]
