"""The ``ade`` command.

Each command's module is imported only when that command runs: importing all of them
(the server, the MCP SDK, the agents service) takes seconds, which ``ade --help``, an
auditor's ``ade audit verify-receipt`` or a hook has no use for. ``COMMANDS`` names each
command's module and attribute, and the first paragraph of its help for ``ade --help``
(``tests/unit/test_cli_lazy.py`` checks that it matches the command's own)."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_group
from typer.models import CommandInfo

# name: (module in community_ade.cli, attribute: a Typer app or a command function, help)
COMMANDS: dict[str, tuple[str, str, str]] = {
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


def load(name: str) -> Any:
    """The (typer-vendored) click command ``name`` stands for, importing its module."""
    module, attribute, _ = COMMANDS[name]
    target: Any = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    if isinstance(target, typer.Typer):
        group = get_group(target)
        group.name = name
        return group
    return get_command_from_info(
        CommandInfo(name=name, callback=target),
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


class LazyCommands(TyperGroup):
    """``ade``'s group: a placeholder per command (its name and help, for ``--help`` and
    completion) until the command is run, when its module is imported."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_, _, help_text) in COMMANDS.items():
            self.commands.setdefault(name, TyperCommand(name=name, help=help_text))
        self.loaded: set[str] = set()

    # Typed loosely: typer's own signature names its vendored click.
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else None
        if name in COMMANDS and name not in self.loaded:
            self.commands[name] = load(name)
            self.loaded.add(name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="ade",
    cls=LazyCommands,
    help="Community ADE: preview, review and cleanly apply the changes agents ask for.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    # A callback makes ``app`` a group even though it registers no command itself.
    return None


def main() -> None:
    app()
