"""``ade agents`` as a user runs it: real processes, a SQLite file and the test Redis (a
lock domain of this test alone). Refusals are messages and exit codes, never tracebacks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import _server_url, forget_domain, run_ade
from livesrv import StartLive


async def test_create_set_versions_revert_and_refusals(tmp_path: Path, domain: str) -> None:
    redis_url = _server_url()
    env = {
        **os.environ,
        "ADE_DATA_DIR": str(tmp_path),
        "ADE_REDIS_URL": redis_url,
        "ADE_LOCK_DOMAIN": domain,
        "ADE_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    env.pop("ADE_DATABASE_URL", None)

    async def ade(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_ade, env, *args)

    try:
        assert (await ade("users", "create", "ann", "--role", "submitter")).returncode == 0
        bad = await ade("agents", "create", "ab", "--model", "gpt-4o", "--as", "ann",
                        "--temperature", "3")  # fmt: skip
        assert bad.returncode == 2
        assert "name: must be 3 to 100 characters, got 2" in bad.stderr
        assert "parameters.temperature: must be between 0 and 2, got 3.0" in bad.stderr
        assert "Traceback" not in bad.stderr

        made = await ade("agents", "create", "cli-bot", "--model", "gpt-4o", "--as", "ann",
                         "--tag", "ops", "--tool", "files.read", "--capacity", "3")  # fmt: skip
        assert made.returncode == 0, made.stderr
        changed = await ade("agents", "set", "cli-bot", "--as", "ann", "--temperature", "1.1",
                            "--comment", "warmer")  # fmt: skip
        assert changed.returncode == 0, changed.stderr
        assert "version 2" in changed.stdout
        stranger = await ade("agents", "set", "cli-bot", "--as", "nobody", "--capacity", "2")
        assert stranger.returncode == 1
        assert "no user 'nobody'" in stranger.stderr

        versions = await ade("agents", "versions", "cli-bot")
        assert "warmer" in versions.stdout
        reverted = await ade("agents", "revert", "cli-bot", "1", "--as", "ann")
        assert reverted.returncode == 0, reverted.stderr
        assert "version 3" in reverted.stdout

        shown = await ade("agents", "show", "cli-bot")
        assert shown.returncode == 0, shown.stderr
        document = json.loads(shown.stdout)
        assert document["version"] == 3
        assert document["parameters"]["temperature"] == 0.7
        assert document["health"]["status"] == "offline"
        assert document["capacity"] == 3
        listed = await ade("agents", "list", "--tag", "ops")
        assert "cli-bot" in listed.stdout

        no_token = await asyncio.to_thread(
            run_ade,
            {**env, "ADE_AGENT_TOKEN": ""},
            "agents",
            "run",
            "--server",
            "http://127.0.0.1:9",
        )
        assert no_token.returncode == 1
        assert "set ADE_AGENT_TOKEN" in no_token.stderr
    finally:
        await forget_domain(redis_url, domain)


@pytest.mark.parametrize("backend", ["server"], indirect=True)
async def test_an_agent_process_replaces_a_lease_the_server_lost(
    start_live: StartLive, tmp_path: Path
) -> None:
    live = await start_live()
    api = f"{live.server.url}/api/v1"
    async with httpx.AsyncClient(base_url=api, headers=live.as_("alice")) as alice:
        made = await alice.post("/agents", json={"name": "lease-bot", "model": "gpt-4o"})
        assert made.status_code == 201, made.text
        issued = await alice.post(f"/agents/{made.json()['id']}/tokens", json={"name": "t"})
        assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    output = tmp_path / "agent.log"
    agent = start_agent(live.server.url, token, output)
    try:
        first = (await lines_with(output, "holding lease", 1))[0].split()[2]
        # The server forgets the lease, as a Redis restarted empty would.
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=api, headers=headers) as as_agent:
            assert (await as_agent.delete(f"/leases/{first}")).status_code == 204
        second = (await lines_with(output, "holding lease", 2))[1].split()[2]
        assert second != first
        assert agent.poll() is None, output.read_text()
    finally:
        agent.terminate()
        agent.wait(30)


async def lines_with(path: Path, text: str, count: int, limit: float = 30) -> list[str]:
    deadline = time.monotonic() + limit
    while True:
        content = await asyncio.to_thread(read_if_there, path)
        found = [line for line in content.splitlines() if text in line]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, content
        await asyncio.sleep(0.1)


def start_agent(server: str, token: str, output: Path) -> subprocess.Popen[bytes]:
    """``ade agents run`` with a 1 s lease, its output into ``output``."""
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "community_ade", "agents", "run", "--server", server,
             "--lease-seconds", "1"],
            env={**os.environ, "ADE_AGENT_TOKEN": token},
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def read_if_there(path: Path) -> str:
    return path.read_text() if path.exists() else ""
