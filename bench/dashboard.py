"""Benchmark of the dashboard's review queue on PostgreSQL at 100 000 tasks.

One run, against a fresh database ``ade_bench_<random>`` on the server of
``--database-url`` (an admin DSN; default postgresql://postgres@127.0.0.1:5432/postgres),
dropped at the end. The people and the bulk load are ``bench/api.py``'s (70 % finished,
30 % open tasks, votes, review groups). Then the queue page's query (``load_queue``) runs
in-process as the reviewer ``rita``, ``--calls`` times per view after a warm-up, next to
the API's "awaiting me" query for comparison:

* ``all``: every open task, the ones waiting on rita first (the dashboard's default);
* ``mine``: only those waiting on rita ("Waiting on me");
* ``risk``: high-risk open tasks by risk, descending.

The last line is one JSON object: ``queue_p50_ms_*`` and ``queue_p95_ms_*``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from api import bulk_load, create_database, drop_database, prepare_database
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.reviews import ReviewService
from community_ade.auth import service as auth
from community_ade.dashboard.views.queue import QueueFilters, load_queue
from community_ade.storage import db
from community_ade.storage.models import utcnow

VIEWS: dict[str, QueueFilters] = {
    "all": QueueFilters(),
    "mine": QueueFilters(mine=True),
    "risk": QueueFilters(risk="high", sort="risk", order="desc"),
}
WARM_UP = 3


async def timed(
    sessions: Any, calls: int, action: Callable[[AsyncSession], Awaitable[object]]
) -> list[float]:
    times = []
    for _ in range(WARM_UP + calls):
        async with sessions.begin() as session:
            started = time.perf_counter()
            await action(session)
            times.append((time.perf_counter() - started) * 1000)
    return sorted(times[WARM_UP:])


def p95(values: list[float]) -> float:
    return values[max(0, round(0.95 * len(values)) - 1)]


async def run(args: argparse.Namespace) -> dict[str, float]:
    workspace = Path(tempfile.mkdtemp()) / "workspaces" / "demo"
    workspace.mkdir(parents=True)
    database = await create_database(args.database_url)
    try:
        cast = await prepare_database(database.url, random.Random(args.seed))
        await bulk_load(database, args.tasks, 0.3, cast, workspace, args.seed)
        engine = db.create_engine(database.url)
        sessions = db.sessionmaker(engine)
        try:
            async with sessions.begin() as session:
                rita = await auth.authenticate_token(session, cast.tokens["rita"], now=utcnow())
            results: dict[str, float] = {}

            def api(session: AsyncSession) -> Awaitable[object]:
                reviews = ReviewService(session)
                return reviews.open_for_review(rita, awaiting_me=True, page=1, limit=20)

            views: dict[str, Callable[[AsyncSession], Awaitable[object]]] = {"api_awaiting": api}
            for name, filters in VIEWS.items():
                views[name] = lambda s, f=filters: load_queue(s, rita, f)
            print(f"{'view':<14} {'p50 ms':>8} {'p95 ms':>8}   ({args.tasks} tasks)")
            for name, action in views.items():
                times = await timed(sessions, args.calls, action)
                results[f"queue_p50_ms_{name}"] = round(statistics.median(times), 1)
                results[f"queue_p95_ms_{name}"] = round(p95(times), 1)
                print(f"{name:<14} {statistics.median(times):8.1f} {p95(times):8.1f}")
            return results
        finally:
            await engine.dispose()
    finally:
        await drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
