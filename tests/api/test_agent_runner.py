"""``ade agents run``'s core against a live server, with pydantic-ai's ``FunctionModel``
standing in for the LLM service: the model reads a file, proposes a change, gets a
reviewer's ``request_changes`` comment back, proposes the fix, bob approves, the worker
applies it; the agent is online while it runs and offline after."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from livesrv import Live, StartLive
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from test_sdk import FAST, WAIT

from community_ade.client import AdeClient
from community_ade.errors import Forbidden
from community_ade.execution.worker import Worker
from community_ade.runner.agent_run import run_agent
from community_ade.runner.endpoints import ModelUnavailable

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)

CONFIG = [{"type": "configuration", "id": "app.conf", "actions": ["write"]}]


def workspace(live: Live) -> Path:
    root = live.server.settings.data_dir / "workspaces" / "svc"
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.conf").write_text("debug = false\n")
    return root


async def new_agent(live: Live, name: str, **config: Any) -> tuple[str, str]:
    """(id, token) of a new agent of alice's."""
    async with httpx.AsyncClient(base_url=live.server.url, headers=live.as_("alice")) as http:
        body = {"name": name, "model": "gpt-4o", **config}
        agent = await http.post("/api/v1/agents", json=body)
        assert agent.status_code == 201, agent.text
        token = await http.post(f"/api/v1/agents/{agent.json()['id']}/tokens", json={"name": "t"})
        assert token.status_code == 201, token.text
    return agent.json()["id"], token.json()["token"]


def last_tool_return(messages: list[ModelMessage]) -> ToolReturnPart | None:
    request = messages[-1]
    assert isinstance(request, ModelRequest)
    returns = [p for p in request.parts if isinstance(p, ToolReturnPart)]
    return returns[-1] if returns else None


class Script:
    """The stand-in LLM: read app.conf, propose debug = yes, and after the reviewer's
    comment propose debug = true; everything it was told is kept in ``seen``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: list[str] = []
        self.infos: list[AgentInfo] = []

    def write(self, value: str) -> ToolCallPart:
        payload = {
            "root": str(self.root),
            "changes": [{"path": "app.conf", "action": "write", "content": f"debug = {value}\n"}],
        }
        args = {"title": f"debug = {value}", "payload": payload, "resources": CONFIG}
        return ToolCallPart("files_write", args)

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.infos.append(info)
        returned = last_tool_return(messages)
        if returned is None:
            return ModelResponse(
                parts=[ToolCallPart("files_read", {"path": str(self.root / "app.conf")})]
            )
        text = returned.model_response_str()
        self.seen.append(text)
        if returned.tool_name == "files_read":
            return ModelResponse(parts=[self.write("yes")])
        outcome = json.loads(text)["outcome"]
        if outcome == "changes_requested":
            return ModelResponse(parts=[self.write("true")])
        return ModelResponse(parts=[TextPart(f"finished: {outcome}")])


@contextlib.asynccontextmanager
async def worker(live: Live) -> AsyncIterator[None]:
    work = Worker(live.runtime)
    running = asyncio.create_task(work.run())
    try:
        yield
    finally:
        work.stop()
        await asyncio.wait_for(running, WAIT)


async def health(live: Live, agent_id: str) -> str:
    async with httpx.AsyncClient(base_url=live.server.url, headers=live.as_("bob")) as http:
        answer = await http.get(f"/api/v1/agents/{agent_id}")
    status: str = answer.json()["health"]["status"]
    return status


async def test_request_changes_reach_the_model_and_the_fix_is_applied(
    start_live: StartLive,
) -> None:
    live = await start_live()
    root = workspace(live)
    agent_id, token = await new_agent(
        live,
        "config-bot",
        tools=["files.read", "files.write"],
        system_prompt="You change configuration carefully.",
        parameters={"temperature": 0.2, "top_p": 0.9, "max_tokens": 512},
    )
    script = Script(root)
    bob = AdeClient(live.server.url, live.tokens["bob"], backoff=FAST)
    online: list[str] = []

    async def review() -> None:
        comments = iter([("request_changes", "use true, not yes"), ("approve", "")])
        for action, comment in comments:
            for _ in range(int(WAIT / 0.05)):
                waiting = (await bob.awaiting_me()).items
                if waiting:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("no task came to bob")
            online.append(await health(live, agent_id))
            task = waiting[0]
            assert task.preview_digest is not None
            await getattr(bob, action)(task.id, task.preview_digest, comment)

    async with worker(live), AdeClient(live.server.url, token, backoff=FAST) as client:
        reviewing = asyncio.create_task(review())
        result = await asyncio.wait_for(
            run_agent(
                client,
                "config-bot",
                "turn on debug logging",
                model=FunctionModel(script),
                settings=live.server.settings,
            ),
            WAIT,
        )
        await reviewing
    await bob.aclose()

    assert (root / "app.conf").read_text() == "debug = true\n"  # the fix, applied
    assert result.output == "finished: applied"
    assert "debug = false" in script.seen[0]  # the read tool answered from the workspace
    sent_back = json.loads(script.seen[1])
    assert sent_back["outcome"] == "changes_requested"
    assert {"decision": "request_changes", "comment": "use true, not yes"} in sent_back["reviews"]
    assert json.loads(script.seen[2])["outcome"] == "applied"
    # Exactly its enabled tools, its prompt and its sampling parameters.
    info = script.infos[0]
    assert {t.name for t in info.function_tools} == {"files_read", "files_write"}
    assert info.instructions == "You change configuration carefully."
    assert info.model_settings is not None
    assert info.model_settings.get("temperature") == 0.2
    assert info.model_settings.get("top_p") == 0.9
    assert info.model_settings.get("max_tokens") == 512
    assert len(result.proposed) == 2
    async with httpx.AsyncClient(base_url=live.server.url, headers=live.as_("bob")) as http:
        states = [(await http.get(f"/api/v1/tasks/{t}")).json()["state"] for t in result.proposed]
    assert states == ["CANCELLED", "COMPLETED"]  # the draft sent back was superseded
    assert online == ["online", "online"]  # while it waited for bob
    assert await health(live, agent_id) == "offline"  # lease released at the end


async def test_no_model_and_a_foreign_token_are_refused(start_live: StartLive) -> None:
    live = await start_live()
    _, token = await new_agent(live, "llama-bot", model="llama-3.1-70b")
    other_id, other = await new_agent(live, "other-bot")
    async with AdeClient(live.server.url, token, backoff=FAST) as client:
        with pytest.raises(ModelUnavailable, match="OPENAI_BASE_URL"):
            await run_agent(client, "llama-bot", "hello", env={}, settings=live.server.settings)
    async with AdeClient(live.server.url, other, backoff=FAST) as client:
        with pytest.raises(Forbidden, match="not agent llama-bot's"):
            await run_agent(
                client,
                "llama-bot",
                "hello",
                model=FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("hi")])),
                settings=live.server.settings,
            )
    assert await health(live, other_id) == "offline"


async def test_an_unreachable_model_is_a_clear_error(start_live: StartLive) -> None:
    live = await start_live()
    _, token = await new_agent(live, "local-bot", model="llama-3.1-70b")
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}  # the discard port: refused
    async with AdeClient(live.server.url, token, backoff=FAST) as client:
        with pytest.raises(ModelUnavailable, match="did not answer"):
            await run_agent(client, "local-bot", "hello", env=env, settings=live.server.settings)
