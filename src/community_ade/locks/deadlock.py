"""Pure waits-for graph: find a cycle through a waiting request and choose its victim.

The graph is a snapshot read atomically by ``waits_for.lua``. Nodes are lock requests;
edges say why one cannot proceed until another does:

- ``holds``: a waiting request conflicts with a holder of one of its resources;
- ``queued``: it waits behind an earlier conflicting waiter (a "soft" edge);
- ``permit``: its agent is at capacity, so it waits for the agent's current grants;
- ``task``: a granted request is not released until the other, still waiting, requests
  of its task are done (incremental acquisition, upgrades).

One ticket per request makes every ``queued`` edge point to a lower ticket, so queues
alone never close a cycle; cycles need a ``task`` or ``permit`` edge. Only cycles through
the searching request count: the request whose wait closed a cycle is sure to find it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EdgeKind(StrEnum):
    HOLDS = "holds"
    QUEUED = "queued"
    PERMIT = "permit"
    TASK = "task"


@dataclass(frozen=True)
class Node:
    request: str
    task: str
    agent: str
    ticket: int
    waiting: bool


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    via: str = ""  # the resource (holds, queued) or the agent (permit)


@dataclass(frozen=True)
class WaitsForGraph:
    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> WaitsForGraph:
        """Build from the JSON object ``waits_for.lua`` returns."""
        nodes = {
            rid: Node(
                request=rid,
                task=str(info["task"]),
                agent=str(info["agent"]),
                ticket=int(info["ticket"]),
                waiting=info["state"] == "waiting",
            )
            for rid, info in (snapshot.get("nodes") or {}).items()
        }
        edges = tuple(
            Edge(str(e["from"]), str(e["to"]), EdgeKind(e["kind"]), str(e.get("via", "")))
            for e in snapshot.get("edges") or []
        )
        return cls(nodes=nodes, edges=edges)

    def successors(self) -> dict[str, list[Edge]]:
        out: dict[str, list[Edge]] = {}
        for edge in self.edges:
            out.setdefault(edge.source, []).append(edge)
        return out


def find_cycle(graph: WaitsForGraph, start: str) -> list[Edge] | None:
    """Return the edges of a cycle that leads from ``start`` back to itself, or None.

    Depth-first over the snapshot; each node is expanded once, so the search is linear.
    """
    successors = graph.successors()
    path: list[Edge] = []
    visited: set[str] = set()
    # Stack of (node, iterator over its outgoing edges).
    stack: list[tuple[str, Iterator[Edge]]] = [(start, iter(successors.get(start, ())))]
    visited.add(start)
    while stack:
        _, pending = stack[-1]
        edge = next(pending, None)
        if edge is None:
            stack.pop()
            if path:
                path.pop()
            continue
        if edge.target == start:
            return [*path, edge]
        if edge.target in visited:
            continue
        visited.add(edge.target)
        path.append(edge)
        stack.append((edge.target, iter(successors.get(edge.target, ()))))
    return None


def choose_victim(graph: WaitsForGraph, cycle: list[Edge]) -> str:
    """The youngest waiting request of the cycle (highest ticket; ties by id).

    Only waiters are aborted: a holder is never revoked to break a deadlock.
    """
    waiting = [
        graph.nodes[e.source]
        for e in cycle
        if e.source in graph.nodes and graph.nodes[e.source].waiting
    ]
    if not waiting:
        raise ValueError("a waits-for cycle without a waiting request is impossible")
    return max(waiting, key=lambda n: (n.ticket, n.request)).request


def describe(graph: WaitsForGraph, cycle: list[Edge]) -> list[dict[str, Any]]:
    """The cycle as plain data, for ``DeadlockDetected`` and the event log."""
    described = []
    for edge in cycle:
        node = graph.nodes.get(edge.source)
        described.append(
            {
                "request": edge.source,
                "task": node.task if node else None,
                "agent": node.agent if node else None,
                "waits_for": edge.target,
                "kind": edge.kind.value,
                "via": edge.via,
            }
        )
    return described
