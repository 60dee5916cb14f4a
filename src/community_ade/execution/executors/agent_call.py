"""``agent.call``: one function call an agent wants to make, approved before it runs.

Payload::

    {"function": "deploy_service", "arguments": {"service": "api", "version": "1.4.2"}}

The agent itself carries out the call once the task is approved (``applied_by =
"agent"``): it claims the task (``POST /tasks/{id}/claim``: APPROVED → APPLYING, the
task's locks held for it, the fencing token answered), runs the function, and reports
``complete`` or ``fail``. No worker ever applies it. The preview is the call itself, as
canonical JSON (sorted keys, no insignificant whitespace differences), so the digest a
reviewer approves names exactly this function with exactly these arguments; the
``@governed`` decorator of the SDK checks the claimed payload against the call it is
about to make.

Nothing here touches the world: the plan reads nothing, so the precondition fingerprint
is the call's own digest (the world cannot "move" under it).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from community_ade.execution.executors.base import (
    FieldError,
    Payload,
    Plan,
    PlanContext,
    ValidationReport,
    digest_of,
    field_errors,
    invalid,
)

TASK_TYPE = "agent.call"
MAX_ARGUMENTS_BYTES = 64 * 1024
MAX_DEPTH = 32
FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$"


def canonical_json(value: Any) -> str:
    """The one encoding of a JSON value: sorted keys, no spaces, UTF-8 kept, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class AgentCallPayload(BaseModel):
    """A function name and its JSON arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    function: str = Field(
        pattern=FUNCTION_PATTERN,
        description="The function the agent will call (a Python qualified name, a tool name).",
    )
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Its keyword arguments as a JSON object (at most "
        f"{MAX_ARGUMENTS_BYTES // 1024} KiB encoded, {MAX_DEPTH} levels deep).",
    )

    @field_validator("arguments")
    @classmethod
    def _bounded(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = canonical_json(arguments)
        except ValueError as exc:  # NaN or Infinity: not JSON
            raise ValueError(f"not JSON: {exc}") from None
        if len(encoded.encode("utf-8")) > MAX_ARGUMENTS_BYTES:
            raise ValueError(f"longer than {MAX_ARGUMENTS_BYTES} bytes as JSON")
        if _depth(arguments) > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        return arguments

    def canonical(self) -> str:
        return canonical_json({"function": self.function, "arguments": self.arguments})


def parse(payload: Payload) -> tuple[AgentCallPayload | None, list[FieldError]]:
    try:
        return AgentCallPayload.model_validate(payload), []
    except ValidationError as exc:
        return None, field_errors(exc)


class AgentCallExecutor:
    """Previews a function call; the agent that proposed it applies it."""

    applied_by: Literal["agent"] = "agent"
    payload_model = AgentCallPayload

    @property
    def task_type(self) -> str:
        return TASK_TYPE

    def validate(self, payload: Payload) -> ValidationReport:
        return ValidationReport.of(parse(payload)[1])

    async def plan(self, payload: Payload, context: PlanContext) -> Plan:
        call, errors = parse(payload)
        if call is None:
            raise invalid(TASK_TYPE, errors)
        preview = json.dumps(
            {"function": call.function, "arguments": call.arguments},
            sort_keys=True,
            indent=2,
            ensure_ascii=False,
        )
        return Plan.build(
            preview=preview + "\n",
            format="json",
            precondition_fingerprint=digest_of(call.canonical()),
            lines_changed=preview.count("\n") + 1,
            summary=f"call {call.function}",
        )
