"""OpenID Connect identities of users; scopes and authentication time of API tokens

Existing tokens get no scopes (NULL: every right of their holder, as before) and no
authentication time.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("oidc_issuer", sa.String(500), nullable=True))
        batch.add_column(sa.Column("oidc_subject", sa.String(255), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_users_oidc_issuer"), ["oidc_issuer", "oidc_subject"]
        )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("scopes", sa.String(100), nullable=True))
        batch.add_column(sa.Column("auth_time", Timestamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("auth_time")
        batch.drop_column("scopes")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("uq_users_oidc_issuer"), type_="unique")
        batch.drop_column("oidc_subject")
        batch.drop_column("oidc_issuer")
