"""The ``ade`` command; each command's module is imported when it runs (``cli.lazy``)."""

from __future__ import annotations

from community_ade.cli.lazy import Commands, lazy_app

COMMANDS: Commands = {
    "locks": ("locks", "app", "Inspect and manage the Redis apply locks."),
    "db": ("database", "app", "Manage the database schema (Alembic migrations)."),
    "audit": ("audit", "app", "Verify and read the tamper-evident audit log."),
    "users": ("users", "users_app", "Manage users (people who review, submit or read)."),
    "groups": ("users", "groups_app", "Manage reviewer groups."),
    "tokens": ("users", "tokens_app", "Manage API tokens of users and agents."),
    "agents": ("agents", "app", "Manage agents: configuration, versions, health."),
    "secrets": (
        "secrets",
        "app",
        'Manage secrets that tasks refer to as {"secret": NAME} (values are write-only).',
    ),
    "slack": (
        "slack",
        "app",
        "Slack approvals: the app's credentials, where review requests go, who is who.",
    ),
    "webhooks": (
        "webhooks",
        "app",
        "Manage outbound webhooks (Standard Webhooks): subscriptions, deliveries, redelivery.",
    ),
    "shell-profiles": (
        "shell_profiles",
        "app",
        "Manage shell profiles: the commands shell tasks may run.",
    ),
    "demo": (
        "demo",
        "demo",
        "Run a short lock scenario on the embedded default and print what happens.",
    ),
    "serve": (
        "serve",
        "serve",
        "Serve the REST API; /healthz answers once Redis and the database are open.",
    ),
    "worker": ("worker", "worker", "Claim approved tasks and apply them under their locks."),
    "mcp": (
        "mcp",
        "mcp",
        "Serve an agent's tools over MCP on stdin/stdout (its token in ADE_TOKEN).",
    ),
}

app = lazy_app(
    COMMANDS,
    name="ade",
    help="Community ADE: preview, review and cleanly apply the changes agents ask for.",
    pretty_exceptions_enable=False,
)


def main() -> None:
    app()
