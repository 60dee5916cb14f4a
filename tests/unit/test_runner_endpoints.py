"""Which LLM endpoint a catalogue model uses, from its provider and the environment;
and the scripted model replaying its steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic_ai import Agent

from community_ade.errors import InvalidInput
from community_ade.runner.agent_run import model_for, model_settings
from community_ade.runner.endpoints import NO_KEY, Endpoint, ModelUnavailable, endpoint_for
from community_ade.runner.scripted import Step, load_script, scripted_model

OLLAMA = "http://127.0.0.1:11434/v1"


@pytest.mark.parametrize(
    ("model", "provider", "env", "expected", "served"),
    [
        (
            "gpt-4o",
            "OpenAI",
            {"OPENAI_API_KEY": "k"},
            Endpoint("openai", "gpt-4o", None, "k"),
            None,
        ),
        (
            "gpt-4o",
            "OpenAI",
            {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "https://proxy/v1"},
            Endpoint("openai", "gpt-4o", "https://proxy/v1", "k"),
            None,
        ),
        (
            "claude-sonnet-4",
            "Anthropic",
            {"ANTHROPIC_API_KEY": "a", "OPENAI_BASE_URL": OLLAMA},
            Endpoint("anthropic", "claude-sonnet-4", None, "a"),
            None,
        ),
        (
            "claude-sonnet-4",
            " anthropic ",
            {"ANTHROPIC_API_KEY": "a", "ANTHROPIC_BASE_URL": "https://gw"},
            Endpoint("anthropic", "claude-sonnet-4", "https://gw", "a"),
            None,
        ),
        (  # a local server wants no key
            "llama-3.1-70b",
            "Meta",
            {"OPENAI_BASE_URL": OLLAMA},
            Endpoint("openai", "llama3.1:70b", OLLAMA, NO_KEY),
            "llama3.1:70b",
        ),
        (
            "mistral-large",
            "Mistral AI",
            {"OPENAI_BASE_URL": "http://vllm:8000/v1", "OPENAI_API_KEY": "v"},
            Endpoint("openai", "mistral-large", "http://vllm:8000/v1", "v"),
            None,
        ),
        (  # an OpenAI model served by a compatible server, blank values ignored
            "gpt-4o",
            "OpenAI",
            {"OPENAI_BASE_URL": OLLAMA, "OPENAI_API_KEY": "k"},
            Endpoint("openai", "gpt-4o", OLLAMA, "k"),
            "  ",
        ),
    ],
)
def test_endpoints(
    model: str, provider: str, env: dict[str, str], expected: Endpoint, served: str | None
) -> None:
    assert endpoint_for(model, provider, env, served) == expected


@pytest.mark.parametrize(
    ("model", "provider", "env", "message"),
    [
        ("", "OpenAI", {"OPENAI_API_KEY": "k"}, "no model configured"),
        ("gpt-9", None, {"OPENAI_API_KEY": "k"}, "not in the catalogue"),
        ("gpt-4o", "OpenAI", {}, "set OPENAI_API_KEY"),
        ("gpt-4o", "OpenAI", {"OPENAI_BASE_URL": OLLAMA}, "set OPENAI_API_KEY"),
        ("claude-sonnet-4", "Anthropic", {"OPENAI_API_KEY": "k"}, "set ANTHROPIC_API_KEY"),
        ("llama-3.1-70b", "Meta", {"OPENAI_API_KEY": "k"}, "set OPENAI_BASE_URL"),
        ("llama-3.1-70b", "Meta", {"OPENAI_BASE_URL": " "}, "set OPENAI_BASE_URL"),
    ],
)
def test_unusable(model: str, provider: str | None, env: dict[str, str], message: str) -> None:
    with pytest.raises(ModelUnavailable, match=message):
        endpoint_for(model, provider, env)


def test_models_and_settings() -> None:
    openai = model_for(Endpoint("openai", "llama3.1", OLLAMA, NO_KEY))
    anthropic = model_for(Endpoint("anthropic", "claude-sonnet-4", None, "a"))
    assert (openai.system, openai.model_name) == ("openai", "llama3.1")
    assert (anthropic.system, anthropic.model_name) == ("anthropic", "claude-sonnet-4")
    assert str(openai.base_url).rstrip("/") == OLLAMA
    assert model_settings({"temperature": 0.1}) == {
        "temperature": 0.1,
        "top_p": 1.0,
        "max_tokens": 4096,
    }


async def test_the_scripted_model_replays_its_steps_then_reports() -> None:
    calls: list[tuple[str, int]] = []
    agent = Agent(
        scripted_model(
            [Step("files.read", {"n": 1}), Step("nope", {}), Step("files.read", {"n": 2})]
        )
    )

    @agent.tool_plain(name="files_read")
    def read(n: int) -> str:
        calls.append(("read", n))
        return f"line {n}"

    result = await agent.run("go")
    assert calls == [("read", 1), ("read", 2)]  # the unknown tool was refused, not run
    assert result.output == "script finished; last result: line 2"


def test_script_files(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"steps": [{"tool": "git.patch", "arguments": {"a": 1}}]}))
    assert load_script(good) == [Step("git.patch", {"a": 1})]
    for content in ("{", '{"steps": []}', '{"steps": [{"tool": ""}]}', '{"steps": [], "x": 1}'):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(InvalidInput, match="not a script"):
            load_script(bad)
    with pytest.raises(InvalidInput, match="cannot read"):
        load_script(tmp_path / "missing.json")
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * 1_000_001)
    with pytest.raises(InvalidInput, match="over 1000000 bytes"):
        load_script(huge)
