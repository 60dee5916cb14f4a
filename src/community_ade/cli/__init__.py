"""The ``ade`` command.

Importing this package is cheap: the Typer application (and every command's module) is
built on first use (``app``, ``main``), so ``ade hook …``, which a coding agent starts
once per tool call, runs without loading the rest of the CLI."""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

HOOK_HARNESSES = ("claude-code", "cursor")


@functools.cache
def build_app() -> typer.Typer:
    import typer

    from community_ade.cli import (
        agents,
        audit,
        database,
        demo,
        hook,
        locks,
        mcp,
        secrets,
        serve,
        shell_profiles,
        users,
        worker,
    )

    app = typer.Typer(
        name="ade",
        help="Community ADE: preview, review and cleanly apply the changes agents ask for.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    app.add_typer(locks.app, name="locks")
    app.add_typer(database.app, name="db")
    app.add_typer(audit.app, name="audit")
    app.add_typer(users.users_app, name="users")
    app.add_typer(users.groups_app, name="groups")
    app.add_typer(users.tokens_app, name="tokens")
    app.add_typer(agents.app, name="agents")
    app.add_typer(secrets.app, name="secrets")
    app.add_typer(shell_profiles.app, name="shell-profiles")
    app.add_typer(hook.app, name="hook")
    app.command("demo")(demo.demo)
    app.command("serve")(serve.serve)
    app.command("worker")(worker.worker)
    app.command("mcp")(mcp.mcp)
    return app


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
