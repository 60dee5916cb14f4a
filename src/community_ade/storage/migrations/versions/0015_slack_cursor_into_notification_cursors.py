"""The Slack poster's audit-log cursor moves into ``notification_cursors`` (row
``slack``, beside the e-mail sender's ``email``); ``slack_cursor``, its single-row twin,
goes.

The position is copied, so the poster carries on where it was; a ``slack`` row already
there is kept. Downgrading recreates ``slack_cursor`` and moves the position back.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # The poster only ever wrote row 1.
    op.execute(
        "INSERT INTO notification_cursors (name, seq) "
        "SELECT 'slack', seq FROM slack_cursor WHERE id = 1 "
        "AND NOT EXISTS (SELECT 1 FROM notification_cursors WHERE name = 'slack')"
    )
    op.drop_table("slack_cursor")


def downgrade() -> None:
    op.create_table(
        "slack_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_cursor")),
    )
    op.execute(
        "INSERT INTO slack_cursor (id, seq) "
        "SELECT 1, seq FROM notification_cursors WHERE name = 'slack'"
    )
    op.execute("DELETE FROM notification_cursors WHERE name = 'slack'")
