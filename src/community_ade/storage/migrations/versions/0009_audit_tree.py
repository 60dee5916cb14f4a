"""The audit log as a transparency log: Merkle tree nodes and signed checkpoints

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from community_ade.audit import chain, merkle
from community_ade.storage.models import AuditEvent

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BATCH = 1000


def upgrade() -> None:
    nodes = op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", BIGINT, autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_tree_nodes")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", BIGINT, autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoints")),
    )
    _backfill(nodes)


def _backfill(nodes: sa.Table) -> None:
    """The tree over the rows already logged, in seq order (leaf = the chain's canonical
    bytes of the row), batch by batch."""
    bind = op.get_bind()
    # The model's typed columns, so ts and data read back as the append hashed them.
    log = AuditEvent.__table__
    known: dict[tuple[int, int], bytes] = {}
    size = 0
    last = 0
    while True:
        rows = (
            bind.execute(sa.select(log).where(log.c.seq > last).order_by(log.c.seq).limit(BATCH))
            .mappings()
            .all()
        )
        if not rows:
            return
        written = []
        for row in rows:
            leaf = merkle.leaf_hash(chain.canonical(dict(row)))
            for level, index, value in merkle.new_nodes(size, leaf, merkle.lookup(known)):
                known[(level, index)] = value
                written.append({"level": level, "idx": index, "hash": value})
            size += 1
            last = row["seq"]
        bind.execute(nodes.insert(), written)
        # Keep only what later appends can still need: the roots of the current frontier.
        frontier = set(merkle.decompose(0, size))
        known = {key: value for key, value in known.items() if key in frontier}


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_tree_nodes")
