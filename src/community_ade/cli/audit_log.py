"""``ade audit verify | list | key | checkpoint``: the commands of ``ade audit`` that
read the database or the deployment's settings (``cli/audit.py`` lists them)."""

from __future__ import annotations

import json
import re
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from community_ade.audit import Anchor, ChainReport, checkpoints
from community_ade.audit import log as audit_log
from community_ade.audit.checkpoints import log_signer, verify_tree
from community_ade.cli.common import EXIT_FAILED, console, load_settings, run_database
from community_ade.cli.output import say
from community_ade.runtime import Database
from community_ade.storage import db
from community_ade.storage.models import AuditEvent

_ANCHOR = re.compile(r"^(\d+):([0-9a-f]{64})$")


def _anchor(value: str | None) -> Anchor | None:
    if value is None:
        return None
    match = _ANCHOR.match(value.strip().lower())
    if match is None:
        raise typer.BadParameter("expected SEQ:HASH, e.g. 42:<64 hex digits>")
    return Anchor(int(match[1]), match[2])


def verify(
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor",
            help="SEQ:HASH printed by an earlier run: also detect rows cut off the end.",
        ),
    ] = None,
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Rows read per query.", show_default=True)
    ] = 1000,
) -> None:
    """Re-hash every event and check each links to the one before, then check the Merkle
    tree against the newest signed checkpoint (exit 1 if either is broken)."""
    expected = _anchor(anchor)

    async def action(runtime: Database) -> tuple[ChainReport, str | None]:
        verifier = log_signer(runtime.settings).verifier
        async with db.snapshot_sessions(runtime.sessions)() as session:
            report = await audit_log.verify_log(session, batch=batch, anchor=expected)
            return report, await verify_tree(session, verifier)

    report, tree_problem = run_database(action)
    if not report.ok:
        say(f"audit chain BROKEN at seq {report.first_bad_seq}: {report.problem}", "red")
        raise typer.Exit(EXIT_FAILED)
    say(f"audit chain intact: {report.checked} events", "green")
    if tree_problem is not None:
        say(f"audit tree BROKEN: {tree_problem}", "red")
        raise typer.Exit(EXIT_FAILED)
    say("audit tree matches the newest signed checkpoint", "green")
    if report.checked:
        say(f"head: {report.head_seq}:{report.head_hash} (keep it to use as --anchor later)")


def _actor(event: AuditEvent) -> str:
    via = " (delegated)" if event.via_delegation else ""
    return f"{event.actor_kind}:{event.actor_id}{via}"


def _table(events: list[AuditEvent]) -> Table:
    table = Table(title_justify="left")
    for column in ("seq", "time (UTC)", "type", "actor", "subject", "data"):
        table.add_column(column, overflow="fold", min_width=3)
    for event in events:
        data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
        cells = (
            str(event.seq),
            event.ts.strftime("%Y-%m-%d %H:%M:%S"),
            event.type,
            _actor(event),
            event.subject,
            data if len(data) <= 120 else data[:119] + "…",
        )
        table.add_row(*(Text(cell) for cell in cells))  # Text: stored strings are not markup
    return table


def list_(
    type_: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Only this subject.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor id.")] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, max=audit_log.MAX_LIST_LIMIT, show_default=True),
    ] = 50,
    before: Annotated[
        int | None, typer.Option("--before", help="Only events older than this seq (paging).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON envelopes.")] = False,
) -> None:
    """Show audit events, newest first."""

    async def action(runtime: Database) -> list[AuditEvent]:
        async with runtime.sessions() as session:
            return await audit_log.list_events(
                session,
                type=type_,
                subject=subject,
                actor_id=actor,
                limit=limit,
                before_seq=before,
            )

    events = run_database(action)
    if as_json:
        typer.echo(json.dumps([audit_log.envelope(e) for e in events], ensure_ascii=False))
        return
    if not events:
        say("no audit events")
        return
    console.print(_table(events))
    if len(events) == limit:
        say(f"more with --before {events[-1].seq}")


def key() -> None:
    """Print the public key that signs this deployment's checkpoints (C2SP vkey)."""
    say(log_signer(load_settings()).verifier.encode())


def checkpoint() -> None:
    """Sign a checkpoint of the audit log now and print it."""

    async def action(database: Database) -> checkpoints.Signed:
        signer = log_signer(database.settings)
        async with database.sessions.begin() as session:
            return await checkpoints.make(session, signer)

    say(run_database(action).note.rstrip("\n"))
