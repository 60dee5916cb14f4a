"""The audit log's Merkle tree in the database: extended by every append, read for roots
and proofs (``audit.merkle`` does the hashing; this module fetches, and names the nodes
an append completes, which ``audit.log`` writes with the row).

``extend`` runs inside the append's transaction, under the audit log's append lock, so
the tree grows exactly with the committed log (a rolled-back append takes its nodes with
it). It needs the left siblings of the new leaf: the current *frontier* (the roots of
the perfect subtrees that make up the tree). A process keeps the frontier after its own
last append, tagged with that head's ``(seq, hash)``; when the head it reads under the
lock is a different one (another process appended, or its own append was rolled back)
it reads the siblings from the table instead. The chain's hash names the whole history,
so a matching tag means a matching frontier.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.audit import merkle
from community_ade.errors import InvalidInput, NotFound
from community_ade.storage.models import AuditTreeNode

NODES_INSERT = insert(AuditTreeNode.metadata.tables[AuditTreeNode.__tablename__])
_KEY = tuple_(AuditTreeNode.level, AuditTreeNode.idx)
# Of each database (engine): (seq, hash) of this process's last append, and the frontier
# after it.
_FRONTIERS: weakref.WeakKeyDictionary[Engine, tuple[int, str, dict[tuple[int, int], bytes]]] = (
    weakref.WeakKeyDictionary()
)


def _engine(session: AsyncSession) -> Engine:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


async def fetch(
    session: AsyncSession, keys: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """The stored nodes among ``keys``, in one query."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(AuditTreeNode.level, AuditTreeNode.idx, AuditTreeNode.hash).where(_KEY.in_(wanted))
    )
    return {(level, idx): bytes(value) for level, idx, value in rows}


async def extend(
    session: AsyncSession, row: tuple[int, str], leaf_entry: bytes, head: tuple[int, str] | None
) -> list[tuple[int, int, bytes]]:
    """The nodes ``(level, idx, hash)`` that leaf ``seq - 1`` completes, for the row just
    made (``row``: its seq and hash; its canonical bytes ``leaf_entry``) after the previous
    head ``head`` (None: an empty log). The caller writes them with the row
    (``audit.log``: on PostgreSQL in the row's own statement, ``NODES_INSERT`` else)."""
    seq = row[0]
    size = seq - 1
    engine = _engine(session)
    cached = _FRONTIERS.get(engine)
    if head is not None and cached is not None and cached[:2] == head:
        frontier = cached[2]
    else:
        frontier = await fetch(session, merkle.decompose(0, size))
    if len(frontier) != len(list(merkle.decompose(0, size))):
        raise InvalidInput(
            f"the audit tree is missing nodes below size {size}: run the migrations "
            "(ade db upgrade) or restore the audit_tree_nodes table"
        )
    completed = merkle.new_nodes(size, merkle.leaf_hash(leaf_entry), merkle.lookup(frontier))
    known = {**frontier, **{(lv, i): h for lv, i, h in completed}}
    # Kept before the row is written: tagged with the new row, it is only used after a
    # head with that (seq, hash), which exists only if the write committed.
    _FRONTIERS[engine] = (seq, row[1], {k: known[k] for k in merkle.decompose(0, seq)})
    return completed


@dataclass(frozen=True)
class Tree:
    """Reads of the stored tree, for one session."""

    session: AsyncSession

    async def size(self) -> int:
        """Leaves in the tree: the number of level-0 nodes (= the audit log's head seq)."""
        found = await self.session.scalar(
            select(AuditTreeNode.idx)
            .where(AuditTreeNode.level == 0)
            .order_by(AuditTreeNode.idx.desc())
            .limit(1)
        )
        return 0 if found is None else int(found) + 1

    async def root(self, size: int) -> bytes:
        await self._check(size)
        nodes = await fetch(self.session, merkle.decompose(0, size))
        return merkle.root(size, merkle.lookup(nodes))

    async def inclusion(self, index: int, size: int) -> list[bytes]:
        await self._check(size)
        if not 0 <= index < size:
            raise InvalidInput(f"entry {index + 1} is not in the log of size {size}")
        nodes = await fetch(
            self.session, merkle.needed(lambda node: merkle.inclusion_proof(index, size, node))
        )
        return merkle.inclusion_proof(index, size, merkle.lookup(nodes))

    async def consistency(self, old: int, new: int) -> list[bytes]:
        await self._check(new)
        if not 0 < old <= new:
            raise InvalidInput(f"no consistency proof from size {old} to {new}")
        nodes = await fetch(
            self.session, merkle.needed(lambda node: merkle.consistency_proof(old, new, node))
        )
        return merkle.consistency_proof(old, new, merkle.lookup(nodes))

    async def _check(self, size: int) -> None:
        if size < 0:
            raise InvalidInput("a tree size is not negative")
        current = await self.size()
        if size > current:
            raise NotFound(f"the log has {current} entries, not {size}")
