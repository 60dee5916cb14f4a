"""Child process for the multi-process lock tests (not a test module).

python lock_worker.py counter URL DOMAIN CONFIG_JSON WORKER N
    Prints "ready", waits for "go" on stdin, then N times: acquire the resource
    "counter" exclusively, GET the counter, sleep a little, SET it + 1 (deliberately
    not atomic), append the fence to a log list, release. Also keeps an "inside"
    gauge that must never exceed 1. Prints "done <json>" and exits.

python lock_worker.py hold URL DOMAIN CONFIG_JSON RESOURCE TARGET_KEY
    Acquires RESOURCE exclusively, makes one fenced write to the hash TARGET_KEY,
    prints "acquired <fence>", prints "lost <reason>" as soon as grant.lost fires,
    and answers commands read from stdin, one per line:
      write           fenced write with the grant
                      -> "write ok" | "write refused <Error> <newest>"
      write-inflight  the same with a copy of the grant that has not noticed the loss
                      (a write already under way when the process was paused)
      status          -> "status <lost 0|1> <reason>"
      exit            close and exit
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sys

from community_ade.errors import FenceRejected, LockLost
from community_ade.infra.redis_client import open_redis
from community_ade.locks import Grant, LockConfig, LockManager


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def data_key(domain: str, name: str) -> str:
    # Same hash tag as the domain's lock keys, so the test's cleanup finds it.
    return f"ade:test:{{{domain}}}:{name}"


async def counter(url: str, domain: str, config: LockConfig, worker: str, n: int) -> None:
    client = await open_redis(url)
    locks = LockManager(client, config, domain=domain)
    stdin = await stdin_reader()
    counter_key, inside_key, log_key = (
        data_key(domain, k) for k in ("counter", "inside", "fences")
    )
    say("ready")
    if (await stdin.readline()).strip() != b"go":
        raise SystemExit("expected 'go'")
    fences = []
    overlaps = 0
    for i in range(n):
        grant = await locks.acquire(f"{worker}-{i}", f"agent-{worker}", {"counter": "exclusive"})
        try:
            if int(await client.incr(inside_key)) != 1:
                overlaps += 1
            value = int(await client.get(counter_key) or 0)
            await asyncio.sleep(random.uniform(0, 0.002))
            await client.set(counter_key, value + 1)
            await client.rpush(log_key, grant.fence)
            fences.append(grant.fence)
            await client.decr(inside_key)
        finally:
            await locks.release(grant)
    say("done", json.dumps({"fences": fences, "overlaps": overlaps}))
    await locks.close()
    await client.aclose()


async def try_write(locks: LockManager, key: str, grant: Grant, value: str) -> None:
    try:
        await locks.fenced_write(key, grant, "writer", value)
    except FenceRejected as exc:
        say("write refused FenceRejected", exc.newest)
    except LockLost:
        say("write refused LockLost -")
    else:
        say("write ok")


async def hold(url: str, domain: str, config: LockConfig, resource: str, key: str) -> None:
    client = await open_redis(url)
    locks = LockManager(client, config, domain=domain)
    stdin = await stdin_reader()
    grant = await locks.acquire("child-task", "child-agent", {resource: "exclusive"})
    await locks.fenced_write(key, grant, "writer", "child")

    async def watch() -> None:
        await grant.lost.wait()
        say("lost", grant.lost_reason)

    watcher = asyncio.create_task(watch())
    say("acquired", grant.fence)
    while line := (await stdin.readline()).decode().strip():
        if line == "write":
            await try_write(locks, key, grant, "child-late")
        elif line == "write-inflight":
            unaware = dataclasses.replace(grant, lost=asyncio.Event(), lost_reason=None)
            await try_write(locks, key, unaware, "child-inflight")
        elif line == "status":
            say("status", int(grant.lost.is_set()), grant.lost_reason)
        elif line == "exit":
            break
    watcher.cancel()
    await locks.close()
    await client.aclose()


def main(argv: list[str]) -> None:
    mode, url, domain, config_json, *rest = argv
    config = LockConfig(**json.loads(config_json))
    if mode == "counter":
        asyncio.run(counter(url, domain, config, rest[0], int(rest[1])))
    elif mode == "hold":
        asyncio.run(hold(url, domain, config, rest[0], rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
