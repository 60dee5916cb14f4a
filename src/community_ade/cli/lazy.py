"""Command groups whose commands' modules are imported only when a command runs.

Importing every command (the server, the MCP SDK, the database stack) takes seconds that
``ade --help``, an auditor's ``ade audit verify-receipt`` or a hook has no use for. A
group lists each command as ``name: (module in community_ade.cli, attribute, help)``:
the attribute is a Typer app or a command function, and ``help`` is the first paragraph
of its own help, which ``--help`` shows without importing it
(``tests/unit/test_cli_lazy.py`` checks the two agree)."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import typer
from typer.core import DEFAULT_MARKUP_MODE, TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_group
from typer.models import CommandInfo

Commands = dict[str, tuple[str, str, str]]


def load(name: str, entry: tuple[str, str, str]) -> Any:
    """The (typer-vendored) click command ``entry`` names, importing its module."""
    module, attribute, _ = entry
    target: Any = getattr(importlib.import_module(f"community_ade.cli.{module}"), attribute)
    if isinstance(target, typer.Typer):
        group = get_group(target)
        group.name = name
        return group
    return get_command_from_info(
        CommandInfo(name=name, callback=target),
        pretty_exceptions_short=True,
        rich_markup_mode=DEFAULT_MARKUP_MODE,
    )


class LazyCommands(TyperGroup):
    """A group holding a placeholder per command (its name and help, for ``--help`` and
    completion) until the command is run, when its module is imported."""

    commands_of: ClassVar[Commands] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_, _, help_text) in self.commands_of.items():
            self.commands.setdefault(name, TyperCommand(name=name, help=help_text))
        self.loaded: set[str] = set()

    # Typed loosely: typer's own signature names its vendored click.
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else None
        if name in self.commands_of and name not in self.loaded:
            self.commands[name] = load(name, self.commands_of[name])
            self.loaded.add(name)
        return super().resolve_command(ctx, args)


def lazy_app(commands: Commands, **options: Any) -> typer.Typer:
    """A Typer app of the lazily imported ``commands``."""
    group = type("Commands", (LazyCommands,), {"commands_of": commands})
    app = typer.Typer(cls=group, no_args_is_help=True, **options)

    @app.callback()
    def _group() -> None:
        # A callback makes ``app`` a group although it registers no command itself.
        return None

    return app
