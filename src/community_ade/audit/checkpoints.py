"""Signed checkpoints of the audit log, and receipts that prove an entry is in it.

A checkpoint (``audit.notes``) names the tree's size and root at one moment, signed with
the deployment's Ed25519 key. They are made every ``ADE_AUDIT_CHECKPOINT_ENTRIES``
entries or ``ADE_AUDIT_CHECKPOINT_SECONDS`` (``checkpoint_forever``, in every ``ade
serve``) and on demand. Two checkpoints can never disagree: each is computed from the
append-only node table at its size, and the table allows one checkpoint per size (a
second server signing the same size finds the first one's and uses it).

A receipt of entry ``seq`` is the entry (the audit row), and a ``c2sp.org/tlog-proof@v1``
text: its inclusion proof under a checkpoint that covers it (a new one is signed when the
newest does not yet). Anyone holding the log's public key checks it offline.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.audit import merkle, notes
from community_ade.audit.chain import HASHED_FIELDS, canonical, normalise
from community_ade.audit.keys import decode_key, ed25519_key
from community_ade.audit.tree import Tree, fetch
from community_ade.errors import NotFound
from community_ade.events.system import publish
from community_ade.infra.aio import Incident, stop_if_cancelled
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage.models import AuditCheckpoint, AuditEvent, utcnow

log = logging.getLogger(__name__)

KEY_FILE = "audit-signing.key"
# The entries a receipt is offered for: what was submitted for review, every decision on
# it (votes, the final approval, rejection, changes requested, expiry, and the system's
# timeout outcomes: escalation, re-review) and its apply.
RECEIPT_TYPES = frozenset(
    {
        "task:submitted",
        "approval:decision",
        "approval:approved",
        "approval:rejected",
        "approval:changes_requested",
        "approval:expired",
        "approval:escalated",
        "approval:re_review",
        "task:applying",
        "task:completed",
        "task:failed",
    }
)
VERIFY_BATCH = 2000  # tree nodes compared with the stored ones per query
_INSERT = insert(AuditCheckpoint.metadata.tables[AuditCheckpoint.__tablename__])


def log_signer(settings: Settings) -> notes.Signer:
    """The deployment's checkpoint signer: its key (``ADE_AUDIT_SIGNING_KEY`` or the key
    file) under its origin name (``ADE_AUDIT_ORIGIN`` or one derived from the key)."""
    if settings.audit_signing_key is not None:
        key = decode_key(settings.audit_signing_key.get_secret_value(), "ADE_AUDIT_SIGNING_KEY")
    else:
        key = ed25519_key(settings.data_dir / KEY_FILE)
    origin = settings.audit_origin
    if origin is None:
        public = notes.Signer("community-ade", key).verifier.public
        origin = f"community-ade/{notes.key_id('community-ade', notes.ED25519, public).hex()}"
    return notes.Signer(origin, key)


@dataclass(frozen=True)
class Signed:
    size: int
    root: bytes
    note: str

    def document(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": base64.b64encode(self.root).decode("ascii"),
            "note": self.note,
        }


def _signed(row: AuditCheckpoint) -> Signed:
    return Signed(int(row.size), bytes(row.root), row.note)


async def latest(session: AsyncSession) -> Signed | None:
    row = await session.scalar(
        select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
    )
    return None if row is None else _signed(row)


async def at_size(session: AsyncSession, size: int) -> Signed | None:
    row = await session.get(AuditCheckpoint, size)
    return None if row is None else _signed(row)


async def make(session: AsyncSession, signer: notes.Signer, size: int | None = None) -> Signed:
    """The checkpoint of the log at ``size`` (default: now), signed and stored once."""
    tree = Tree(session)
    size = await tree.size() if size is None else size
    if size == 0:
        raise NotFound("the audit log is empty: there is nothing to checkpoint yet")
    found = await at_size(session, size)
    if found is not None:
        return found
    root = await tree.root(size)
    note = signer.sign(notes.Checkpoint(signer.name, size, root).text())
    try:
        async with session.begin_nested():
            await session.execute(
                _INSERT, {"size": size, "root": root, "note": note, "created_at": utcnow()}
            )
    except IntegrityError:  # another server signed this size first: the same root
        found = await at_size(session, size)
        if found is None:
            raise
        return found
    return Signed(size, root, note)


async def entry_of(session: AsyncSession, seq: int) -> dict[str, Any]:
    """The audit row ``seq`` as a receipt carries it (the chain's hashed fields + hash)."""
    row = await session.get(AuditEvent, seq)
    if row is None:
        raise NotFound(f"no audit entry {seq}")
    return {
        **{name: normalise(getattr(row, name), name) for name in HASHED_FIELDS},
        "hash": row.hash,
    }


async def covering(session: AsyncSession, signer: notes.Signer, seq: int) -> Signed:
    """The newest checkpoint if it covers entry ``seq``, else a new one of the log now."""
    checkpoint = await latest(session)
    if checkpoint is None or checkpoint.size < seq:
        checkpoint = await make(session, signer)
    return checkpoint


async def receipt(
    session: AsyncSession, signer: notes.Signer, seq: int, size: int | None = None
) -> dict[str, Any]:
    """The receipt of entry ``seq``: the entry, its leaf index and a tlog-proof text
    under the checkpoint of ``size`` (default: ``covering``). The same ``size`` always
    gives the same receipt, so a page can show what a later download will hold."""
    entry = await entry_of(session, seq)
    if size is None:
        checkpoint = await covering(session, signer, seq)
    else:
        found = await at_size(session, size) if size >= seq else None
        if found is None:
            raise NotFound(f"no checkpoint of size {size} covering entry {seq}")
        checkpoint = found
    proof = await Tree(session).inclusion(seq - 1, checkpoint.size)
    return {
        "format": notes.PROOF_HEADER,
        "origin": signer.name,
        "entry": entry,
        "index": seq - 1,
        "checkpoint": checkpoint.document(),
        "proof": notes.proof_text(seq - 1, proof, checkpoint.note),
    }


async def receipt_entries(session: AsyncSession, subject: str) -> list[tuple[int, str]]:
    """``(seq, type)`` of the entries about ``subject`` that receipts are offered for."""
    rows = await session.execute(
        select(AuditEvent.seq, AuditEvent.type)
        .where(AuditEvent.subject == subject, AuditEvent.type.in_(RECEIPT_TYPES))
        .order_by(AuditEvent.seq)
    )
    return [(int(seq), str(event_type)) for seq, event_type in rows.all()]


# -- the periodic signer -------------------------------------------------------------------


async def _due(session: AsyncSession, settings: Settings) -> int | None:
    """The size to checkpoint now, if the log grew enough or grew and the newest
    checkpoint is old; None otherwise."""
    size = await Tree(session).size()
    row = await session.scalar(
        select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
    )
    if size == 0 or (row is not None and row.size >= size):
        return None
    young = row is not None and (
        (utcnow() - row.created_at).total_seconds() < settings.audit_checkpoint_seconds
    )
    if row is not None and young and size - row.size < settings.audit_checkpoint_entries:
        return None
    return size


async def checkpoint_once(runtime: Runtime, signer: notes.Signer) -> Signed | None:
    """Sign a checkpoint if one is due (``_due``), and announce it (``audit:checkpoint``)."""
    settings = runtime.settings
    async with runtime.sessions() as session:  # a short read decides; most passes end here
        size = await _due(session, settings)
    if size is None:
        return None
    async with runtime.sessions.begin() as session:
        made = await make(session, signer, size)
    await publish(
        runtime.redis,
        settings.lock_domain,
        "audit:checkpoint",
        f"audit:{made.size}",
        made.document(),
    )
    return made


async def checkpoint_forever(runtime: Runtime) -> None:
    """``checkpoint_once`` every few seconds until cancelled; a failing pass (the
    database or Redis briefly away) is logged once per incident and retried."""
    signer = log_signer(runtime.settings)
    period = min(5.0, runtime.settings.audit_checkpoint_seconds)
    incident = Incident("audit checkpoints", log)
    while True:
        stop_if_cancelled()
        try:
            await checkpoint_once(runtime, signer)
        except Exception as exc:
            await asyncio.sleep(max(period, incident.failed(exc)))
            continue
        incident.cleared()
        await asyncio.sleep(period)


async def verify_tree(session: AsyncSession, verifier: notes.Verifier) -> str | None:
    """Check the stored tree against the newest checkpoint: its signature, the root
    recomputed from the audit rows themselves, and the root of the stored nodes. None
    when all agree (or there is no checkpoint yet), else what is wrong."""
    newest = await latest(session)
    if newest is None:
        return None
    try:
        signed = notes.verified_checkpoint(newest.note, verifier)
    except notes.NoteError as exc:
        return f"checkpoint {newest.size}: {exc}"
    if (signed.size, signed.root) != (newest.size, newest.root):
        return f"checkpoint {newest.size}: its stored root differs from its signed note"
    frontier: dict[tuple[int, int], bytes] = {}
    computed: dict[tuple[int, int], bytes] = {}
    size = 0
    rows = await session.stream(
        select(AuditEvent).where(AuditEvent.seq <= newest.size).order_by(AuditEvent.seq)
    )
    async for (row,) in rows:
        if row.seq != size + 1:
            return f"the log has no entry {size + 1} below checkpoint {newest.size}"
        leaf = merkle.leaf_hash(canonical({name: getattr(row, name) for name in HASHED_FIELDS}))
        for level, index, value in merkle.new_nodes(size, leaf, merkle.lookup(frontier)):
            frontier[(level, index)] = computed[(level, index)] = value
        size += 1
        frontier = {k: frontier[k] for k in merkle.decompose(0, size)}
        if len(computed) >= VERIFY_BATCH:
            problem = await _compare_nodes(session, computed)
            if problem is not None:
                return problem
            computed = {}
    if size != newest.size:
        return f"the log holds {size} entries, fewer than checkpoint {newest.size} signed"
    if merkle.root(size, merkle.lookup(frontier)) != newest.root:
        return f"the entries up to {size} do not hash to the root checkpoint {size} signed"
    return await _compare_nodes(session, computed)


async def _compare_nodes(
    session: AsyncSession, computed: dict[tuple[int, int], bytes]
) -> str | None:
    """The first stored node that differs from the one recomputed from the entries."""
    stored = await fetch(session, computed)
    for key in sorted(computed):
        if stored.get(key) != computed[key]:
            level, index = key
            return f"stored tree node (level {level}, index {index}) differs from the entries"
    return None
