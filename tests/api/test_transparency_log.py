"""The audit log as a transparency log over the API: checkpoints signed with the
deployment's key, inclusion and consistency proofs that verify, receipts for a task's
decisions and apply that check offline (in a process with no server, database or Redis),
``ade audit verify`` catching a tree that disagrees with its checkpoint, and the backfill
of a log that existed before the tree."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conftest import Api, run_ade
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, text

from community_ade.audit import checkpoints, merkle, notes
from community_ade.audit.chain import GENESIS, canonical, compute_hash
from community_ade.audit.receipts import check_receipt
from community_ade.audit.tree import Tree
from community_ade.execution.worker import Worker
from community_ade.storage import db
from community_ade.storage.models import AuditEvent


def b64(value: str) -> bytes:
    return base64.b64decode(value)


async def approved_and_applied(api: Api) -> str:
    body = {
        "type": "files.write",
        "title": "turn on debug",
        "payload": {
            "root": str(api.workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
        },
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }
    created = await api.client.post("/api/v1/tasks", json=body, headers=api.as_("alice"))
    task_id = created.json()["id"]
    submitted = await api.client.post(f"/api/v1/tasks/{task_id}/submit", headers=api.as_("alice"))
    digest = submitted.json()["preview_digest"]
    approved = await api.client.post(
        f"/api/v1/approvals/{task_id}/approve", json={"digest": digest}, headers=api.as_("bob")
    )
    assert approved.json()["task"]["state"] == "APPROVED", approved.text
    await asyncio.wait_for(Worker(api.runtime, burst=True).run(), 60)
    return str(task_id)


async def test_checkpoint_proofs_and_receipts(api: Api, tmp_path: Path) -> None:
    vkey = (await api.client.get("/.well-known/ade-audit-key")).text.strip()
    verifier = notes.Verifier.parse(vkey)
    assert (await api.client.get("/api/v1/audit/checkpoint")).status_code == 404
    task_id = await approved_and_applied(api)

    made = await api.client.post("/api/v1/audit/checkpoint", headers=api.as_("vic"))
    assert made.status_code == 200, made.text
    public = (await api.client.get("/api/v1/audit/checkpoint")).json()  # no token
    checkpoint = notes.verified_checkpoint(public["note"], verifier)
    assert checkpoint.size == public["size"] == made.json()["size"]
    assert checkpoint.origin == verifier.name

    proof = (await api.client.get("/api/v1/audit/2/proof", headers=api.as_("vic"))).json()
    async with api.runtime.sessions() as session:
        entry = await checkpoints.entry_of(session, 2)
    leaf = merkle.leaf_hash(canonical(entry))
    merkle.verify_inclusion(
        1, proof["size"], leaf, [b64(p) for p in proof["proof"]], checkpoint.root
    )

    receipts = (
        await api.client.get(f"/api/v1/tasks/{task_id}/receipts", headers=api.as_("vic"))
    ).json()
    types = [r["entry"]["type"] for r in receipts]
    assert "approval:approved" in types or any(t.startswith("approval:") for t in types), types
    assert "task:completed" in types, types
    for receipt in receipts:
        check_receipt(receipt, verifier)

    # Offline, in a process that knows no server, database or Redis.
    receipt_file = tmp_path / "receipts.json"
    receipt_file.write_text(json.dumps(receipts))
    bare_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    checked = run_ade(bare_env, "audit", "verify-receipt", str(receipt_file), "--key", vkey)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("valid entry") == len(receipts)

    forged = [dict(receipts[-1], entry={**receipts[-1]["entry"], "subject": "task:someone-else"})]
    receipt_file.write_text(json.dumps(forged))
    refused = run_ade(bare_env, "audit", "verify-receipt", str(receipt_file), "--key", vkey)
    assert refused.returncode == 1
    assert "INVALID" in refused.stdout

    other_key = notes.Signer(verifier.name, Ed25519PrivateKey.generate()).verifier
    receipt_file.write_text(json.dumps(receipts[:1]))
    wrong_key = run_ade(
        bare_env, "audit", "verify-receipt", str(receipt_file), "--key", other_key.encode()
    )
    assert wrong_key.returncode == 1


async def test_consistency_between_checkpoints(api: Api) -> None:
    await approved_and_applied(api)
    first = (await api.client.post("/api/v1/audit/checkpoint", headers=api.as_("vic"))).json()
    await approved_and_applied(api)
    second = (await api.client.post("/api/v1/audit/checkpoint", headers=api.as_("vic"))).json()
    assert second["size"] > first["size"]
    proof = (
        await api.client.get(
            "/api/v1/audit/consistency", params={"from": first["size"], "to": second["size"]}
        )
    ).json()
    merkle.verify_consistency(
        first["size"],
        second["size"],
        b64(first["root"]),
        b64(second["root"]),
        [b64(p) for p in proof["proof"]],
    )
    too_far = await api.client.get("/api/v1/audit/consistency", params={"from": 1, "to": 10**6})
    assert too_far.status_code == 404


async def test_verify_catches_a_tree_that_disagrees_with_its_checkpoint(
    api: Api, tmp_path: Path
) -> None:
    await approved_and_applied(api)
    await api.client.post("/api/v1/audit/checkpoint", headers=api.as_("vic"))
    settings = api.runtime.settings
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "ADE_DATA_DIR": str(settings.data_dir),
        "ADE_DATABASE_URL": str(settings.database_url),
        "ADE_LOG_LEVEL": "WARNING",
    }
    # In a thread: the app's background tasks keep running (and end their transactions).
    ok = await asyncio.to_thread(run_ade, env, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "matches the newest signed checkpoint" in ok.stdout
    async with api.runtime.sessions.begin() as session:  # a node rewritten behind our back
        await session.execute(
            text("UPDATE audit_tree_nodes SET hash = :h WHERE level = 0 AND idx = 0"),
            {"h": bytes(32)},
        )
    broken = await asyncio.to_thread(run_ade, env, "audit", "verify")
    assert broken.returncode == 1
    assert "audit tree BROKEN" in broken.stdout


async def test_the_migration_builds_the_tree_of_an_existing_log(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine, "0008")  # the schema just before the tree
        rows: list[dict[str, Any]] = []
        prev = GENESIS
        for seq in range(1, 38):
            row: dict[str, Any] = {
                "seq": seq,
                "ts": datetime(2026, 1, 1, 0, 0, seq, tzinfo=UTC),
                "type": "task:created",
                "actor_kind": "system",
                "actor_id": "system",
                "via_delegation": False,
                "subject": f"task:{seq}",
                "data": {"n": seq},
                "prev_hash": prev,
            }
            row["hash"] = prev = compute_hash(row)
            rows.append(row)
        async with engine.begin() as connection:
            await connection.execute(insert(AuditEvent.__table__), rows)
        await db.upgrade(engine)
        sessions = db.sessionmaker(engine)
        async with sessions() as session:
            tree = Tree(session)
            assert await tree.size() == 37
            entries = [await checkpoints.entry_of(session, seq) for seq in range(1, 38)]
            leaves = [merkle.leaf_hash(canonical(entry)) for entry in entries]
            expected = merkle.root(37, merkle.lookup(_all_nodes(leaves)))
            assert await tree.root(37) == expected
    finally:
        await engine.dispose()


def _all_nodes(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    nodes: dict[tuple[int, int], bytes] = {}
    for size, leaf in enumerate(leaves):
        for level, index, value in merkle.new_nodes(size, leaf, merkle.lookup(nodes)):
            nodes[(level, index)] = value
    return nodes
