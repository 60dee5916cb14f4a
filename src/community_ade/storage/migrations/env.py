"""Alembic environment. Migrations run on a connection the caller passes in
(``storage.db.upgrade``), so the same code serves ``ade db upgrade``, the automatic
upgrade of the embedded default, and the tests."""

from __future__ import annotations

from alembic import context

from community_ade.storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through community_ade.storage.db (ade db upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
