"""Benchmark of the REST API on PostgreSQL: lifecycle throughput and the review queue.

Issue 3. In one run, against a fresh database ``ade_bench_<random>`` created on the
PostgreSQL server of ``--database-url`` (an admin DSN; else ``$ADE_BENCH_DATABASE_URL``,
else postgresql://postgres@127.0.0.1:5432/postgres) and dropped at the end:

* the database is migrated and given people through the auth service: a submitter
  (``sam``), a reviewer in group ``db-owners`` (``rita``) and an admin (``ada``) with API
  tokens, plus reviewers, submitters and agents without tokens for the bulk data;
* ``python -m community_ade serve`` runs in a subprocess (uvicorn, one process), so the
  client's CPU is not the server's; the admin stores a two-rule policy over HTTP;
* **lifecycle**: 8 workers (``--workers``) on one keep-alive ``httpx.AsyncClient`` loop
  ``POST /tasks`` (sam) → ``POST /tasks/{id}/submit`` (sam) → ``POST
  /approvals/{id}/approve`` (rita, with the preview digest) for ``--seconds``; the figure
  is successful requests per second over the phase, 3 per task;
* **bulk load**: tasks are added straight into PostgreSQL (binary ``COPY``) up to
  ``--tasks`` (100 000) in all, shaped like submitted tasks: payload, resources, risk
  inputs and requirements documents computed by the service's own functions from the
  same policy, ``review_any`` and ``task_review_groups`` filled as submit fills them,
  votes in ``reviews``; 70 % finished (COMPLETED, REJECTED, CANCELLED, EXPIRED, FAILED),
  30 % open (SUBMITTED, REVIEWING); then ``VACUUM ANALYZE``;
* **reads**: ``GET /api/v1/approvals?awaiting=me&limit=20`` as rita, sequentially, after a
  warm-up, ``--requests`` times (within a time budget); then ``GET /api/v1/tasks?limit=20``
  for comparison;
* **where the time goes**: the queue's use case run in-process with every SQL statement
  timed, and ``EXPLAIN (ANALYZE, BUFFERS)`` of its slowest statement;
* the lifecycle once more, on the loaded database.

``python bench/api.py --quick`` ends within about a minute and a half on 2 cores. It prints
a table, then, as its last line, one JSON object (see ``summary``). ``bench/README.md``
explains every figure and records the last run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import IO, Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis
from sqlalchemy import event
from sqlalchemy.engine import make_url

from community_ade.approvals.policy import Requirements, compute_requirements
from community_ade.approvals.policy_document import PolicyDocument
from community_ade.approvals.reviews import ReviewService
from community_ade.approvals.risk import ResourceRef, RiskScore, score_task
from community_ade.approvals.service import requirements_document, resource_document
from community_ade.auth import service as auth
from community_ade.storage import db
from community_ade.storage.models import utcnow

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
API = "/api/v1"
QUEUE_PATH = f"{API}/approvals?awaiting=me&limit=20"
TASKS_PATH = f"{API}/tasks?limit=20"
TARGET_QUEUE_P95_MS = 50.0
TASK_TYPE = "files.write"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# The policy the admin stores: configuration needs a db-owner, network a net-owner; any
# other resource only the risk quorum (any reviewer).
POLICY: dict[str, Any] = {
    "rules": [
        {
            "name": "configuration needs db-owners",
            "task_types": ["files.*"],
            "resource_types": ["configuration"],
            "groups": [{"group": "db-owners", "count": 1}],
        },
        {
            "name": "network needs net-owners",
            "task_types": ["files.*"],
            "resource_types": ["network"],
            "groups": [{"group": "net-owners", "count": 1}],
        },
    ]
}
# username, role, groups. sam, rita and ada get tokens; the others only vote in bulk data.
PEOPLE = (
    ("sam", "submitter", ()),
    ("rita", "reviewer", ("db-owners",)),
    ("ada", "admin", ()),
    ("dora", "reviewer", ("db-owners",)),
    ("nick", "reviewer", ("net-owners",)),
    ("otto", "reviewer", ()),
)
REVIEWERS = ("rita", "dora", "nick", "otto")
BULK_SUBMITTERS = 20
BULK_AGENTS = 6
# Bulk data: the resource a task touches (and so which rule applies), with its share.
KINDS = (("configuration", 0.45), ("network", 0.25), ("service", 0.30))
# How finished tasks ended, as shares of the finished ones.
FINISHED = (
    ("COMPLETED", 0.74),
    ("REJECTED", 0.12),
    ("CANCELLED", 0.09),
    ("EXPIRED", 0.04),
    ("FAILED", 0.01),
)
AGENT_SHARE = 0.4  # of bulk tasks submitted by an agent (submitter = its owner)
RITA_SHARE = 0.02  # of bulk tasks submitted by the reviewer herself: never in her queue
RITA_VOTES = 0.4  # chance that rita is the (first) voter where she may vote
MAX_LINES = 300  # lines changed: log-uniform in 1..MAX_LINES
COPY_CHUNK = 20_000

T = TypeVar("T")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def run_in_scratch(prefix: str, run: Callable[[Path], Coroutine[Any, Any, T]]) -> tuple[T, float]:
    """``run(tmp)`` on a fresh event loop with a scratch directory removed afterwards;
    its result and the wall-clock seconds it took (a benchmark's ``main``)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        result = asyncio.run(run(Path(tmp)))
    return result, time.monotonic() - started


# -- CPU accounting: client, server process, PostgreSQL backends -------------------------


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc (Linux); None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields from the 3rd on (the name may hold spaces)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds spent during a phase by this process, the server and the database."""

    client: float
    server: float | None
    postgres: float | None

    def per_request_ms(self, requests: int) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None or not requests else f"{1000 * value / requests:.2f}"

        return f"{ms(self.client)}/{ms(self.server)}/{ms(self.postgres)}"


class CpuMeter:
    """Snapshots of CPU time; PostgreSQL backends are those connected to the bench database
    (found in ``pg_stat_activity``), readable when the server runs on this machine."""

    def __init__(self, admin: asyncpg.Connection, database: str, server_pid: int) -> None:
        self.admin = admin
        self.database = database
        self.server_pid = server_pid

    async def snapshot(self) -> tuple[float, float | None, dict[int, float | None]]:
        rows = await self.admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
        )
        backends = {int(r["pid"]): _cpu_seconds(int(r["pid"])) for r in rows}
        return time.process_time(), _cpu_seconds(self.server_pid), backends

    @contextlib.asynccontextmanager
    async def measure(self) -> AsyncIterator[list[CpuUse]]:
        """``async with meter.measure() as use:`` … ``use[0]`` is the phase's CpuUse."""
        out: list[CpuUse] = []
        client0, server0, backends0 = await self.snapshot()
        yield out
        client1, server1, backends1 = await self.snapshot()
        postgres: float | None = None
        if backends1 and all(v is not None for v in backends1.values()):
            postgres = sum(
                (after or 0.0) - (backends0.get(pid) or 0.0) for pid, after in backends1.items()
            )
        server = None if server0 is None or server1 is None else server1 - server0
        out.append(CpuUse(client1 - client0, server, postgres))


# -- the database -------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    admin_dsn: str
    name: str
    url: str

    @property
    def where(self) -> str:
        u = make_url(self.url)
        return f"{u.host or 'localhost'}:{u.port or 5432}"


async def create_database(admin_url: str) -> Database:
    url = make_url(admin_url).set(drivername="postgresql")
    admin_dsn = url.render_as_string(hide_password=False)
    name = f"ade_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return Database(admin_dsn, name, url.set(database=name).render_as_string(hide_password=False))


async def drop_database(database: Database) -> None:
    admin = await asyncpg.connect(database.admin_dsn, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class Cast:
    """Everyone in the benchmark: ids by username, the API tokens, bulk submitters, agents."""

    ids: dict[str, uuid.UUID]
    tokens: dict[str, str]
    submitters: list[uuid.UUID]
    agents: list[tuple[uuid.UUID, uuid.UUID]]  # (agent id, owner id)
    revision: str | None


async def prepare_database(url: str, rng: random.Random) -> Cast:
    """Migrate, then create people, groups, agents and tokens through the auth service."""
    engine = db.create_engine(url)
    try:
        await db.upgrade(engine)
        revision = await db.current_revision(engine)
        ids: dict[str, uuid.UUID] = {}
        tokens: dict[str, str] = {}
        async with db.sessionmaker(engine).begin() as session:
            groups = {
                name: (await auth.create_group(session, name)).id
                for name in ("db-owners", "net-owners")
            }
            for username, role, member_of in PEOPLE:
                user = await auth.create_user(session, username, role)
                ids[username] = user.id
                for group in member_of:
                    await auth.add_member(session, groups[group], user.id)
            for username in ("sam", "rita", "ada"):
                tokens[username], _ = await auth.create_token(
                    session, name="bench", user_id=ids[username]
                )
            submitters = [ids["sam"]]
            for i in range(BULK_SUBMITTERS):
                submitters.append((await auth.create_user(session, f"sub{i:02d}", "submitter")).id)
            agents = []
            for i in range(BULK_AGENTS):
                owner = rng.choice(submitters)
                agent = await auth.create_agent_identity(session, f"bench-agent-{i}", owner)
                agents.append((agent.id, owner))
    finally:
        await engine.dispose()
    return Cast(ids, tokens, submitters, agents, revision)


# -- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def choose_redis(explicit: str | None) -> str | None:
    """The Redis for the server: --redis-url (must answer), else $ADE_BENCH_REDIS_URL or DB 15
    of the local server when it answers, else None (the server's embedded Redis)."""
    candidate = explicit or os.environ.get("ADE_BENCH_REDIS_URL") or DEFAULT_REDIS_URL
    if candidate == "embedded":
        return None
    client = redis.Redis.from_url(candidate, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        if explicit:
            raise SystemExit(f"no Redis answers at {explicit}: {exc}") from None
        progress(f"no Redis at {candidate}; the server starts its embedded Redis")
        return None
    finally:
        client.close()
    return candidate


def open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Server:
    """``python -m community_ade serve`` in a subprocess, configured by environment."""

    def __init__(self, env: dict[str, str], log_path: Path, options: Sequence[str] = ()) -> None:
        self.env = env
        self.log_path = log_path
        self.options = tuple(options)  # more `serve` options, e.g. --no-worker
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 60.0) -> None:
        log = open_log(self.log_path)
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "community_ade", "serve", "--host", "127.0.0.1", "--port", str(self.port)),
                *self.options,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()  # the child has its own copy
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the server did not become ready:\n{log_tail(self.log_path)}")

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: lifespan closes
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


def server_env(
    database_url: str, tmp: Path, workspaces: Path, redis_url: str | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADE_")}
    env |= {
        "ADE_DATABASE_URL": database_url,
        "ADE_DATA_DIR": str(tmp / "data"),
        "ADE_WORKSPACE_ROOTS": json.dumps([str(workspaces)]),
        "ADE_LOG_LEVEL": "WARNING",  # no access log
        "ADE_LOCK_DOMAIN": f"bench-{uuid.uuid4().hex[:8]}",
    }
    if redis_url:
        env["ADE_REDIS_URL"] = redis_url
    return env


# -- the lifecycle over HTTP --------------------------------------------------------------


@dataclass
class Lifecycle:
    label: str
    workers: int
    seconds: float = 0.0
    tasks: int = 0
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu: CpuUse | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def task_body(workspace: Path, n: int) -> dict[str, Any]:
    """What the tests send (tests/api/test_lifecycle_api.py): one file, one resource."""
    return {
        "type": TASK_TYPE,
        "title": f"bench: turn on debug #{n}",
        "payload": {
            "root": str(workspace),
            "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
        },
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }


async def call(
    client: httpx.AsyncClient,
    out: Lifecycle,
    step: str,
    expect: int,
    method: str,
    url: str,
    **kwargs: Any,
) -> dict[str, Any] | None:
    """One timed request; None (and an error counted) unless it answered ``expect``."""
    started = time.perf_counter()
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        out.errors[f"{step}: {type(exc).__name__}"] += 1
        return None
    out.latencies[step].append((time.perf_counter() - started) * 1000)
    if response.status_code != expect:
        kind = ""
        with contextlib.suppress(ValueError):
            kind = str(response.json().get("type", ""))
        out.errors[f"{step}: {response.status_code} {kind}".rstrip()] += 1
        return None
    out.requests += 1
    body: dict[str, Any] = response.json()
    return body


async def one_task(
    client: httpx.AsyncClient, cast: Cast, workspace: Path, n: int, out: Lifecycle
) -> None:
    sam, rita = bearer(cast.tokens["sam"]), bearer(cast.tokens["rita"])
    created = await call(
        client,
        out,
        "create",
        201,
        "POST",
        f"{API}/tasks",
        json=task_body(workspace, n),
        headers=sam,
    )
    if created is None:
        return
    task_id = created["id"]
    submitted = await call(
        client, out, "submit", 200, "POST", f"{API}/tasks/{task_id}/submit", headers=sam
    )
    if submitted is None:
        return
    if submitted["auto_approved"] or submitted["task"]["state"] != "SUBMITTED":
        out.errors[f"submit: state {submitted['task']['state']}"] += 1
        return
    approved = await call(
        client,
        out,
        "approve",
        200,
        "POST",
        f"{API}/approvals/{task_id}/approve",
        json={"digest": submitted["preview_digest"]},
        headers=rita,
    )
    if approved is None:
        return
    if approved["task"]["state"] != "APPROVED":
        out.errors[f"approve: state {approved['task']['state']}"] += 1
        return
    out.tasks += 1


async def run_lifecycle(
    client: httpx.AsyncClient,
    cast: Cast,
    workspace: Path,
    label: str,
    workers: int,
    seconds: float,
    meter: CpuMeter | None = None,
) -> Lifecycle:
    """``workers`` loops of create → submit → approve until ``seconds`` have passed; each
    finishes the task it is on. The phase lasts until the last worker is done."""
    out = Lifecycle(label, workers)
    counter = iter(range(1, 1 << 62))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await one_task(client, cast, workspace, next(counter), out)

    async with contextlib.AsyncExitStack() as stack:
        use = await stack.enter_async_context(meter.measure()) if meter else None
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker() for _ in range(workers)))
        out.seconds = time.perf_counter() - started
    out.cpu = use[0] if use else None
    return out


# -- the bulk load ------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Everything of a bulk task that follows from what it touches and how many lines it
    changes, computed once by the service's own functions (risk, requirements)."""

    kind: str
    resources_json: str
    payload_json: str
    risk: RiskScore
    risk_inputs_json: str
    requirements: Requirements
    requirements_json: str
    voters: tuple[str, ...]  # who may vote: group members first, then any reviewer
    group_voters: tuple[str, ...]


def voters_for(requirements: Requirements) -> tuple[tuple[str, ...], tuple[str, ...]]:
    by_group = {g: {u for u, _, gs in PEOPLE if g in gs} for g in ("db-owners", "net-owners")}
    group_voters = sorted({u for g in requirements.groups for u in by_group.get(g.group, ())})
    general = list(REVIEWERS) if requirements.general_slots > 0 else []
    return tuple(dict.fromkeys([*group_voters, *general])), tuple(group_voters)


def make_shape_factory(workspace: Path) -> Callable[[str, int], Shape]:
    policy = PolicyDocument.model_validate(POLICY).to_policy(1)

    @cache
    def shape(kind: str, lines: int) -> Shape:
        ref = ResourceRef(type=kind, id=f"{kind}-1", actions=("write",))
        risk = score_task([ref], lines, [])
        requirements = compute_requirements(policy, TASK_TYPE, [ref], risk)
        content = "".join(f"key_{i} = {i}\n" for i in range(lines))
        payload = {
            "root": str(workspace),
            "changes": [{"path": f"{kind}.conf", "action": "write", "content": content}],
        }
        voters, group_voters = voters_for(requirements)
        return Shape(
            kind=kind,
            resources_json=json.dumps([resource_document(ref)]),
            payload_json=json.dumps(payload),
            risk=risk,
            # As TaskService.submit stores them.
            risk_inputs_json=json.dumps(
                dataclasses.asdict(risk.inputs) | {"level": risk.level.value}
            ),
            requirements=requirements,
            requirements_json=json.dumps(requirements_document(requirements)),
            voters=voters,
            group_voters=group_voters,
        )

    return shape


def weighted(rng: random.Random, table: Sequence[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in table], weights=[w for _, w in table])[0]


@dataclass
class Bulk:
    """Rows to COPY, by table."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    review_groups: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)


def pick_voters(
    rng: random.Random, shape: Shape, count: int, exclude: uuid.UUID, cast: Cast
) -> list[str]:
    """``count`` distinct voters who may vote on the task; a group member first when the
    task needs one; rita with probability RITA_VOTES when she may vote."""
    pool = [v for v in shape.voters if cast.ids[v] != exclude]
    chosen: list[str] = []
    if "rita" in pool and rng.random() < RITA_VOTES:
        chosen.append("rita")
    elif shape.group_voters:
        others = [v for v in shape.group_voters if v in pool and v != "rita"]
        if others:
            chosen.append(rng.choice(others))
    rest = [v for v in pool if v not in chosen and v != "rita"]
    rng.shuffle(rest)
    return (chosen + rest)[:count]


def generate(
    rng: random.Random, count: int, open_share: float, cast: Cast, workspace: Path
) -> Bulk:
    """``count`` tasks shaped like submitted ones, with their votes and review groups."""
    shape_of = make_shape_factory(workspace)
    now = utcnow()
    bulk = Bulk()
    for n in range(count):
        kind = weighted(rng, KINDS)
        lines = int(math.exp(rng.uniform(0, math.log(MAX_LINES))))
        shape = shape_of(kind, lines)
        if rng.random() < RITA_SHARE:
            submitter, agent = cast.ids["rita"], None
        elif rng.random() < AGENT_SHARE:
            agent, submitter = rng.choice(cast.agents)
        else:
            submitter, agent = rng.choice(cast.submitters), None
        task_id = uuid.uuid4()
        req = shape.requirements
        review_ttl = timedelta(seconds=int(req.review_ttl.total_seconds()))
        if rng.random() < open_share:
            # Open: submitted within the last 20 h, so the 24 h review deadline is ahead
            # and the server's expiry sweep leaves it alone.
            submitted = now - timedelta(seconds=rng.uniform(60, 20 * 3600))
            reviewing = req.approvals_needed >= 2 and rng.random() < 0.7
            state = "REVIEWING" if reviewing else "SUBMITTED"
            decided = None
            votes = pick_voters(rng, shape, 1, submitter, cast) if reviewing else []
            decision = "approve"
        else:
            submitted = now - timedelta(days=rng.uniform(1, 90))
            state = weighted(rng, FINISHED)
            decided = submitted + (
                review_ttl if state == "EXPIRED" else timedelta(seconds=rng.uniform(60, 8 * 3600))
            )
            if state in ("COMPLETED", "FAILED"):
                votes = pick_voters(rng, shape, req.approvals_needed, submitter, cast)
            elif state == "REJECTED":
                votes = pick_voters(rng, shape, 1, submitter, cast)
            else:
                votes = []
            decision = "reject" if state == "REJECTED" else "approve"
        created = submitted - timedelta(seconds=rng.uniform(10, 1800))
        digest = f"{rng.getrandbits(256):064x}"
        last = decided or (submitted + timedelta(minutes=5) if votes else submitted)
        bulk.states[state] += 1
        bulk.tasks.append(
            {
                "id": task_id,
                "type": TASK_TYPE,
                "title": f"{kind}: change {n}",
                "description": "",
                "payload": shape.payload_json,
                "resources": shape.resources_json,
                "priority": 100,
                "state": state,
                "version": 3 + len(votes),
                "submitter_id": submitter,
                "agent_id": agent,
                "preview_digest": digest,
                "precondition_fingerprint": f"sha256:{rng.getrandbits(256):064x}",
                "risk_score": shape.risk.total,
                "risk_inputs": shape.risk_inputs_json,
                "requirements": shape.requirements_json,
                "policy_version": req.policy_version,
                "review_any": req.general_slots > 0,  # as TaskService._set_reviewers
                "review_deadline": submitted + review_ttl,
                "approval_deadline": decided + req.approval_ttl
                if state in ("COMPLETED", "FAILED")
                else None,
                "fence": None,
                "attempts": 1 if state in ("COMPLETED", "FAILED") else 0,
                "result": None,
                "created_at": created,
                "updated_at": last,
                "submitted_at": submitted,
                "decided_at": decided,
            }
        )
        bulk.review_groups.extend((task_id, g.group) for g in req.groups)
        for i, voter in enumerate(votes):
            bulk.reviews.append(
                {
                    "id": uuid.uuid4(),
                    "task_id": task_id,
                    "actor_id": cast.ids[voter],
                    "decision": decision,
                    "digest": digest,
                    "via_delegation_for": None,
                    "delegate_to": None,
                    "comment": "",
                    "stale": False,
                    "created_at": submitted + timedelta(minutes=1 + i),
                }
            )
    return bulk


@dataclass
class Load:
    added: int = 0
    reviews: int = 0
    review_groups: int = 0
    states: Counter[str] = field(default_factory=Counter)
    generate_s: float = 0.0
    copy_s: float = 0.0
    vacuum_s: float = 0.0
    notes: list[str] = field(default_factory=list)


async def table_columns(conn: asyncpg.Connection, table: str) -> dict[str, bool]:
    """Column name → whether a value is required (NOT NULL without a default)."""
    rows = await conn.fetch(
        "SELECT column_name, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = $1",
        table,
    )
    return {
        r["column_name"]: r["is_nullable"] == "NO" and r["column_default"] is None for r in rows
    }


async def copy_rows(
    conn: asyncpg.Connection, table: str, rows: Sequence[dict[str, Any]], load: Load
) -> None:
    """COPY the keys the table has; refuse when it needs a column the rows lack."""
    if not rows:
        return
    columns = await table_columns(conn, table)
    missing = [c for c, required in columns.items() if required and c not in rows[0]]
    if missing:
        raise RuntimeError(f"bench/api.py does not fill {table}.{', '.join(missing)}: update it")
    names = [c for c in rows[0] if c in columns]
    ignored = sorted(set(rows[0]) - set(columns))
    if ignored:
        load.notes.append(f"{table} has no column {', '.join(ignored)}: left out")
    for start in range(0, len(rows), COPY_CHUNK):
        chunk = rows[start : start + COPY_CHUNK]
        await conn.copy_records_to_table(
            table, records=[tuple(r[c] for c in names) for r in chunk], columns=names
        )


async def bulk_load(
    database: Database, target: int, open_share: float, cast: Cast, workspace: Path, seed: int
) -> Load:
    load = Load()
    conn = await asyncpg.connect(database.url, timeout=10)
    try:
        existing = int(await conn.fetchval("SELECT count(*) FROM tasks"))
        count = max(0, target - existing)
        started = time.perf_counter()
        bulk = generate(random.Random(seed), count, open_share, cast, workspace)
        load.generate_s = time.perf_counter() - started
        progress(f"generated {count} tasks in {load.generate_s:.1f} s; copying")
        started = time.perf_counter()
        async with conn.transaction():
            await copy_rows(conn, "tasks", bulk.tasks, load)
            await copy_rows(conn, "reviews", bulk.reviews, load)
            if bulk.review_groups:
                if await table_columns(conn, "task_review_groups"):
                    rows = [{"task_id": t, "group_name": g} for t, g in bulk.review_groups]
                    await copy_rows(conn, "task_review_groups", rows, load)
                    load.review_groups = len(rows)
                else:
                    load.notes.append("no task_review_groups table: review groups left out")
        load.copy_s = time.perf_counter() - started
        started = time.perf_counter()
        tables = ["tasks", "reviews"] + (["task_review_groups"] if load.review_groups else [])
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
        load.vacuum_s = time.perf_counter() - started
        load.added, load.reviews, load.states = count, len(bulk.reviews), bulk.states
        await check_shapes(conn, load)
    finally:
        await conn.close()
    return load


async def check_shapes(conn: asyncpg.Connection, load: Load) -> None:
    """Bulk rows must look like the API's: compare the JSON keys with a lifecycle task's."""
    api_row = await conn.fetchrow(
        "SELECT requirements, risk_inputs, resources, payload FROM tasks "
        "WHERE title LIKE 'bench: %' AND requirements IS NOT NULL LIMIT 1"
    )
    bulk_row = await conn.fetchrow(
        "SELECT requirements, risk_inputs, resources, payload FROM tasks "
        "WHERE title NOT LIKE 'bench: %' LIMIT 1"
    )
    if api_row is None or bulk_row is None:
        return
    for column in ("requirements", "risk_inputs", "resources", "payload"):
        api_value, bulk_value = json.loads(api_row[column]), json.loads(bulk_row[column])
        if isinstance(api_value, list):
            api_value, bulk_value = api_value[0], bulk_value[0]
        if set(api_value) != set(bulk_value):
            load.notes.append(
                f"tasks.{column}: bulk keys {sorted(bulk_value)} differ from the API's "
                f"{sorted(api_value)}"
            )


# -- reads ----------------------------------------------------------------------------------


@dataclass
class Reads:
    path: str
    ms: list[float] = field(default_factory=list)
    items: int = 0
    total: int | None = None
    errors: Counter[str] = field(default_factory=Counter)
    budget_hit: bool = False
    cpu: CpuUse | None = None


async def measure_reads(
    client: httpx.AsyncClient,
    path: str,
    token: str,
    requests: int,
    warmup: int,
    budget_s: float,
    meter: CpuMeter | None,
) -> Reads:
    """Sequential GETs on one keep-alive connection, after ``warmup`` untimed ones; stops
    early when ``budget_s`` is spent."""
    out = Reads(path)
    headers = bearer(token)
    for _ in range(warmup):
        await client.get(path, headers=headers)
    async with contextlib.AsyncExitStack() as stack:
        use = await stack.enter_async_context(meter.measure()) if meter else None
        deadline = time.perf_counter() + budget_s
        for _ in range(requests):
            if time.perf_counter() > deadline:
                out.budget_hit = True
                break
            started = time.perf_counter()
            response = await client.get(path, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                out.errors[str(response.status_code)] += 1
                continue
            out.ms.append(elapsed)
            page = response.json()
            out.items, out.total = len(page["items"]), page["total"]
    out.cpu = use[0] if use else None
    return out


# -- where the queue's time goes --------------------------------------------------------


@dataclass
class Profile:
    calls: int = 0
    wall_ms: float = 0.0  # mean per call
    sql_ms: float = 0.0  # mean per call
    statements: list[tuple[float, int, str]] = field(default_factory=list)  # ms/call, n/call
    explain: list[str] = field(default_factory=list)
    error: str | None = None


def one_line(sql: str, width: int = 110) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= width else text[: width - 1] + "…"


async def profile_queue(url: str, token: str, calls: int, explain: bool) -> Profile:
    """The queue's use case in-process (``ReviewService.open_for_review`` for rita, one
    session per call, like a request), every SQL statement timed at the cursor; then
    ``EXPLAIN (ANALYZE, BUFFERS)`` of the slowest statement of the last call."""
    profile = Profile()
    engine = db.create_engine(url)
    timings: list[tuple[str, Any, float]] = []

    def before(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    def after(conn: Any, _cursor: Any, stmt: str, params: Any, _ctx: Any, _many: bool) -> None:
        started = conn.info["bench_t0"].pop()
        timings.append((stmt, params, (time.perf_counter() - started) * 1000))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    try:
        per_statement: dict[str, list[float]] = defaultdict(list)
        last: list[tuple[str, Any, float]] = []
        for n in range(calls + 1):  # call 0 warms the connection up: not counted
            async with db.sessionmaker(engine)() as session:
                principal = await auth.authenticate_token(session, token, now=utcnow())
                timings.clear()
                started = time.perf_counter()
                await ReviewService(session).open_for_review(
                    principal, awaiting_me=True, page=1, limit=20
                )
                wall = (time.perf_counter() - started) * 1000
                last = list(timings)
                await session.rollback()  # authenticating may touch last_used_at: keep nothing
            if n == 0:
                continue
            profile.calls += 1
            profile.wall_ms += wall / calls
            for stmt, _params, ms in last:
                per_statement[stmt].append(ms)
                profile.sql_ms += ms / calls
        profile.statements = sorted(
            ((sum(v) / calls, len(v) // calls, one_line(s)) for s, v in per_statement.items()),
            reverse=True,
        )
        if explain and last:
            slowest = max(last, key=lambda t: t[2])
            profile.explain = await explain_analyze(url, slowest[0], slowest[1])
    except Exception as exc:  # a diagnostic: report, never fail the benchmark
        profile.error = f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()
    return profile


async def explain_analyze(url: str, statement: str, params: Any) -> list[str]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        args = list(params) if isinstance(params, list | tuple) else []
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *args)
    finally:
        await conn.close()
    return [str(r[0]) for r in rows]


# -- the run ------------------------------------------------------------------------------


@dataclass
class Report:
    started: float
    when: str
    machine: str
    database: Database | None = None
    revision: str | None = None
    redis_url: str | None = None
    lifecycle: Lifecycle | None = None
    load: Load | None = None
    tasks_in_db: int = 0
    open_in_db: int = 0
    queue: Reads | None = None
    tasks: Reads | None = None
    profile: Profile | None = None
    loaded: Lifecycle | None = None


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"uvicorn {metadata.version('uvicorn')} (h11, asyncio), httpx {httpx.__version__}, "
        f"asyncpg {asyncpg.__version__}, {platform.platform()}"
    )


async def count_tasks(database: Database) -> tuple[int, int]:
    conn = await asyncpg.connect(database.url, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE state IN ('SUBMITTED', 'REVIEWING')) "
            "AS open FROM tasks"
        )
    finally:
        await conn.close()
    return int(row["n"]), int(row["open"])


async def run(args: argparse.Namespace, tmp: Path, report: Report) -> None:
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None
    loop.add_signal_handler(signal.SIGTERM, current.cancel)  # clean up on SIGTERM as well
    rng = random.Random(args.seed)
    workspaces = tmp / "workspaces"
    workspace = workspaces / "demo"
    workspace.mkdir(parents=True)
    (workspace / "app.conf").write_text("debug = false\n")
    report.redis_url = choose_redis(args.redis_url)
    database = await create_database(args.database_url)
    report.database = database
    progress(f"database {database.name} on {database.where}")
    server: Server | None = None
    admin: asyncpg.Connection | None = None
    try:
        cast = await prepare_database(database.url, rng)
        report.revision = cast.revision
        server = Server(
            server_env(database.url, tmp, workspaces, report.redis_url), tmp / "server.log"
        )
        await server.start()
        progress(f"server pid {server.pid} on {server.base_url}")
        admin = await asyncpg.connect(database.admin_dsn, timeout=10)
        meter = CpuMeter(admin, database.name, server.pid)
        await measure_all(args, report, database, server, meter, cast, workspace)
    finally:
        if admin is not None:
            await admin.close()
        if server is not None:
            await server.stop()
            if args.keep_log:
                progress(f"server log:\n{log_tail(server.log_path, 200)}")
        if args.keep_database:
            progress(f"kept database {database.name}")
        else:
            await drop_database(database)
            progress(f"dropped database {database.name}")


async def measure_all(
    args: argparse.Namespace,
    report: Report,
    database: Database,
    server: Server,
    meter: CpuMeter,
    cast: Cast,
    workspace: Path,
) -> None:
    limits = httpx.Limits(max_connections=args.workers, max_keepalive_connections=args.workers)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as client:
        stored = await client.put(
            f"{API}/policies", json=POLICY, headers=bearer(cast.tokens["ada"])
        )
        stored.raise_for_status()
        progress("lifecycle warm-up (1 s)")
        await run_lifecycle(client, cast, workspace, "warm-up", args.workers, 1.0)
        progress(f"lifecycle on the (nearly) empty database, {args.seconds:g} s")
        report.lifecycle = await run_lifecycle(
            client, cast, workspace, "empty database", args.workers, args.seconds, meter
        )
        progress(f"lifecycle: {report.lifecycle.rps:.0f} req/s; bulk load to {args.tasks} tasks")
        report.load = await bulk_load(
            database, args.tasks, args.open_share, cast, workspace, args.seed
        )
        report.tasks_in_db, report.open_in_db = await count_tasks(database)
        progress(f"{report.tasks_in_db} tasks ({report.open_in_db} open); reading the queue")
        rita = cast.tokens["rita"]
        report.queue = await measure_reads(
            client, QUEUE_PATH, rita, args.requests, args.warmup, args.budget, meter
        )
        progress(f"queue p95 {percentile(report.queue.ms, 0.95):.1f} ms; reading /tasks")
        report.tasks = await measure_reads(
            client, TASKS_PATH, rita, args.requests, args.warmup, args.budget, meter
        )
        slow = percentile(report.queue.ms, 0.95) > TARGET_QUEUE_P95_MS
        progress("profiling the queue in-process")
        report.profile = await profile_queue(
            database.url, rita, args.profile_calls, explain=args.explain or slow
        )
        if args.loaded_seconds > 0:
            progress(f"lifecycle on the loaded database, {args.loaded_seconds:g} s")
            report.loaded = await run_lifecycle(
                client,
                cast,
                workspace,
                f"{report.tasks_in_db:,} tasks".replace(",", " "),
                args.workers,
                args.loaded_seconds,
                meter,
            )


# -- the report -----------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def print_lifecycle(rows: Iterable[Lifecycle]) -> None:
    print(
        "  database         tasks  req/s tasks/s errors  create p50/p95  submit p50/p95"
        "  approve p50/p95  cpu ms/req client/server/pg"
    )
    for r in rows:
        steps = "  ".join(
            f"{fmt(percentile(r.latencies[s], 0.5)):>6}/{fmt(percentile(r.latencies[s], 0.95)):<6}"
            for s in ("create", "submit", "approve")
        )
        tasks_per_s = r.tasks / r.seconds if r.seconds else math.nan
        cpu = r.cpu.per_request_ms(r.requests) if r.cpu else "-"
        errors = sum(r.errors.values())
        print(
            f"  {r.label:<14} {r.tasks:>7} {fmt(r.rps):>6} {fmt(tasks_per_s):>7} {errors:>6}"
            f"  {steps}   {cpu}"
        )
        for what, n in r.errors.most_common(5):
            print(f"    !! {n} × {what}")


def print_reads(rows: Iterable[Reads]) -> None:
    print(
        "  request                                      n    p50    p95    p99    max   mean"
        "  items   total  cpu ms/req client/server/pg"
    )
    for r in rows:
        mean = sum(r.ms) / len(r.ms) if r.ms else math.nan
        stats = (
            "".join(f"{fmt(percentile(r.ms, q)):>7}" for q in (0.5, 0.95, 0.99, 1.0))
            + f"{fmt(mean):>7}"
        )
        cpu = r.cpu.per_request_ms(len(r.ms)) if r.cpu else "-"
        print(f"  GET {r.path:<38} {len(r.ms):>4}{stats} {r.items:>6} {r.total or 0:>7}  {cpu}")
        if r.budget_hit:
            print("    (time budget spent before all requests were made)")
        for what, n in r.errors.most_common(5):
            print(f"    !! {n} × HTTP {what}")


def print_profile(p: Profile) -> None:
    print(
        "\nWhere the queue's time goes: ReviewService.open_for_review(rita, awaiting_me, limit=20)"
        " in-process, SQL timed at the cursor"
    )
    if p.error:
        print(f"  profile failed: {p.error}")
        return
    print(
        f"  {p.calls} calls: {fmt(p.wall_ms, 2)} ms per call, of which SQL {fmt(p.sql_ms, 2)} ms"
        f" and Python {fmt(p.wall_ms - p.sql_ms, 2)} ms"
    )
    for ms, n, sql in p.statements[:6]:
        print(f"  {ms:8.2f} ms  ×{n}  {sql}")
    if p.explain:
        print("  EXPLAIN (ANALYZE, BUFFERS) of the slowest statement:")
        for line in p.explain[:60]:
            print(f"    {line}")


def print_report(report: Report, args: argparse.Namespace) -> None:
    d = report.database
    print(f"API benchmark, {report.when}; {report.machine}")
    if d is not None:
        print(
            f"PostgreSQL {d.where}, database {d.name} (schema revision {report.revision}); "
            f"server: python -m community_ade serve, Redis {report.redis_url or 'embedded'}"
        )
    if report.lifecycle:
        print(
            "\nLifecycle (POST /tasks → POST /tasks/{id}/submit → POST /approvals/{id}/approve),"
            f" {args.workers} workers, one keep-alive client; times in ms"
        )
        print_lifecycle(r for r in (report.lifecycle, report.loaded) if r is not None)
    if report.load:
        load = report.load
        states = ", ".join(f"{s} {n}" for s, n in load.states.most_common())
        print(
            f"\nBulk load: {load.added} tasks ({states}), {load.reviews} reviews, "
            f"{load.review_groups} review groups; generated in {load.generate_s:.1f} s, "
            f"COPY {load.copy_s:.1f} s, VACUUM ANALYZE {load.vacuum_s:.1f} s"
        )
        for note in load.notes:
            print(f"  note: {note}")
        print(f"  {report.tasks_in_db} tasks in the database, {report.open_in_db} open")
    if report.queue and report.tasks:
        print("\nReads, sequential on one keep-alive connection, as rita (ms)")
        print_reads((report.queue, report.tasks))
    if report.profile:
        print_profile(report.profile)
    if report.queue:
        p95 = percentile(report.queue.ms, 0.95)
        verdict = "PASS" if p95 <= TARGET_QUEUE_P95_MS else "FAIL"
        print("\nTarget (issue 3)")
        print(
            f"  {verdict}  queue p95 = {fmt(p95)} ms at {report.tasks_in_db} tasks "
            f"(≤ {TARGET_QUEUE_P95_MS:g} ms at 100 000)"
        )


def summary(report: Report) -> dict[str, Any]:
    queue = report.queue.ms if report.queue else []
    tasks = report.tasks.ms if report.tasks else []
    life, loaded = report.lifecycle, report.loaded
    p95 = percentile(queue, 0.95)
    return {
        "lifecycle_rps": rounded(life.rps, 1) if life else None,
        "queue_p50_ms": rounded(percentile(queue, 0.5)),
        "queue_p95_ms": rounded(p95),
        "tasks_in_db": report.tasks_in_db,
        "queue_p99_ms": rounded(percentile(queue, 0.99)),
        "queue_max_ms": rounded(percentile(queue, 1.0)),
        "queue_requests": len(queue),
        "queue_awaiting_total": report.queue.total if report.queue else None,
        "open_tasks": report.open_in_db,
        "tasks_list_p50_ms": rounded(percentile(tasks, 0.5)),
        "tasks_list_p95_ms": rounded(percentile(tasks, 0.95)),
        "lifecycle_tasks_per_s": rounded(life.tasks / life.seconds, 1) if life else None,
        "lifecycle_errors": sum(life.errors.values()) if life else None,
        "lifecycle_rps_loaded": rounded(loaded.rps, 1) if loaded else None,
        "queue_p95_target_met": None if math.isnan(p95) else p95 <= TARGET_QUEUE_P95_MS,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short run (about 1½ min on 2 cores)")
    p.add_argument(
        "--database-url",
        default=os.environ.get("ADE_BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="admin DSN of the PostgreSQL server to create the bench database on "
        f"($ADE_BENCH_DATABASE_URL, else {DEFAULT_DATABASE_URL})",
    )
    p.add_argument(
        "--redis-url",
        help=f"Redis for the server ($ADE_BENCH_REDIS_URL, else {DEFAULT_REDIS_URL} when it "
        "answers, else the embedded one; 'embedded' forces that)",
    )
    p.add_argument("--tasks", type=int, default=100_000, help="tasks in the database (100000)")
    p.add_argument("--open-share", type=float, default=0.3, help="share of open bulk tasks (0.3)")
    p.add_argument("--workers", type=int, default=8, help="concurrent lifecycle workers (8)")
    p.add_argument("--seconds", type=float, help="lifecycle phase length (10; quick 4)")
    p.add_argument(
        "--loaded-seconds",
        type=float,
        help="lifecycle on the loaded database (10; quick 4; 0: skip)",
    )
    p.add_argument("--requests", type=int, help="timed GETs of each read (200; quick 100)")
    p.add_argument("--warmup", type=int, help="untimed GETs first (20; quick 10)")
    p.add_argument("--budget", type=float, help="time budget per read phase, s (120; quick 40)")
    p.add_argument("--profile-calls", type=int, default=5, help="in-process queue calls (5)")
    p.add_argument(
        "--explain", action="store_true", help="EXPLAIN ANALYZE even when the queue is fast"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed of the bulk data (1)")
    p.add_argument("--keep-database", action="store_true", help="do not drop the database")
    p.add_argument("--keep-log", action="store_true", help="print the server's log at the end")
    args = p.parse_args(argv)
    quick = args.quick
    args.seconds = args.seconds if args.seconds is not None else (4.0 if quick else 10.0)
    if args.loaded_seconds is None:
        args.loaded_seconds = 4.0 if quick else 10.0
    args.requests = args.requests or (100 if quick else 200)
    args.warmup = args.warmup if args.warmup is not None else (10 if quick else 20)
    args.budget = args.budget or (40.0 if quick else 120.0)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    report = Report(
        started=time.monotonic(), when=time.strftime("%Y-%m-%d %H:%M %Z"), machine=machine()
    )
    try:
        with tempfile.TemporaryDirectory(prefix="ade-bench-") as tmp:
            asyncio.run(run(args, Path(tmp), report))
    except (asyncio.CancelledError, KeyboardInterrupt):
        progress("interrupted; cleaned up")
        raise SystemExit(130) from None
    print_report(report, args)
    print(f"\n({time.monotonic() - report.started:.0f} s)")
    print(json.dumps(summary(report)))


if __name__ == "__main__":
    main()
