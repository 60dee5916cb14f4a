"""Review clocks: reminders sent, the next reminder's time, escalation and re-review marks

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("review_opened_at", TIMESTAMP, nullable=True))
        batch.add_column(
            sa.Column("reminders_sent", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("next_reminder_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("escalated_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("re_reviewed_at", TIMESTAMP, nullable=True))
        batch.create_index(op.f("ix_tasks_next_reminder_at"), ["next_reminder_at"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index(op.f("ix_tasks_next_reminder_at"))
        for column in (
            "re_reviewed_at",
            "escalated_at",
            "next_reminder_at",
            "reminders_sent",
            "review_opened_at",
        ):
            batch.drop_column(column)
