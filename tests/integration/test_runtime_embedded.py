"""The Runtime with no Redis URL starts the embedded Redis in its data dir and locks work."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from community_ade.runtime import Runtime
from community_ade.settings import Settings


@pytest.mark.slow
async def test_runtime_with_embedded_redis(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=None, lock_domain="runtime-test")
    async with Runtime.open(settings) as rt:
        assert rt.embedded is not None
        socket = rt.embedded.socket_path
        assert socket.exists()
        async with rt.locks.hold("task", "agent", {"res": "exclusive"}, timeout=5) as grant:
            state = await rt.locks.inspect_resource("res")
            assert [h.request for h in state.holders] == [grant.request_id]
        assert (await rt.locks.inspect_resource("res")).holders == []
        assert "runtime-test" in await rt.locks.domains()
    # The last client gone, the embedded server is shut down.
    assert not socket.exists()


_CHILD = """
import asyncio, sys
from community_ade.runtime import Runtime
from community_ade.settings import Settings

async def main():
    async with Runtime.open(Settings(data_dir=sys.argv[1], redis_url=None)) as rt:
        await rt.redis.set("ade:test:written-by-child", "yes")
        grant = await rt.locks.acquire("child-task", "child-agent", {"shared-res": "exclusive"})
        pid = (await rt.redis.info("server"))["process_id"]
        print(pid, grant.request_id, flush=True)
        await rt.locks.release(grant)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_processes_on_one_data_dir_share_one_server_and_its_data_survives(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=None)
    async with Runtime.open(settings) as rt:
        assert rt.embedded is not None
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, str(tmp_path), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(child.communicate(), 60)
        assert child.returncode == 0
        child_server_pid, child_request = out.decode().split()
        # The child used this process's server, not a second one ...
        assert int(child_server_pid) == (await rt.redis.info("server"))["process_id"]
        assert await rt.redis.get("ade:test:written-by-child") == "yes"
        events = await rt.locks.events(count=10)
        assert {e["req"] for e in events if e["type"] == "lock:acquired"} == {child_request}
        # ... and the child leaving did not stop the server this process still uses.
        assert await rt.redis.ping()
    assert not rt.embedded.socket_path.exists()
    # A restart finds the data: the server saved it when the last client left.
    async with Runtime.open(settings) as again:
        assert await again.redis.get("ade:test:written-by-child") == "yes"
        assert any(e["req"] == child_request for e in await again.locks.events(count=10))
