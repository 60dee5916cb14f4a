"""Benchmark of the audit log's transparency log (issue 16 §3).

In one run:

* **append overhead**: audited transactions (``BEGIN``, ``--appends`` calls of
  ``audit.log.append``, ``COMMIT``; by default 1 and 2 appends, a transition writes
  two) on PostgreSQL (a fresh database on ``--database-url``, created and dropped here)
  and on SQLite (a file in a temporary directory; ``--no-sqlite`` skips it), in three
  modes, in interleaved rounds so that machine drift hits all alike:

  - ``chain``: today's hash chain alone. The baseline is the *same code* with
    ``community_ade.audit.tree.extend`` replaced by a no-op in this process (no
    production switch exists for it); it writes into its own database, since a log
    appended without its tree cannot take tree appends afterwards;
  - ``tree``: the real append, the process's cached frontier hit (one process appends);
  - ``tree, frontier read``: the real append with the cached frontier dropped before
    each transaction, as when another process appended in between (several servers or
    workers): the frontier is read from ``audit_tree_nodes`` under the lock.

  Per transaction: wall time, this process's CPU, the PostgreSQL backends' CPU
  (``/proc``), SQL statements, and the time spent inside ``tree.extend``. The ratios
  are medians of per-round ratios (tree ÷ chain in the same round).

* **1 000 000 entries** (``--entries``): the tree of that many synthetic leaves is built
  with ``merkle.new_nodes`` (the code appends use) and bulk-copied into
  ``audit_tree_nodes`` of another fresh database; one leaf is a real audit row, written
  by ``audit.log``'s own insert, so that a receipt can name it. Then: checkpoints
  (``checkpoints.make``: root from stored nodes + Ed25519 signature) at sizes near 1M;
  inclusion proofs (``Tree.inclusion``, one session each) at random indexes at size 1M;
  consistency proofs to 1M; a receipt; ``check_receipt`` in process; and
  ``ade audit verify-receipt`` as a new process. Over HTTP (``--no-http`` skips):
  ``GET /api/v1/audit/{seq}/proof?size=1000000`` on ``python -m community_ade serve``.

Every phase notes the load average. The last line is one JSON object:
``append_overhead_ratio``, ``proof_p99_ms_1m``, ``checkpoint_ms_1m`` and the rest.
``--quick`` ends in about 1½ minutes on 2 loaded cores, the full run in about 3½.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
from api import (
    DEFAULT_DATABASE_URL,
    Database,
    Server,
    _cpu_seconds,
    choose_redis,
    create_database,
    drop_database,
    percentile,
    progress,
    server_env,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from community_ade.audit import Actor, checkpoints, merkle, notes, tree
from community_ade.audit import log as audit_log
from community_ade.audit.tree import Tree
from community_ade.auth import service as auth
from community_ade.storage import db

MODES = ("chain", "tree", "tree_cold")
MODE_NAMES = {"chain": "chain alone", "tree": "tree", "tree_cold": "tree, frontier read"}
ACTOR = Actor("agent", "bench-agent")
COPY_ROWS = 100_000
ORIGIN = "bench.example/audit"
# The modules check_receipt works with (and typer): what verify-receipt needs to start.
IMPORT_CHECKER = "import typer; from community_ade.audit import chain, notes"


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- append overhead -------------------------------------------------------------------------


@contextlib.contextmanager
def extend_as(mode: str, spent: list[float], leaves: list[bytes] | None = None) -> Iterator[None]:
    """The append's tree work for a mode. ``chain``: none — ``tree.extend`` completes no
    node and the row is written by its plain INSERT, as before the tree (``leaves`` gets
    each row's leaf bytes); otherwise the real code, ``tree.extend`` timed."""
    original_extend, original_write = tree.extend, audit_log._write

    async def no_nodes(_session: Any, _row: Any, leaf_entry: bytes, _head: Any) -> list[Any]:
        if leaves is not None:
            leaves.append(leaf_entry)
        return []

    async def row_only(session: AsyncSession, fields: dict[str, Any], _nodes: Any) -> None:
        await session.execute(audit_log._INSERT, fields)

    async def timed(*args: Any) -> list[tuple[int, int, bytes]]:
        started = time.perf_counter()
        try:
            return await original_extend(*args)
        finally:
            spent.append(time.perf_counter() - started)

    if mode == "chain":
        tree.extend, audit_log._write = no_nodes, row_only  # type: ignore[assignment]
    else:
        tree.extend = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        tree.extend, audit_log._write = original_extend, original_write  # type: ignore[assignment]


@dataclass
class Target:
    """The database one mode's transactions write to (each mode its own, so that each
    has its own PostgreSQL backend to measure, and the chain-alone log no tree)."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pg_name: str | None  # the database's name on the PostgreSQL server


@dataclass
class Sample:
    """One mode in one round: medians per transaction, CPU as means."""

    wall_ms: float
    cpu_ms: float
    pg_cpu_ms: float | None
    extend_ms: float


@dataclass
class Cell:
    """One (backend, appends per transaction, mode): a sample per round."""

    samples: list[Sample] = field(default_factory=list)
    statements: float = 0.0

    def med(self, attr: str) -> float:
        values = [getattr(s, attr) for s in self.samples]
        return median([v for v in values if v is not None])


async def backend_cpu(admin: asyncpg.Connection, name: str | None) -> float | None:
    if name is None:
        return None
    rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    values = [_cpu_seconds(int(r["pid"])) for r in rows]
    return None if any(v is None for v in values) else sum(v or 0.0 for v in values)


async def transaction(target: Target, mode: str, appends: int, n: int, spent: list[float]) -> None:
    """One audited transaction: ``appends`` appends, then commit."""
    with extend_as(mode, spent):
        if mode == "tree_cold":  # as if another process had appended since our last append
            tree._FRONTIERS.pop(target.engine.sync_engine, None)
        async with target.sessions.begin() as session:
            for k in range(appends):
                await audit_log.append(
                    session,
                    type="task:applying" if k else "task:approved",
                    actor=ACTOR,
                    subject=f"task:{uuid.uuid4()}",
                    data={"from": "APPROVED", "to": "APPLYING", "version": n, "k": k},
                )


async def timed_round(
    targets: dict[str, Target], appends: int, count: int, admin: asyncpg.Connection
) -> dict[str, Sample]:
    """``count`` transactions per mode, the modes taking turns transaction by transaction
    (the order reversed every other turn), so a spike of machine load hits all alike."""
    pg0 = {mode: await backend_cpu(admin, targets[mode].pg_name) for mode in MODES}
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    extends: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu = dict.fromkeys(MODES, 0.0)
    for n in range(count):
        for mode in MODES if n % 2 == 0 else MODES[::-1]:
            spent: list[float] = []
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await transaction(targets[mode], mode, appends, n, spent)
            walls[mode].append((time.perf_counter() - wall0) * 1000)
            cpu[mode] += time.process_time() - cpu0
            extends[mode].append(sum(spent) * 1000)
    out = {}
    for mode in MODES:
        pg1 = await backend_cpu(admin, targets[mode].pg_name)
        before = pg0[mode]
        pg = None if before is None or pg1 is None else (pg1 - before) * 1000 / count
        out[mode] = Sample(median(walls[mode]), cpu[mode] * 1000 / count, pg, median(extends[mode]))
    return out


async def statements_per_tx(target: Target, mode: str, appends: int, count: int) -> float:
    seen = [0]

    def counted(*_args: Any) -> None:
        seen[0] += 1

    event.listen(target.engine.sync_engine, "before_cursor_execute", counted)
    try:
        for n in range(count):
            await transaction(target, mode, appends, n, [])
    finally:
        event.remove(target.engine.sync_engine, "before_cursor_execute", counted)
    return seen[0] / count


async def open_target(url: str, pg_name: str | None) -> Target:
    engine = db.create_engine(url)
    await db.upgrade(engine)
    return Target(engine, db.sessionmaker(engine), pg_name)


async def append_overhead(
    args: argparse.Namespace, tmp: Path, admin_dsn: str
) -> dict[tuple[str, int, str], Cell]:
    cells: dict[tuple[str, int, str], Cell] = {}
    backends = ["postgresql"] + ([] if args.no_sqlite else ["sqlite"])
    databases: list[Database] = []
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        for backend in backends:
            targets: dict[str, Target] = {}
            for mode in MODES:
                if backend == "postgresql":
                    database = await create_database(args.database_url)
                    databases.append(database)
                    targets[mode] = await open_target(database.url, database.name)
                else:
                    targets[mode] = await open_target(f"sqlite:///{tmp / mode}.db", None)
            try:
                for appends in args.appends:
                    for mode in MODES:  # warm-up: pools, prepared statements, caches
                        cell = cells.setdefault((backend, appends, mode), Cell())
                        cell.statements = await statements_per_tx(targets[mode], mode, appends, 20)
                for r in range(args.rounds):
                    for appends in args.appends:
                        samples = await timed_round(targets, appends, args.transactions, admin)
                        for mode, sample in samples.items():
                            cells[(backend, appends, mode)].samples.append(sample)
                    progress(
                        f"append {backend} round {r + 1}/{args.rounds} ({load()}): "
                        + "  ".join(
                            f"{a}×{m}={cells[(backend, a, m)].samples[-1].wall_ms:.2f}ms"
                            for a in args.appends
                            for m in MODES
                        )
                    )
            finally:
                for target in targets.values():
                    await target.engine.dispose()
    finally:
        await admin.close()
        for database in databases:
            await drop_database(database)
    return cells


def pure_extend_us(appends: int = 20_000, start: int = (1 << 20) - 10_000) -> float:
    """Microseconds per append of ``tree.extend``'s work without the database: the leaf
    hash, ``merkle.new_nodes`` and the frontier's upkeep, as ``extend`` does them."""
    frontier = {key: bytes(32) for key in merkle.decompose(0, start)}
    started = time.perf_counter()
    for size in range(start, start + appends):
        assert len(frontier) == len(list(merkle.decompose(0, size)))
        completed = merkle.new_nodes(size, synthetic_leaf(size), merkle.lookup(frontier))
        known = {**frontier, **{(lv, i): h for lv, i, h in completed}}
        frontier = {k: known[k] for k in merkle.decompose(0, size + 1)}
    return (time.perf_counter() - started) * 1e6 / appends


def paired_ratio(cells: dict[tuple[str, int, str], Cell], key: tuple[str, int], mode: str) -> float:
    """Median over rounds of (mode ÷ chain alone) in the same round, wall time."""
    base, other = cells[(*key, "chain")].samples, cells[(*key, mode)].samples
    return median([o.wall_ms / b.wall_ms for o, b in zip(other, base, strict=True)])


def paired_cpu_ratio(
    cells: dict[tuple[str, int, str], Cell], key: tuple[str, int], mode: str
) -> float:
    """The same with CPU (this process + PostgreSQL backends), steadier under load."""
    base, other = cells[(*key, "chain")].samples, cells[(*key, mode)].samples
    return median(
        [
            (o.cpu_ms + (o.pg_cpu_ms or 0.0)) / (b.cpu_ms + (b.pg_cpu_ms or 0.0))
            for o, b in zip(other, base, strict=True)
        ]
    )


# -- one million entries ---------------------------------------------------------------------


def synthetic_leaf(index: int) -> bytes:
    return merkle.leaf_hash(b"bench leaf %d" % index)


def tree_rows(entries: int, real: dict[int, bytes]) -> Iterator[list[tuple[int, int, bytes]]]:
    """The stored nodes of a tree of ``entries`` leaves, in batches; leaf i is ``real[i]``
    where given. ``merkle.new_nodes`` reads left siblings only, and the left sibling of
    a new node is always the newest complete node of its level."""
    newest: dict[int, bytes] = {}

    def sibling(level: int, _index: int) -> bytes:
        return newest[level]

    batch: list[tuple[int, int, bytes]] = []
    for size in range(entries):
        leaf = real.get(size) or synthetic_leaf(size)
        for level, index, value in merkle.new_nodes(size, leaf, sibling):
            newest[level] = value
            batch.append((level, index, value))
        if len(batch) >= COPY_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


async def real_entry(sessions: async_sessionmaker[AsyncSession], seq: int) -> bytes:
    """Write audit row ``seq`` (after a made-up head) with ``audit.log``'s own insert,
    without its tree nodes (those are bulk-loaded); its leaf bytes."""
    leaves: list[bytes] = []
    with extend_as("chain", [], leaves):
        async with sessions.begin() as session:
            head = (seq - 1, "ab" * 32)
            await audit_log._insert_after(
                session, head, "task:completed", ACTOR, "task:bench", {"result": "ok"}
            )
    return leaves[0]


async def timed_ms(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return (time.perf_counter() - started) * 1000


@dataclass
class Big:
    entries: int
    build_s: float = 0.0
    build_load: str = ""
    checkpoint_ms: list[float] = field(default_factory=list)
    root_ms: list[float] = field(default_factory=list)
    sign_ms: float = 0.0
    checkpoint_load: str = ""
    proof_ms: list[float] = field(default_factory=list)
    proof_load: str = ""
    consistency_ms: list[float] = field(default_factory=list)
    consistency_load: str = ""
    receipt_ms: float = 0.0
    check_receipt_ms: float = 0.0
    cli_ms: list[float] = field(default_factory=list)
    python_ms: list[float] = field(default_factory=list)
    import_ms: list[float] = field(default_factory=list)
    receipt_load: str = ""
    http_ms: list[float] = field(default_factory=list)
    http_load: str = ""
    table_mb: float = 0.0


async def build(database: Database, sessions: async_sessionmaker[AsyncSession], big: Big) -> int:
    """The tree of ``big.entries`` leaves, one of them the real row ``seq``; that seq."""
    seq = big.entries * 3 // 4 + 1
    real = {seq - 1: merkle.leaf_hash(await real_entry(sessions, seq))}
    conn = await asyncpg.connect(database.url, timeout=10)
    try:
        started = time.perf_counter()
        for batch in tree_rows(big.entries, real):
            await conn.copy_records_to_table(
                "audit_tree_nodes", records=batch, columns=["level", "idx", "hash"]
            )
        await conn.execute("VACUUM (ANALYZE) audit_tree_nodes")
        big.build_s = time.perf_counter() - started
        size = await conn.fetchval("SELECT pg_total_relation_size('audit_tree_nodes')")
        big.table_mb = int(size) / 1e6
    finally:
        await conn.close()
    big.build_load = load()
    return seq


async def one_million(args: argparse.Namespace, tmp: Path) -> tuple[Big, dict[str, Any]]:
    big = Big(args.entries)
    n = args.entries
    rng = random.Random(args.seed)
    key = Ed25519PrivateKey.generate()
    signer = notes.Signer(ORIGIN, key)
    database = await create_database(args.database_url)
    engine = db.create_engine(database.url)
    try:
        await db.upgrade(engine)
        sessions = db.sessionmaker(engine)
        progress(f"building the tree of {n} entries ({load()})")
        seq = await build(database, sessions, big)
        progress(f"built in {big.build_s:.1f} s, {big.table_mb:.0f} MB ({big.build_load})")

        # Checkpoints at sizes n, n-1, …: each a new size (one checkpoint per size).
        for j in range(args.checkpoints + 1):
            async with sessions.begin() as session:
                ms = await timed_ms(lambda s=session, j=j: checkpoints.make(s, signer, n - j))
            if j:  # the first one warms the pool and caches
                big.checkpoint_ms.append(ms)
            async with sessions() as session:
                big.root_ms.append(await timed_ms(lambda s=session: Tree(s).root(n)))
        text = notes.Checkpoint(ORIGIN, n, bytes(32)).text()
        started = time.perf_counter()
        for _ in range(100):
            signer.sign(text)
        big.sign_ms = (time.perf_counter() - started) * 10
        big.checkpoint_load = load()
        progress(f"checkpoints p50 {median(big.checkpoint_ms):.2f} ms ({big.checkpoint_load})")

        async with sessions() as session:
            root = await Tree(session).root(n)
        for _ in range(args.proofs):
            index = rng.randrange(n)
            async with sessions() as session:
                started = time.perf_counter()
                proof = await Tree(session).inclusion(index, n)
                big.proof_ms.append((time.perf_counter() - started) * 1000)
            if index != seq - 1:  # checked outside the clock: the proof is right
                merkle.verify_inclusion(index, n, synthetic_leaf(index), proof, root)
        big.proof_load = load()
        progress(f"inclusion p99 {percentile(big.proof_ms, 0.99):.2f} ms ({big.proof_load})")

        for _ in range(args.proofs // 4):
            old = rng.randrange(1, n)
            async with sessions() as session:
                started = time.perf_counter()
                await Tree(session).consistency(old, n)
                big.consistency_ms.append((time.perf_counter() - started) * 1000)
        big.consistency_load = load()

        async with sessions.begin() as session:
            started = time.perf_counter()
            receipt = await checkpoints.receipt(session, signer, seq)
            big.receipt_ms = (time.perf_counter() - started) * 1000
        receipt_file = tmp / "receipt.json"
        receipt_file.write_text(json.dumps(receipt))
        verifier = signer.verifier
        started = time.perf_counter()
        for _ in range(1000):
            checkpoints.check_receipt(receipt, verifier)
        big.check_receipt_ms = time.perf_counter() - started  # ×1000 / 1000 calls
        command = [sys.executable, "-m", "community_ade", "audit", "verify-receipt"]
        for _ in range(args.cli_runs):
            big.cli_ms.append(
                run_ms([*command, str(receipt_file), "--key", verifier.encode()], "valid entry")
            )
            big.python_ms.append(run_ms([sys.executable, "-c", "pass"], ""))
            big.import_ms.append(run_ms([sys.executable, "-c", IMPORT_CHECKER], ""))
        big.receipt_load = load()
        progress(f"verify-receipt p50 {median(big.cli_ms):.0f} ms ({big.receipt_load})")
        if not args.no_http:
            await over_http(args, tmp, database, key, big, rng)
    finally:
        await engine.dispose()
        await drop_database(database)
    return big, receipt


def run_ms(command: list[str], expect: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0 or expect not in done.stdout:
        raise RuntimeError(f"{command[:6]} failed: {done.stdout}{done.stderr}")
    return ms


async def over_http(
    args: argparse.Namespace,
    tmp: Path,
    database: Database,
    key: Ed25519PrivateKey,
    big: Big,
    rng: random.Random,
) -> None:
    engine = db.create_engine(database.url)
    try:
        async with db.sessionmaker(engine).begin() as session:
            user = await auth.create_user(session, "vera", "viewer")
            token, _ = await auth.create_token(session, name="bench", user_id=user.id)
    finally:
        await engine.dispose()
    workspaces = tmp / "workspaces"
    workspaces.mkdir(exist_ok=True)
    env = server_env(database.url, tmp, workspaces, choose_redis(args.redis_url))
    env["ADE_AUDIT_SIGNING_KEY"] = base64.b64encode(key.private_bytes_raw()).decode()
    env["ADE_AUDIT_ORIGIN"] = ORIGIN
    server = Server(env, tmp / "server.log", ["--no-worker"])
    await server.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as client:
            for i in range(args.proofs // 2 + 10):
                seq = rng.randrange(1, big.entries + 1)
                started = time.perf_counter()
                response = await client.get(f"/api/v1/audit/{seq}/proof?size={big.entries}")
                ms = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if i >= 10:  # after a warm-up
                    big.http_ms.append(ms)
    finally:
        await server.stop()
    big.http_load = load()
    progress(f"HTTP proof p99 {percentile(big.http_ms, 0.99):.2f} ms ({big.http_load})")


# -- the report ------------------------------------------------------------------------------


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLAlchemy {metadata.version('sqlalchemy')}, asyncpg {asyncpg.__version__}, "
        f"cryptography {metadata.version('cryptography')}, {platform.platform()}"
    )


def print_appends(cells: dict[tuple[str, int, str], Cell], args: argparse.Namespace) -> None:
    print(
        f"\nAudited transactions, {args.transactions} per mode and round, the modes taking turns "
        f"transaction by transaction, {args.rounds} rounds; wall and extend: medians per "
        "transaction; CPU: means; ÷ chain: median over rounds of the round's ratio"
    )
    print(
        f"  {'database':<10} {'appends':>7} {'mode':<20} {'wall ms':>8} {'÷ chain':>8}"
        f" {'CPU ms':>7} {'PG CPU':>7} {'CPU ÷':>6} {'extend':>7} {'stmts':>6}"
    )
    for (backend, appends, mode), cell in cells.items():
        key = (backend, appends)
        pg = cell.med("pg_cpu_ms")
        print(
            f"  {backend:<10} {appends:>7} {MODE_NAMES[mode]:<20} {cell.med('wall_ms'):>8.3f}"
            f" {paired_ratio(cells, key, mode):>8.3f} {cell.med('cpu_ms'):>7.3f}"
            f" {'-' if pg != pg else f'{pg:.3f}':>7} {paired_cpu_ratio(cells, key, mode):>6.3f}"
            f" {cell.med('extend_ms'):>7.3f} {cell.statements:>6.1f}"
        )


def print_pure(us: float) -> None:
    print(
        f"  tree.extend without the database (leaf hash, new_nodes, frontier upkeep): "
        f"{us:.1f} µs per append ({load()})"
    )


def print_big(big: Big) -> None:
    def p(values: list[float]) -> str:
        return (
            f"p50 {percentile(values, 0.5):.2f}  p99 {percentile(values, 0.99):.2f}  "
            f"max {max(values, default=float('nan')):.2f} ms ({len(values)})"
        )

    print(
        f"\nTree of {big.entries} entries: built and copied in {big.build_s:.1f} s, "
        f"audit_tree_nodes {big.table_mb:.0f} MB ({big.build_load})"
    )
    print(f"  checkpoint (root + sign + store)  {p(big.checkpoint_ms)}  ({big.checkpoint_load})")
    print(f"    of which root from nodes      {p(big.root_ms)}; Ed25519 sign {big.sign_ms:.3f} ms")
    print(f"  inclusion proof (Tree.inclusion) {p(big.proof_ms)}  ({big.proof_load})")
    print(f"  consistency proof to 1M          {p(big.consistency_ms)}  ({big.consistency_load})")
    if big.http_ms:
        print(f"  GET /audit/{{seq}}/proof (HTTP)    {p(big.http_ms)}  ({big.http_load})")
    print(f"  receipt (checkpoints.receipt)    {big.receipt_ms:.2f} ms")
    print(f"  check_receipt (in process)       {big.check_receipt_ms:.3f} ms")
    print(
        f"  ade audit verify-receipt         {p(big.cli_ms)}; bare `python -c pass` "
        f"{median(big.python_ms):.0f} ms, importing only typer, audit.chain and audit.notes "
        f"{median(big.import_ms):.0f} ms  ({big.receipt_load})"
    )


def summary(cells: dict[tuple[str, int, str], Cell], big: Big | None) -> dict[str, Any]:
    def r(value: float, digits: int = 3) -> float | None:
        return None if value != value else round(value, digits)

    out: dict[str, Any] = {}
    if ("postgresql", 1, "tree") in cells:
        out["append_overhead_ratio"] = r(paired_ratio(cells, ("postgresql", 1), "tree"))
    for backend, appends, mode in cells:
        if mode == "chain":
            continue
        short = "pg" if backend == "postgresql" else backend
        suffix = f"{short}_{appends}" + ("_cold" if mode == "tree_cold" else "")
        out[f"ratio_{suffix}"] = r(paired_ratio(cells, (backend, appends), mode))
        out[f"cpu_ratio_{suffix}"] = r(paired_cpu_ratio(cells, (backend, appends), mode))
    for (backend, appends, mode), cell in cells.items():
        if mode != "tree_cold" and backend == "postgresql":
            out[f"tx_ms_pg_{appends}_{mode}"] = r(cell.med("wall_ms"))
    if big is not None:
        out |= {
            "proof_p99_ms_1m": r(percentile(big.proof_ms, 0.99), 2),
            "proof_p50_ms_1m": r(percentile(big.proof_ms, 0.5), 2),
            "checkpoint_ms_1m": r(median(big.checkpoint_ms), 2),
            "consistency_p99_ms_1m": r(percentile(big.consistency_ms, 0.99), 2),
            "http_proof_p99_ms_1m": r(percentile(big.http_ms, 0.99), 2) if big.http_ms else None,
            "check_receipt_ms": r(big.check_receipt_ms, 3),
            "verify_receipt_cli_ms": r(median(big.cli_ms), 0),
            "entries": big.entries,
        }
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="an admin DSN")
    parser.add_argument("--redis-url", help="a Redis for the HTTP server (default DB 15)")
    parser.add_argument("--rounds", type=int, help="interleaved append rounds (9; quick 5)")
    parser.add_argument("--transactions", type=int, help="per round and mode (200; quick 100)")
    parser.add_argument("--appends", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--entries", type=int, default=1_000_000, help="the big tree's size")
    parser.add_argument("--proofs", type=int, help="inclusion proofs timed (2000; quick 500)")
    parser.add_argument("--checkpoints", type=int, help="checkpoints timed (20; quick 10)")
    parser.add_argument("--cli-runs", type=int, help="verify-receipt processes (5; quick 3)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--no-append", action="store_true", help="only the 1M part")
    parser.add_argument("--no-big", action="store_true", help="only the append part")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (5 if args.quick else 9)
    args.transactions = args.transactions or (100 if args.quick else 200)
    args.proofs = args.proofs or (500 if args.quick else 2000)
    args.checkpoints = args.checkpoints or (10 if args.quick else 20)
    args.cli_runs = args.cli_runs or (3 if args.quick else 5)
    return args


async def run(args: argparse.Namespace, tmp: Path) -> tuple[dict[Any, Cell], Big | None]:
    admin_dsn = make_url(args.database_url).set(drivername="postgresql")
    cells = (
        {}
        if args.no_append
        else await append_overhead(args, tmp, admin_dsn.render_as_string(hide_password=False))
    )
    big = None if args.no_big else (await one_million(args, tmp))[0]
    return cells, big


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    print(
        f"Audit transparency-log benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"; {machine()}; {load()} at the start"
    )
    with tempfile.TemporaryDirectory(prefix="ade-bench-audit-") as tmp:
        cells, big = asyncio.run(run(args, Path(tmp)))
    if cells:
        print_appends(cells, args)
        pure_us = pure_extend_us()
        print_pure(pure_us)
    out = summary(cells, big)
    if cells:
        out["extend_pure_us"] = round(pure_us, 1)
    if big is not None:
        print_big(big)
    print(f"\n({time.monotonic() - started:.0f} s; {load()} at the end)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
