"""The ``ade`` command; each command's module is imported when it runs (``cli.lazy``).

``ade hook claude-code|cursor``, which a coding agent starts once per tool call, does not
even build the Typer application (``main``)."""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    from community_ade.cli.lazy import Commands

HOOK_HARNESSES = ("claude-code", "cursor")

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
    "hook": (
        "hook",
        "app",
        "Permission hooks for coding agents: each tool call is reviewed in Community ADE.",
    ),
}


@functools.cache
def build_app() -> typer.Typer:
    """The Typer application (Typer itself is imported here, not by the hook's path)."""
    from community_ade.cli.lazy import lazy_app

    return lazy_app(
        COMMANDS,
        name="ade",
        help="Community ADE: preview, review and cleanly apply the changes agents ask for.",
        pretty_exceptions_enable=False,
    )


def __getattr__(name: str) -> Any:
    if name == "app":  # ``from community_ade.cli import app`` (tests, typer's runner)
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    arguments = sys.argv[1:]
    if len(arguments) == 2 and arguments[0] == "hook" and arguments[1] in HOOK_HARNESSES:
        if not os.environ.get("ADE_URL", "").lower().startswith("https:"):
            # http.client imports ssl only to offer HTTPS; loading OpenSSL is a third of
            # the hook's start-up, and a plain-HTTP hook never uses it.
            sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
        from community_ade.hooks import gate

        sys.exit(gate.run(arguments[1]))
    build_app()()
