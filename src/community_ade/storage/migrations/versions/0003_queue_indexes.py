"""indexes for the review queue, handed-over reviews and the failure rate

Measured by bench/api.py at 100 000 tasks: the queue's page query and count scanned the
whole task table; these let them walk only the open tasks.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('SUBMITTED', 'REVIEWING')")
FINISHED = sa.text("state IN ('COMPLETED', 'FAILED')")


def upgrade() -> None:
    op.create_index(
        "ix_tasks_open_by_submitted_at",
        "tasks",
        ["submitted_at", "id"],
        postgresql_include=["review_any", "submitter_id", "agent_id"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )
    op.create_index(
        "ix_tasks_finished_by_type",
        "tasks",
        ["type", "decided_at"],
        postgresql_where=FINISHED,
        sqlite_where=FINISHED,
    )
    op.create_index(op.f("ix_reviews_delegate_to"), "reviews", ["delegate_to"])


def downgrade() -> None:
    op.drop_index(op.f("ix_reviews_delegate_to"), table_name="reviews")
    op.drop_index("ix_tasks_finished_by_type", table_name="tasks")
    op.drop_index("ix_tasks_open_by_submitted_at", table_name="tasks")
