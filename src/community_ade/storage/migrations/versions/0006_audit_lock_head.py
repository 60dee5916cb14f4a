"""PostgreSQL: ade_audit_lock_head(), the audit log's append lock and its head in one call

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Each audited transaction took the lock, then read the head: two round trips. One
# statement cannot do both (its snapshot predates the lock wait), but the statements of
# a VOLATILE function each take a new snapshot under READ COMMITTED: the head read after
# the lock sees the row its previous holder committed.
LOCK_HEAD = """
CREATE FUNCTION ade_audit_lock_head(lock_key bigint, OUT head_seq bigint, OUT head_hash text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT seq, hash INTO head_seq, head_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LOCK_HEAD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ade_audit_lock_head(bigint)")
