"""The ``ade`` command."""

from __future__ import annotations

import typer

from community_ade.cli import (
    agents,
    audit,
    database,
    demo,
    locks,
    mcp,
    secrets,
    serve,
    shell_profiles,
    slack,
    users,
    webhooks,
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
app.add_typer(slack.app, name="slack")
app.add_typer(shell_profiles.app, name="shell-profiles")
app.add_typer(webhooks.app, name="webhooks")
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("mcp")(mcp.mcp)


def main() -> None:
    app()
