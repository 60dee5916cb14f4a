"""agents: configuration columns, versions, and the model and tool catalogue (seeded)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def agent_columns() -> tuple[sa.Column[object], ...]:
    """The configuration columns of ``agents`` (fresh objects: a Column joins one table)."""
    return (
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("tags", Json, nullable=False, server_default="[]"),
        sa.Column("model", sa.String(100), nullable=False, server_default=""),
        sa.Column("system_prompt", sa.Text(), nullable=False, server_default=""),
        sa.Column("tools", Json, nullable=False, server_default="[]"),
        sa.Column("parameters", Json, nullable=False, server_default="{}"),
        sa.Column("capacity", sa.Integer(), nullable=False, server_default="4"),
        sa.Column("allowed_task_types", Json, nullable=False, server_default="[]"),
        sa.Column("config_version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("deleted_at", Timestamp, nullable=True),
    )


# What a fresh installation offers; admins edit the catalogue through the API.
SEED_MODELS = (
    ("claude-sonnet-4", "Claude Sonnet 4", "Anthropic", 200_000),
    ("claude-haiku-3.5", "Claude Haiku 3.5", "Anthropic", 200_000),
    ("gpt-4o", "GPT-4o", "OpenAI", 128_000),
    ("gpt-4o-mini", "GPT-4o mini", "OpenAI", 128_000),
    ("llama-3.1-70b", "Llama 3.1 70B", "Meta", 131_072),
    ("mistral-large", "Mistral Large", "Mistral AI", 131_072),
)
SEED_TOOLS = (
    ("files.read", "Read files", "Files", "Read files under the workspace roots.", True),
    ("files.write", "Write files", "Files", "Propose file changes (files.write tasks).", False),
    ("git.log", "Git history", "Git", "Read commits, branches and diffs.", True),
    ("git.patch", "Git patch", "Git", "Propose patches to a repository (git.patch).", False),
    ("code.search", "Code search", "Code", "Search the code base by text and symbol.", True),
    ("shell", "Shell", "System", "Propose shell commands with a preview and rollback.", False),
    ("http.request", "HTTP request", "Network", "Propose webhook and API calls.", False),
    ("web.search", "Web search", "Research", "Search the web for documentation.", False),
    ("tasks.submit", "Submit tasks", "Governance", "Create and submit tasks for review.", True),
    ("locks.inspect", "Inspect locks", "Governance", "Read apply locks and queues.", False),
)


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        for column in agent_columns():
            batch.add_column(column)
    op.create_table(
        "agent_versions",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("config", Json, nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_versions_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_agent_versions_author_id_users")
        ),
        sa.PrimaryKeyConstraint("agent_id", "version", name=op.f("pk_agent_versions")),
    )
    models = op.create_table(
        "catalogue_models",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("context_window", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_models")),
    )
    tools = op.create_table(
        "catalogue_tools",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("base", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogue_tools")),
    )
    op.bulk_insert(
        models,
        [{"id": i, "name": n, "provider": p, "context_window": w} for i, n, p, w in SEED_MODELS],
    )
    op.bulk_insert(
        tools,
        [
            {"id": i, "name": n, "category": c, "description": d, "base": b}
            for i, n, c, d, b in SEED_TOOLS
        ],
    )


def downgrade() -> None:
    op.drop_table("catalogue_tools")
    op.drop_table("catalogue_models")
    op.drop_table("agent_versions")
    with op.batch_alter_table("agents") as batch:
        for column in reversed(agent_columns()):
            batch.drop_column(column.name)
