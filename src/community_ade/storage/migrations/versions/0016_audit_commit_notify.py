"""Tell every process when audit rows commit (PostgreSQL NOTIFY)

A statement-level trigger on ``audit_log`` issues ``NOTIFY ade_audit_appended``; the
notification is delivered when the appending transaction commits (never for one that
rolls back), to every connection that LISTENs: each process's events relay wakes at
once, whichever process committed, instead of at its next poll. SQLite has no NOTIFY
(and one process at a time): nothing to do there.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE FUNCTION ade_notify_audit_appended() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN PERFORM pg_notify('ade_audit_appended', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_log_appended AFTER INSERT ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION ade_notify_audit_appended()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER audit_log_appended ON audit_log")
    op.execute("DROP FUNCTION ade_notify_audit_appended()")
