"""Deadlocks of incremental acquisition are found within 2 x deadlock_timeout, and exactly
one request (the youngest waiter of the cycle) is aborted (all three backends)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FAST
from lockutil import event_types, wait_queued

from community_ade.errors import DeadlockDetected
from community_ade.locks import Grant, LockManager

X = "exclusive"
DEADLOCK_TIMEOUT_MS = 800
CONFIG = dataclasses.replace(FAST, deadlock_timeout_ms=DEADLOCK_TIMEOUT_MS)
LIMIT_S = 2 * DEADLOCK_TIMEOUT_MS / 1000
SLACK_S = 0.3  # scheduling and polling of the test itself


async def first_to_end(tasks: list[asyncio.Task[Grant]], timeout: float) -> float:
    """Wait until some task ends; return when (monotonic)."""
    done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    assert done, f"no request ended within {timeout}s: the deadlock was not detected"
    return time.monotonic()


async def run_cycle(locks: LockManager, n: int) -> None:
    """Tasks T0..Tn-1: Ti holds R_i, then asks for R_(i+1 mod n). The last ask closes it."""
    held = [await locks.acquire(f"T{i}", f"agent-{i}", {f"R{i}": X}) for i in range(n)]
    waits: list[asyncio.Task[Grant]] = []
    for i in range(n):
        target = f"R{(i + 1) % n}"
        if i == n - 1:
            closed_at = time.monotonic()
        waits.append(
            asyncio.create_task(locks.acquire(f"T{i}", f"agent-{i}", {target: X}, timeout=60))
        )
        await wait_queued(locks, target, 1)

    ended_at = await first_to_end(waits, timeout=LIMIT_S + 10)
    detected_after = ended_at - closed_at
    assert detected_after <= LIMIT_S + SLACK_S, f"deadlock found only after {detected_after:.2f}s"

    # Exactly one victim: the youngest waiting request, i.e. the one that closed the cycle.
    victim = waits[-1]
    assert victim.done(), "the victim should be the youngest request of the cycle"
    with pytest.raises(DeadlockDetected) as info:
        victim.result()
    tasks_in_cycle = {step["task"] for step in info.value.cycle}
    assert tasks_in_cycle == {f"T{i}" for i in range(n)}
    assert info.value.code == "deadlock_detected"

    # The others keep waiting (no second victim) for more than another detection round.
    await asyncio.sleep(1.5 * DEADLOCK_TIMEOUT_MS / 1000)
    assert not any(w.done() for w in waits[:-1]), [w for w in waits[:-1] if w.done()]
    assert (await event_types(locks)).count("lock:deadlock") == 1

    # The victim's task gives up what it holds; the rest then finish one after another.
    await locks.release(held[-1])
    for i in reversed(range(n - 1)):
        grant = await asyncio.wait_for(waits[i], 10)
        await locks.release(grant)
        await locks.release(held[i])
    assert (await event_types(locks)).count("lock:deadlock") == 1
    for i in range(n):
        state = await locks.inspect_resource(f"R{i}")
        assert (state.holders, state.queue) == ([], [])


@pytest.mark.slow
async def test_two_task_deadlock(make_manager: Callable[..., Any]) -> None:
    await run_cycle(await make_manager(CONFIG), 2)


@pytest.mark.slow
async def test_three_task_deadlock(make_manager: Callable[..., Any]) -> None:
    await run_cycle(await make_manager(CONFIG), 3)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["server", "cluster"], indirect=True)
async def test_deadlock_across_processes_managers(make_manager: Callable[..., Any]) -> None:
    """Each task in its own manager and connection (as in separate processes)."""
    one = await make_manager(CONFIG, own_client=True)
    two = await make_manager(CONFIG, own_client=True)
    g1 = await one.acquire("T1", "agent-1", {"A": X})
    g2 = await two.acquire("T2", "agent-2", {"B": X})
    w1 = asyncio.create_task(one.acquire("T1", "agent-1", {"B": X}, timeout=60))
    await wait_queued(one, "B", 1)
    closed_at = time.monotonic()
    w2 = asyncio.create_task(two.acquire("T2", "agent-2", {"A": X}, timeout=60))
    ended_at = await first_to_end([w1, w2], timeout=LIMIT_S + 10)
    assert ended_at - closed_at <= LIMIT_S + SLACK_S
    with pytest.raises(DeadlockDetected):
        w2.result()
    await asyncio.sleep(1.5 * DEADLOCK_TIMEOUT_MS / 1000)
    assert not w1.done()
    await two.release(g2)
    await one.release(await asyncio.wait_for(w1, 10))
    await one.release(g1)
    assert (await event_types(one)).count("lock:deadlock") == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["server"], indirect=True)
async def test_a_long_wait_is_not_a_deadlock(make_manager: Callable[..., Any]) -> None:
    locks = await make_manager(CONFIG)
    holder = await locks.acquire("T1", "agent-1", {"A": X})
    other = await locks.acquire("T1", "agent-1", {"B": X})  # same task, no cycle
    waiter = asyncio.create_task(locks.acquire("T2", "agent-2", {"A": X, "B": X}, timeout=60))
    await wait_queued(locks, "A", 1)
    await asyncio.sleep(2.5 * DEADLOCK_TIMEOUT_MS / 1000)
    assert not waiter.done()
    await locks.release(holder)
    await locks.release(other)
    await locks.release(await asyncio.wait_for(waiter, 10))
    assert "lock:deadlock" not in await event_types(locks)
