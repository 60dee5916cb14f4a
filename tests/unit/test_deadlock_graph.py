"""Property tests of the pure waits-for graph (``community_ade.locks.deadlock``)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from community_ade.locks.deadlock import (
    Edge,
    EdgeKind,
    WaitsForGraph,
    choose_victim,
    describe,
    find_cycle,
)

KINDS = [k.value for k in EdgeKind]


@st.composite
def snapshots(draw: st.DrawFn, max_nodes: int = 9) -> dict[str, Any]:
    """A snapshot shaped like ``waits_for.lua``'s JSON: string tickets, optional edges."""
    n = draw(st.integers(min_value=1, max_value=max_nodes))
    ids = [f"req{i}" for i in range(n)]
    nodes = {
        rid: {
            "task": draw(st.sampled_from(["t1", "t2", "t3"])),
            "agent": draw(st.sampled_from(["a1", "a2"])),
            # Ties are possible on purpose (then the id decides).
            "ticket": str(draw(st.integers(min_value=1, max_value=12))),
            "state": draw(st.sampled_from(["waiting", "granted"])),
        }
        for rid in ids
    }
    edges = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "from": st.sampled_from(ids),
                    "to": st.sampled_from(ids),
                    "kind": st.sampled_from(KINDS),
                    "via": st.sampled_from(["A", "B", "a1", "t1"]),
                }
            ),
            max_size=3 * n,
        )
    )
    snapshot: dict[str, Any] = {"nodes": nodes, "truncated": False}
    if edges:  # the script omits "edges" when there are none
        snapshot["edges"] = edges
    return snapshot


def reachable(graph: WaitsForGraph, sources: set[str]) -> set[str]:
    """Brute force: every node reachable from ``sources`` (including them)."""
    seen = set(sources)
    changed = True
    while changed:
        changed = False
        for edge in graph.edges:
            if edge.source in seen and edge.target not in seen:
                seen.add(edge.target)
                changed = True
    return seen


def has_cycle_through(graph: WaitsForGraph, start: str) -> bool:
    successors = {e.target for e in graph.edges if e.source == start}
    return start in reachable(graph, successors)


@given(snapshots())
def test_from_snapshot_reads_the_script_format(snapshot: dict[str, Any]) -> None:
    graph = WaitsForGraph.from_snapshot(snapshot)
    assert set(graph.nodes) == set(snapshot["nodes"])
    for rid, info in snapshot["nodes"].items():
        node = graph.nodes[rid]
        assert node.request == rid
        assert node.ticket == int(info["ticket"])
        assert node.waiting is (info["state"] == "waiting")
        assert (node.task, node.agent) == (info["task"], info["agent"])
    raw_edges = snapshot.get("edges", [])
    assert [(e.source, e.target, e.kind.value, e.via) for e in graph.edges] == [
        (e["from"], e["to"], e["kind"], e["via"]) for e in raw_edges
    ]


def test_from_snapshot_of_an_empty_graph() -> None:
    assert WaitsForGraph.from_snapshot({}).edges == ()
    # cjson encodes an empty Lua table as {} — "nodes" then is {}, "edges" is missing.
    graph = WaitsForGraph.from_snapshot({"nodes": {}, "truncated": False})
    assert graph.nodes == {}
    assert find_cycle(graph, "nobody") is None


@settings(max_examples=300)
@given(snapshots(), st.data())
def test_find_cycle_agrees_with_brute_force_reachability(
    snapshot: dict[str, Any], data: st.DataObject
) -> None:
    graph = WaitsForGraph.from_snapshot(snapshot)
    start = data.draw(st.sampled_from(sorted(graph.nodes)))
    cycle = find_cycle(graph, start)
    assert (cycle is not None) is has_cycle_through(graph, start)
    if cycle is None:
        return
    # The edges are real edges of the graph and form a path start -> ... -> start.
    assert cycle
    assert all(edge in graph.edges for edge in cycle)
    assert cycle[0].source == start
    assert cycle[-1].target == start
    for before, after in itertools.pairwise(cycle):
        assert before.target == after.source
    # A simple cycle: no node is visited twice.
    visited = [edge.source for edge in cycle]
    assert len(visited) == len(set(visited))


@settings(max_examples=300)
@given(snapshots(), st.data())
def test_victim_is_the_youngest_waiting_request_of_the_cycle(
    snapshot: dict[str, Any], data: st.DataObject
) -> None:
    graph = WaitsForGraph.from_snapshot(snapshot)
    start = data.draw(st.sampled_from(sorted(graph.nodes)))
    cycle = find_cycle(graph, start)
    if cycle is None:
        return
    waiting = [graph.nodes[e.source] for e in cycle if graph.nodes[e.source].waiting]
    if not waiting:
        with pytest.raises(ValueError, match="without a waiting request"):
            choose_victim(graph, cycle)
        return
    victim = choose_victim(graph, cycle)
    node = graph.nodes[victim]
    assert node.waiting
    assert victim in {e.source for e in cycle}
    for other in waiting:
        assert (other.ticket, other.request) <= (node.ticket, node.request)


@given(snapshots())
def test_a_start_without_edges_never_finds_a_cycle(snapshot: dict[str, Any]) -> None:
    graph = WaitsForGraph.from_snapshot(snapshot)
    isolated = [n for n in graph.nodes if all(e.source != n for e in graph.edges)]
    for node in isolated:
        assert find_cycle(graph, node) is None


def two_task_deadlock() -> dict[str, Any]:
    """What waits_for.lua reports for T1: holds A, wants B; T2: holds B, wants A."""
    return {
        "nodes": {
            "g1": {"task": "T1", "agent": "a1", "ticket": "10", "state": "granted"},
            "g2": {"task": "T2", "agent": "a2", "ticket": "11", "state": "granted"},
            "w1": {"task": "T1", "agent": "a1", "ticket": "12", "state": "waiting"},
            "w2": {"task": "T2", "agent": "a2", "ticket": "13", "state": "waiting"},
        },
        "edges": [
            {"from": "w1", "to": "g2", "kind": "holds", "via": "B"},
            {"from": "g2", "to": "w2", "kind": "task", "via": "T2"},
            {"from": "w2", "to": "g1", "kind": "holds", "via": "A"},
            {"from": "g1", "to": "w1", "kind": "task", "via": "T1"},
        ],
    }


@pytest.mark.parametrize("start", ["w1", "w2"])
def test_two_task_deadlock_aborts_the_younger_request(start: str) -> None:
    graph = WaitsForGraph.from_snapshot(two_task_deadlock())
    cycle = find_cycle(graph, start)
    assert cycle is not None
    assert len(cycle) == 4
    # Both detectors agree on one victim: the younger waiting request.
    assert choose_victim(graph, cycle) == "w2"
    described = describe(graph, cycle)
    assert [d["request"] for d in described] == [e.source for e in cycle]
    assert [d["waits_for"] for d in described] == [e.target for e in cycle]
    assert {d["task"] for d in described} == {"T1", "T2"}
    assert {d["kind"] for d in described} == {"holds", "task"}


def test_queue_edges_alone_do_not_make_a_cycle() -> None:
    # Queued edges point to lower tickets only: a chain, never a cycle.
    snapshot = {
        "nodes": {
            f"w{i}": {"task": f"T{i}", "agent": "a", "ticket": str(i), "state": "waiting"}
            for i in range(5)
        },
        "edges": [
            {"from": f"w{i}", "to": f"w{j}", "kind": "queued", "via": "A"}
            for i in range(5)
            for j in range(i)
        ],
    }
    graph = WaitsForGraph.from_snapshot(snapshot)
    assert all(find_cycle(graph, n) is None for n in graph.nodes)


def test_ties_in_tickets_are_broken_by_request_id() -> None:
    graph = WaitsForGraph(
        nodes={
            "a": WaitsForGraph.from_snapshot(
                {"nodes": {"a": {"task": "t", "agent": "x", "ticket": 5, "state": "waiting"}}}
            ).nodes["a"],
            "b": WaitsForGraph.from_snapshot(
                {"nodes": {"b": {"task": "u", "agent": "x", "ticket": 5, "state": "waiting"}}}
            ).nodes["b"],
        },
        edges=(Edge("a", "b", EdgeKind.PERMIT), Edge("b", "a", EdgeKind.PERMIT)),
    )
    cycle = find_cycle(graph, "a")
    assert cycle is not None
    assert choose_victim(graph, cycle) == "b"
