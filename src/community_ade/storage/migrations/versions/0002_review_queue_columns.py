"""review queue columns: who may review a task, queryable without reading requirements

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 00:19:13.532111
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_review_groups",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("group_name", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_review_groups_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "group_name", name=op.f("pk_task_review_groups")),
    )
    op.create_index(op.f("ix_task_review_groups_group_name"), "task_review_groups", ["group_name"])
    # Batch mode: SQLite rebuilds the table; PostgreSQL alters it in place.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("review_any", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index("ix_tasks_state_submitted_at", ["state", "submitted_at"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_state_submitted_at")
        batch.drop_column("review_any")
    op.drop_index(op.f("ix_task_review_groups_group_name"), table_name="task_review_groups")
    op.drop_table("task_review_groups")
