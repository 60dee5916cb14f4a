"""shell_profiles: admins' shell profiles (argv templates with typed parameters)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shell_profiles",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("document", Json, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_shell_profiles_updated_by_users")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_shell_profiles")),
    )


def downgrade() -> None:
    op.drop_table("shell_profiles")
