"""Grant rules on real Redis: shared/exclusive, FIFO, no writer starvation, all-or-nothing,
re-entry of a task, capacity (server, embedded, cluster)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FAST
from lockutil import eventually, holders_of, wait_queued

from community_ade.errors import LockTimeout
from community_ade.locks import Grant, LockManager, Mode
from community_ade.locks.model import grantable

X, S = "exclusive", "shared"


async def try_once(locks: LockManager, task: str, agent: str, resources: Any) -> Grant | None:
    """One non-queuing attempt (timeout=0): the grant, or None when busy."""
    try:
        return await locks.acquire(task, agent, resources, timeout=0)
    except LockTimeout:
        return None


async def test_shared_and_exclusive_compatibility(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    r1 = await locks.acquire("reader-1", "agent-1", {"doc": S})
    r2 = await locks.acquire("reader-2", "agent-2", {"doc": S})  # readers share
    state = await locks.inspect_resource("doc")
    assert sorted(h.request for h in state.holders) == sorted([r1.request_id, r2.request_id])
    assert {h.mode for h in state.holders} == {"shared"}

    assert await try_once(locks, "writer", "agent-3", {"doc": X}) is None
    await locks.release(r1)
    assert await try_once(locks, "writer", "agent-3", {"doc": X}) is None
    await locks.release(r2)
    w = await try_once(locks, "writer", "agent-3", {"doc": X})
    assert w is not None
    assert w.fence > max(r1.fence, r2.fence)
    # Exclusive excludes both modes.
    assert await try_once(locks, "reader-3", "agent-1", {"doc": S}) is None
    assert await try_once(locks, "writer-2", "agent-1", {"doc": X}) is None
    # Other resources are independent.
    other = await try_once(locks, "writer-2", "agent-1", {"other": X})
    assert other is not None
    await locks.release(w)
    await locks.release(other)
    assert (await locks.inspect_resource("doc")).holders == []


async def test_lua_agrees_with_the_model(make_manager: Callable[..., Any]) -> None:
    """Every small combination of holders and waiters: a try-once request is granted
    exactly when ``model.grantable`` says so, judged on the state Redis reports."""
    locks = await make_manager()
    counter = itertools.count()
    cases = list(itertools.product([(), (S,), (S, S), (X,)], [(), (S,), (X,), (S, X), (X, S)]))
    for holders, waiters in cases:
        for mode in (S, X):
            rid = f"res-{next(counter)}"
            grants = [
                await locks.acquire(f"h{i}", f"ah{i}", {rid: m}) for i, m in enumerate(holders)
            ]
            pending = []
            for i, m in enumerate(waiters):
                pending.append(
                    asyncio.create_task(locks.acquire(f"w{i}", f"aw{i}", {rid: m}, timeout=30))
                )
                expected_entries = len(holders) + i + 1
                await eventually(
                    lambda rid=rid: locks.inspect_resource(rid),
                    lambda st, n=expected_entries: len(st.queue) + len(st.holders) >= n,
                    what="the waiter to be queued or granted",
                )
            state = await locks.inspect_resource(rid)
            expected = grantable(
                Mode(mode),
                [Mode(h.mode) for h in state.holders],
                [Mode(w.mode) for w in state.queue],
            )
            got = await try_once(locks, "probe", "probe-agent", {rid: mode})
            assert (got is not None) is expected, (holders, waiters, mode, state)
            for g in [*grants, *([got] if got else [])]:
                await locks.release(g)
            for task in pending:
                await locks.release(await task)
            assert (await locks.inspect_resource(rid)).queue == []


async def test_same_task_does_not_conflict_with_itself(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    first = await locks.acquire("task-1", "agent-1", {"a": S})
    # Upgrade and re-entry by the same task are granted although "a" is held.
    upgrade = await locks.acquire("task-1", "agent-1", {"a": X}, timeout=0)
    again = await locks.acquire("task-1", "agent-1", {"a": X, "b": X}, timeout=0)
    assert first.fence < upgrade.fence < again.fence
    # Another task still conflicts.
    assert await try_once(locks, "task-2", "agent-2", {"a": S}) is None
    for g in (first, upgrade, again):
        assert await locks.release(g)
    assert await try_once(locks, "task-2", "agent-2", {"a": X}) is not None


async def test_fifo_order(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    blocker = await locks.acquire("blocker", "agent-0", {"fifo": X})
    order: list[int] = []

    async def waiter(i: int, mode: str) -> None:
        async with locks.hold(f"task-{i}", f"agent-{i % 3}", {"fifo": mode}, timeout=30) as g:
            order.append(i)
            g.check()
            await asyncio.sleep(0.01)

    modes = [X, S, X, X, S, X, X, S]
    tasks = []
    for i, mode in enumerate(modes):
        tasks.append(asyncio.create_task(waiter(i, mode)))
        queue = await wait_queued(locks, "fifo", i + 1)
    tickets = [w.ticket for w in (await locks.inspect_resource("fifo")).queue]
    assert tickets == sorted(tickets)
    assert len(set(tickets)) == len(tickets)
    assert len(queue) == len(modes)

    await locks.release(blocker)
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert order == list(range(len(modes)))


async def test_no_writer_starvation(make_manager: Callable[..., Any]) -> None:
    """Readers arriving after a waiting writer queue behind it, however many come."""
    locks = await make_manager()
    first_reader = await locks.acquire("reader-0", "agent-r", {"doc": S})
    log: list[str] = []

    async def writer() -> None:
        async with locks.hold("writer", "agent-w", {"doc": X}, timeout=30):
            log.append("writer")
            await asyncio.sleep(0.05)
            log.append("writer-done")

    async def reader(i: int) -> None:
        async with locks.hold(f"reader-{i}", f"agent-r{i}", {"doc": S}, timeout=30):
            log.append(f"reader-{i}")

    writer_task = asyncio.create_task(writer())
    await wait_queued(locks, "doc", 1)
    readers = []
    for i in range(1, 6):  # a stream of readers, each compatible with the holder
        readers.append(asyncio.create_task(reader(i)))
        await wait_queued(locks, "doc", 1 + i)
        await asyncio.sleep(0.05)
    # None of them passed the waiting writer.
    assert log == []
    assert await holders_of(locks, "doc") == [first_reader.request_id]

    await locks.release(first_reader)
    await asyncio.wait_for(asyncio.gather(writer_task, *readers), 30)
    assert log[:2] == ["writer", "writer-done"]
    assert sorted(log[2:]) == [f"reader-{i}" for i in range(1, 6)]


async def test_all_or_nothing(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    holder_b = await locks.acquire("holder", "agent-1", {"B": X})
    both = asyncio.create_task(locks.acquire("both", "agent-2", {"A": X, "B": X}, timeout=30))
    await wait_queued(locks, "A", 1)
    await wait_queued(locks, "B", 1)
    # While it waits for B it holds nothing at all, A included.
    for _ in range(5):
        a_state = await locks.inspect_resource("A")
        assert a_state.holders == []
        assert [w.task for w in a_state.queue] == ["both"]
        agent = await locks.inspect_agent("agent-2")
        assert agent.grants == []
        assert agent.in_use == 0
        assert [w.task for w in agent.waiting] == ["both"]
        await asyncio.sleep(0.05)
    # A later request for A alone waits behind it (FIFO), it does not take A.
    assert await try_once(locks, "later", "agent-3", {"A": X}) is None
    assert await try_once(locks, "later", "agent-3", {"A": S}) is None
    later = asyncio.create_task(locks.acquire("later", "agent-3", {"A": X}, timeout=30))
    await wait_queued(locks, "A", 2)
    assert not both.done()

    await locks.release(holder_b)
    granted = await asyncio.wait_for(both, 10)
    for rid in ("A", "B"):
        assert await holders_of(locks, rid) == [granted.request_id]
    assert not later.done()
    await locks.release(granted)
    later_grant = await asyncio.wait_for(later, 10)
    assert later_grant.fence > granted.fence
    await locks.release(later_grant)


async def test_capacity_limits_concurrent_grants(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    assert await locks.set_capacity("agent", 2) == 2
    running = 0
    peak = 0
    samples: list[int] = []

    async def work(i: int) -> None:
        nonlocal running, peak
        async with locks.hold(f"task-{i}", "agent", {f"res-{i}": X}, timeout=30):
            running += 1
            peak = max(peak, running)
            samples.append((await locks.inspect_agent("agent")).in_use)
            await asyncio.sleep(0.15)
            running -= 1

    await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(5))), 30)
    assert peak == 2
    assert max(samples) <= 2
    state = await locks.inspect_agent("agent")
    assert (state.capacity, state.in_use, state.grants, state.waiting) == (2, 0, [], [])


async def test_raising_capacity_lets_waiters_in(make_manager: Callable[..., Any]) -> None:
    # Long backstop and deadlock timeout: a prompt grant can only come from the wake-up.
    locks = await make_manager(
        dataclasses.replace(FAST, backstop_ms=10_000, deadlock_timeout_ms=10_000)
    )
    await locks.set_capacity("agent", 1)
    first = await locks.acquire("task-0", "agent", {"r0": X})
    waiting = [
        asyncio.create_task(locks.acquire(f"task-{i}", "agent", {f"r{i}": X}, timeout=30))
        for i in (1, 2, 3)
    ]
    state = await eventually(
        lambda: locks.inspect_agent("agent"), lambda s: len(s.waiting) == 3, what="3 waiting"
    )
    assert (state.capacity, state.in_use) == (1, 1)
    await asyncio.sleep(0.2)
    assert not any(t.done() for t in waiting)

    started = time.monotonic()
    assert await locks.set_capacity("agent", 3) == 3
    done: set[asyncio.Task[Grant]] = set()
    while len(done) < 2 and time.monotonic() - started < 5:
        finished, _ = await asyncio.wait(
            [t for t in waiting if t not in done], timeout=0.05, return_when=asyncio.FIRST_COMPLETED
        )
        done |= finished
    # Two permits were free: two waiters got in, promptly (no backstop wait) ...
    assert len(done) == 2
    assert time.monotonic() - started < 2.0
    # ... and the third did not.
    await asyncio.sleep(0.2)
    assert sum(t.done() for t in waiting) == 2
    state = await locks.inspect_agent("agent")
    assert (state.in_use, len(state.waiting)) == (3, 1)

    assert await locks.set_capacity("agent", None) == 4  # back to the default
    last = await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert (await locks.inspect_agent("agent")).in_use == 4
    for g in [first, *last]:
        await locks.release(g)
    assert (await locks.inspect_agent("agent")).in_use == 0


@pytest.mark.parametrize("backend", ["server"], indirect=True)
async def test_hold_releases_on_error(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager()
    seen: list[Grant] = []

    async def fail_inside() -> None:
        async with locks.hold("task", "agent", {"r": X}) as grant:
            seen.append(grant)
            assert await holders_of(locks, "r") == [grant.request_id]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_inside()
    (g,) = seen
    assert await holders_of(locks, "r") == []
    assert g.released
    assert await locks.release(g) is False
