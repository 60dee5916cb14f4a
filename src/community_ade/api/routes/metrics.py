"""``GET /metrics``: Prometheus text, read fresh from the database and Redis on each scrape
(no counters to keep in step across processes, except this process's WebSocket ones)."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select

from community_ade.api.deps import RuntimeDep
from community_ade.events.hub import Hub
from community_ade.events.relay import AUDIT_SOURCE
from community_ade.runtime import Runtime
from community_ade.storage.models import AuditEvent, Task

router = APIRouter(tags=["health"])

LOCK_DOMAIN_LIMIT = 1000  # resources inspected per domain per scrape


class _Collected:
    """A registry collector that hands over metrics gathered before rendering."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


async def _task_metrics(runtime: Runtime, hub: Hub) -> list[Metric]:
    tasks = GaugeMetricFamily("ade_tasks", "Tasks by lifecycle state.", labels=["state"])
    lag = GaugeMetricFamily(
        "ade_events_relay_lag", "Audit events committed but not yet relayed to the events stream."
    )
    async with runtime.sessions() as session:
        rows = (await session.execute(select(Task.state, func.count()).group_by(Task.state))).all()
        head = await session.scalar(select(func.max(AuditEvent.seq))) or 0
    for state, count in sorted(rows):
        tasks.add_metric([str(state)], count)
    relayed = await runtime.redis.hget(hub.keys.cursors, AUDIT_SOURCE)
    lag.add_metric([], max(0, head - int(relayed or 0)))
    return [tasks, lag]


async def _lock_metrics(runtime: Runtime) -> list[Metric]:
    holders = GaugeMetricFamily("ade_lock_holders", "Granted lock requests.", labels=["domain"])
    waiters = GaugeMetricFamily("ade_lock_waiters", "Queued lock requests.", labels=["domain"])
    for domain in await runtime.locks.domains():
        state = await runtime.locks.inspect_domain(domain=domain, limit=LOCK_DOMAIN_LIMIT)
        holders.add_metric([domain], sum(len(r.holders) for r in state.resources))
        waiters.add_metric([domain], sum(len(r.queue) for r in state.resources))
    return [holders, waiters]


def _ws_metrics(hub: Hub) -> list[Metric]:
    clients = GaugeMetricFamily("ade_ws_clients", "WebSocket clients of this process.")
    clients.add_metric([], len(hub.subscribers))
    slow = CounterMetricFamily(
        "ade_ws_slow_consumer_disconnects",
        "WebSocket clients this process cut off for falling behind (close 4408).",
    )
    slow.add_metric([], hub.slow_disconnects)
    delivered = CounterMetricFamily(
        "ade_ws_events_delivered", "Events queued to WebSocket clients of this process."
    )
    delivered.add_metric([], hub.delivered)
    return [clients, slow, delivered]


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus metrics: tasks by state, relay lag, lock holders and waiters, WebSocket
    clients."""
    hub: Hub = request.app.state.events_hub
    gathered = [
        *await _task_metrics(runtime, hub),
        *await _lock_metrics(runtime),
        *_ws_metrics(hub),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(gathered))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
