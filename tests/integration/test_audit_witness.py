"""The witness against a live server, through every way an operator with the database
and the signing key could rewrite history: an edited entry with the chain re-hashed, the
tree rebuilt and the checkpoint re-signed; an entry deleted; two entries swapped; the
tail cut off. Each is caught (exit 1, saying which), and an honest extension passes."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_ade
from livesrv import Live, StartLive
from sqlalchemy import delete, insert, select

from community_ade.audit import checkpoints, merkle
from community_ade.audit.chain import GENESIS, HASHED_FIELDS, SYSTEM, compute_hash
from community_ade.audit.log import append
from community_ade.storage.models import AuditCheckpoint, AuditEvent, AuditTreeNode

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)


async def log_events(live: Live, count: int) -> None:
    async with live.runtime.sessions.begin() as session:
        for n in range(count):
            await append(
                session, type="task:created", actor=SYSTEM, subject=f"task:{n}", data={"n": n}
            )


async def sign(live: Live) -> None:
    async with live.runtime.sessions.begin() as session:
        await checkpoints.make(session, checkpoints.log_signer(live.runtime.settings))


async def rewrite(
    live: Live, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
) -> None:
    """What an operator with the database and the key can do: change the entries, re-hash
    the chain, rebuild the tree, drop the old checkpoints and sign a new one."""
    async with live.runtime.sessions.begin() as session:
        rows = [
            {name: getattr(row, name) for name in (*HASHED_FIELDS, "hash")}
            for row in await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))
        ]
        rows = change(rows)
        prev = GENESIS
        nodes: dict[tuple[int, int], bytes] = {}
        for seq, row in enumerate(rows, start=1):
            row.update(seq=seq, prev_hash=prev)
            row["hash"] = prev = compute_hash(row)
            leaf = merkle.leaf_hash(
                __import__("community_ade.audit.chain", fromlist=["canonical"]).canonical(row)
            )
            for level, index, value in merkle.new_nodes(seq - 1, leaf, merkle.lookup(nodes)):
                nodes[(level, index)] = value
        for table in (AuditCheckpoint, AuditTreeNode, AuditEvent):
            await session.execute(delete(table))
        await session.execute(insert(AuditEvent.__table__), rows)
        await session.execute(
            insert(AuditTreeNode.__table__),
            [{"level": lv, "idx": i, "hash": h} for (lv, i), h in nodes.items()],
        )
        await checkpoints.make(session, checkpoints.log_signer(live.runtime.settings))


async def witness(live: Live, state: Path) -> Any:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(state.parent)}
    return await asyncio.to_thread(
        run_ade, env, "audit", "witness", "--url", live.server.url, "--state", str(state)
    )


def edit(extra: int) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Change entry 3, then add ``extra`` entries (none: the same size as before)."""

    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[2]["data"] = {"n": f"something else {uuid.uuid4()}"}
        return rows + [dict(rows[-1], data={"n": f"padding {i}"}) for i in range(extra)]

    return change


# What the operator does, and what a witness that saw the log before must then say.
TAMPERING: list[tuple[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]], str]] = [
    ("edit", edit(1), "REWRITTEN"),
    ("edit, same size", edit(0), "SPLIT VIEW"),
    ("delete", lambda rows: [*rows[:3], *rows[4:], dict(rows[-1]), dict(rows[-1])], "REWRITTEN"),
    ("reorder", lambda rows: [rows[1], rows[0], *rows[2:], dict(rows[-1])], "REWRITTEN"),
    ("truncate", lambda rows: rows[:-3], "ROLLED BACK"),
]


async def test_the_witness_catches_a_rewritten_history(
    start_live: StartLive, tmp_path: Path
) -> None:
    """Each case with a witness of its own that first saw the log honestly extended; one
    server throughout (each case starts from the history the previous one left)."""
    # The test signs every checkpoint itself: the server's own signer must not sign one
    # while the "operator" rewrites the tables under it.
    live = await start_live(audit_checkpoint_entries=10**9, audit_checkpoint_seconds=10**6)
    for n, (what, change, verdict) in enumerate(TAMPERING):
        state = tmp_path / f"witness-{n}"
        await log_events(live, 9)
        await sign(live)
        first = await witness(live, state)
        assert first.returncode == 0, (what, first.stdout + first.stderr)
        assert (state / "cosigned").is_dir()
        await log_events(live, 4)  # an honest extension
        await sign(live)
        second = await witness(live, state)
        assert second.returncode == 0, (what, second.stdout + second.stderr)
        await rewrite(live, change)
        caught = await witness(live, state)
        assert caught.returncode == 1, (what, caught.stdout + caught.stderr)
        assert verdict in caught.stderr, (what, caught.stderr)
