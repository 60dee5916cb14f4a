"""A scripted model: replays a fixed list of tool calls instead of asking an LLM.

An explicit feature, not a hidden stand-in: ``ade agents run NAME --script FILE`` and
``ade serve --demo``'s agents use it to rehearse a governance flow with no LLM service
(every call still goes through the agent's configuration: a step naming a tool the agent
does not have is refused like a model's). It is pydantic-ai's ``FunctionModel`` with a
function that answers the next step after each tool result, and at the end the last
result as its final text.

A script file is JSON: ``{"steps": [{"tool": "files.write", "arguments": {...}}, ...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from community_ade.errors import InvalidInput
from community_ade.runner.tools import tool_name

SCRIPT_MAX_BYTES = 1_000_000
STEPS_MAX = 100


@dataclass(frozen=True)
class Step:
    tool: str  # a catalogue tool id, e.g. files.write
    arguments: dict[str, Any]


class _StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: str = Field(min_length=1, max_length=100)
    arguments: dict[str, Any] = Field(default_factory=dict)


class _ScriptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[_StepIn] = Field(min_length=1, max_length=STEPS_MAX)


def load_script(path: Path) -> list[Step]:
    """The steps of the script file at ``path``.

    Raises:
        InvalidInput: unreadable, over 1 MB, not JSON, or not the script's shape.
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(SCRIPT_MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read the script {path}: {exc.strerror}") from None
    if len(data) > SCRIPT_MAX_BYTES:
        raise InvalidInput(f"the script {path} is over {SCRIPT_MAX_BYTES} bytes")
    try:
        script = _ScriptIn.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise InvalidInput(f"the script {path} is not a script: {exc}") from None
    return [Step(s.tool, s.arguments) for s in script.steps]


def _answered(messages: Sequence[ModelMessage]) -> list[ToolReturnPart | RetryPromptPart]:
    return [
        part
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart | RetryPromptPart)
    ]


def scripted_model(steps: Sequence[Step]) -> FunctionModel:
    """The model calling ``steps`` in turn, one per response."""
    plan = list(steps)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        answered = _answered(messages)
        if len(answered) < len(plan):
            step = plan[len(answered)]
            return ModelResponse(parts=[ToolCallPart(tool_name(step.tool), step.arguments)])
        if not answered:
            return ModelResponse(parts=[TextPart("script finished: nothing to do")])
        part = answered[-1]
        last = (
            part.model_response_str() if isinstance(part, ToolReturnPart) else part.model_response()
        )
        return ModelResponse(parts=[TextPart(f"script finished; last result: {last}")])

    return FunctionModel(respond, model_name="scripted")
