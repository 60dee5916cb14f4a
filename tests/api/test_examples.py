"""The programs in ``examples/`` against a live server: the pydantic-ai agent (with
``FunctionModel`` standing in for the LLM service) and the LangGraph program each get a
request for changes, revise, get approved, and the worker applies the revision."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import unavailable
from livesrv import Live, StartLive
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from test_agent_runner import last_tool_return, new_agent, worker, workspace
from test_sdk import FAST, WAIT

from community_ade.client import AdeClient

pytestmark = pytest.mark.parametrize("backend", ["server"], indirect=True)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture
def as_agent(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The examples read ADE_URL and ADE_TOKEN, as a user would set them."""
    return monkeypatch


async def reviewed(live: Live, verdicts: list[tuple[str, str]]) -> None:
    """bob answers each task that reaches him with the next verdict."""
    async with AdeClient(live.server.url, live.tokens["bob"], backoff=FAST) as bob:
        for action, comment in verdicts:
            for _ in range(int(WAIT / 0.05)):
                waiting = (await bob.awaiting_me()).items
                if waiting:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("no task came to bob")
            task = waiting[0]
            assert task.preview_digest is not None
            await getattr(bob, action)(task.id, task.preview_digest, comment)


VERDICTS = [("request_changes", "use true, not yes"), ("approve", "")]


async def test_the_pydantic_ai_example(start_live: StartLive, as_agent: pytest.MonkeyPatch) -> None:
    live = await start_live()
    root = workspace(live)
    _, token = await new_agent(live, "example-bot")
    as_agent.setenv("ADE_URL", live.server.url)
    as_agent.setenv("ADE_TOKEN", token)
    told: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returned = last_tool_return(messages)
        if returned is not None:
            told.append(returned.model_response_str())
        value = {0: "yes", 1: "true"}.get(len(told))
        if value is None:
            return ModelResponse(parts=[TextPart(f"done: {told[-1]}")])
        args = {"path": "app.conf", "content": f"debug = {value}\n", "title": f"debug {value}"}
        return ModelResponse(parts=[ToolCallPart("write_file", args)])

    module = example("pydantic_ai_agent")
    async with worker(live):
        reviewing = asyncio.create_task(reviewed(live, VERDICTS))
        output = await asyncio.wait_for(
            module.run("turn on debug", str(root), FunctionModel(model)), WAIT
        )
        await reviewing
    assert told[0] == "changes requested: use true, not yes"  # the comment reached the model
    assert told[1].startswith("COMPLETED")
    assert output.startswith("done: COMPLETED")
    assert (root / "app.conf").read_text() == "debug = true\n"


async def test_the_langgraph_example(start_live: StartLive, as_agent: pytest.MonkeyPatch) -> None:
    try:
        importlib.import_module("langgraph")
    except ImportError:
        unavailable("langgraph is not installed: pip install -e '.[examples]'")
    live = await start_live()
    root = workspace(live)
    _, token = await new_agent(live, "graph-bot")
    as_agent.setenv("ADE_URL", live.server.url)
    as_agent.setenv("ADE_TOKEN", token)
    asked: list[tuple[str, list[str]]] = []

    def revise(content: str, comments: list[str]) -> str:
        asked.append((content, comments))
        return content.replace("yes", "true")

    module = example("langgraph_review")
    async with worker(live):
        reviewing = asyncio.create_task(reviewed(live, VERDICTS))
        final = await asyncio.wait_for(
            module.run(str(root), "app.conf", "debug = yes\n", revise), WAIT
        )
        await reviewing
    assert asked == [("debug = yes\n", ["use true, not yes"])]
    assert (final["outcome"], final["rounds"]) == ("completed", 2)
    assert (root / "app.conf").read_text() == "debug = true\n"
    assert json.dumps(final)  # plain data, as LangGraph checkpoints need
