"""the execution record of a task: snapshot, rollback outcome, error, timings, worker

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)

COLUMNS = (
    ("snapshot", Json),
    ("rollback_outcome", sa.String(32)),
    ("last_error", sa.Text()),
    ("worker_id", sa.String(200)),
    ("apply_requested_at", Timestamp),
    ("apply_started_at", Timestamp),
    ("finished_at", Timestamp),
    ("duration_ms", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
