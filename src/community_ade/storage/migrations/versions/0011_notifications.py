"""Notifications: a user's e-mail address; Slack approvals (settings, channels, user
links, posted messages, the outbox and its audit cursor, decisions taken in Slack)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _task_id(table: str) -> sa.Column[Any]:
    return sa.Column(
        "task_id",
        sa.Uuid(),
        sa.ForeignKey("tasks.id", name=f"fk_{table}_task_id_tasks", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(254), nullable=True))
        batch.create_unique_constraint(batch.f("uq_users_email"), ["email"])
    op.create_table(
        "slack_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bot_token", sa.LargeBinary(), nullable=False),
        sa.Column("signing_secret", sa.LargeBinary(), nullable=False),
        sa.Column("default_channel", sa.String(80), nullable=True),
        sa.Column("dm_reviewers", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_by",
            sa.Uuid(),
            sa.ForeignKey("users.id", name="fk_slack_settings_updated_by_users"),
            nullable=True,
        ),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_settings")),
    )
    op.create_table(
        "slack_channels",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(80), nullable=False),
        sa.CheckConstraint("kind IN ('rule', 'group')", name=op.f("ck_slack_channels_kind")),
        sa.PrimaryKeyConstraint("kind", "name", name=op.f("pk_slack_channels")),
    )
    op.create_table(
        "slack_user_links",
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey("users.id", name="fk_slack_user_links_user_id_users", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("slack_user_id", sa.String(32), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_slack_user_links")),
        sa.UniqueConstraint("slack_user_id", name=op.f("uq_slack_user_links_slack_user_id")),
    )
    op.create_table(
        "slack_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        _task_id("slack_messages"),
        sa.Column("channel", sa.String(80), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("posted_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_messages")),
        sa.UniqueConstraint("task_id", "channel", name=op.f("uq_slack_messages_task_id")),
    )
    op.create_index(op.f("ix_slack_messages_task_id"), "slack_messages", ["task_id"])
    op.create_table(
        "slack_jobs",
        _task_id("slack_jobs"),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("remind", sa.Boolean(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_slack_jobs")),
    )
    op.create_index(op.f("ix_slack_jobs_due_at"), "slack_jobs", ["due_at"])
    op.create_table(
        "slack_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_cursor")),
    )
    op.create_table(
        "slack_actions",
        sa.Column("key", sa.String(64), nullable=False),
        _task_id("slack_actions"),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("result", sa.String(40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_actions")),
    )
    op.create_index(op.f("ix_slack_actions_task_id"), "slack_actions", ["task_id"])


def downgrade() -> None:
    for table in (
        "slack_actions",
        "slack_cursor",
        "slack_jobs",
        "slack_messages",
        "slack_user_links",
        "slack_channels",
        "slack_settings",
    ):
        op.drop_table(table)
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(batch.f("uq_users_email"), type_="unique")
        batch.drop_column("email")
