"""The Runtime with no Redis URL starts the embedded Redis in its data dir and locks work."""

from __future__ import annotations

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
