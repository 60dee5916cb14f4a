"""``ade agents run NAME --goal`` as a user runs it, against a live server: no usable
model is a clear message and exit 2; a scripted run proposes, waits for the reviewers
online, and SIGTERM stops it cleanly with its lease released."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from livesrv import Live, StartLive
from test_agents_cli import lines_with

pytestmark = [
    pytest.mark.parametrize("backend", ["server"], indirect=True),
    pytest.mark.timeout(300),  # processes that import pydantic-ai and an LLM client
]


async def new_agent(live: Live, name: str, model: str, tools: list[str]) -> tuple[str, str]:
    api = f"{live.server.url}/api/v1"
    async with httpx.AsyncClient(base_url=api, headers=live.as_("alice")) as alice:
        made = await alice.post("/agents", json={"name": name, "model": model, "tools": tools})
        assert made.status_code == 201, made.text
        issued = await alice.post(f"/agents/{made.json()['id']}/tokens", json={"name": "t"})
        assert issued.status_code == 201, issued.text
    return made.json()["id"], issued.json()["token"]


def agent_env(live: Live, token: str) -> dict[str, str]:
    env = {**os.environ, "ADE_AGENT_TOKEN": token, "COLUMNS": "200"}
    env["ADE_DATA_DIR"] = str(live.server.settings.data_dir)  # the same workspace roots
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    return env


def ade(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "community_ade", "agents", "run", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


async def test_no_usable_model_exits_2_with_the_variable_to_set(start_live: StartLive) -> None:
    live = await start_live()
    _, token = await new_agent(live, "cloud-bot", "claude-sonnet-4", ["files.read"])
    env = agent_env(live, token)
    server = ("--server", live.server.url)
    missing = await asyncio.to_thread(ade, env, "cloud-bot", "--goal", "hi", *server)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "set ANTHROPIC_API_KEY" in missing.stderr
    assert "Traceback" not in missing.stderr
    local = {**env, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "k"}
    _, token2 = await new_agent(live, "local-bot", "llama-3.1-70b", ["files.read"])
    local["ADE_AGENT_TOKEN"] = token2
    unreachable = await asyncio.to_thread(ade, local, "local-bot", "--goal", "hi", *server)
    assert unreachable.returncode == 2, unreachable.stdout + unreachable.stderr
    assert "the model did not answer" in unreachable.stderr


async def test_a_scripted_run_waits_online_and_stops_on_sigterm(
    start_live: StartLive, tmp_path: Path
) -> None:
    live = await start_live()
    agent_id, token = await new_agent(live, "script-bot", "gpt-4o", ["files.read", "files.write"])
    root = live.server.settings.data_dir / "workspaces" / "svc"
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.conf").write_text("debug = false\n")
    change = {"path": "app.conf", "action": "write", "content": "debug = true\n"}
    steps = [
        {"tool": "files.read", "arguments": {"path": str(root / "app.conf")}},
        {
            "tool": "files.write",
            "arguments": {"title": "debug on", "payload": {"root": str(root), "changes": [change]}},
        },
    ]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"steps": steps}))
    output = tmp_path / "agent.log"
    with output.open("wb") as out:
        agent = subprocess.Popen(  # noqa: ASYNC220 (runs in the background, not awaited)
            [sys.executable, "-m", "community_ade", "agents", "run", "script-bot",
             "--goal", "turn on debug", "--script", str(script), "--server", live.server.url],
            env=agent_env(live, token),
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        await lines_with(output, "proposed files.write task", 1)
        async with httpx.AsyncClient(base_url=live.server.url, headers=live.as_("bob")) as bob:
            shown = (await bob.get(f"/api/v1/agents/{agent_id}")).json()
            assert shown["health"]["status"] == "online"
            queue = (await bob.get("/api/v1/approvals", params={"awaiting": "me"})).json()
            assert [t["title"] for t in queue["items"]] == ["debug on"]
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 30) == 0, output.read_text()
            shown = (await bob.get(f"/api/v1/agents/{agent_id}")).json()
        assert shown["health"]["status"] == "offline"  # released, not left to lapse
        assert "lease released" in output.read_text()
        assert "Traceback" not in output.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(30)
