"""The installed task types' payload schemas in the OpenAPI document.

Each type whose executor has a ``payload_model`` becomes a component named after the
type (``files.write`` → ``FilesWritePayload``), its nested models beside it. The
``payload`` of ``TaskCreate`` and ``TaskUpdate`` stays a free JSON object, because the
server accepts any installed type, a plugin's too, and validates the payload through its
executor; it gains a description naming the component of each type and, for generators
and tools, ``x-ade-payload-schemas``: the type → ``$ref`` map. Pure: the document in, the
document changed in place.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from community_ade.execution.executors import Executor

REFS = "#/components/schemas/"
EXTENSION = "x-ade-payload-schemas"
_BODIES = ("TaskCreate", "TaskUpdate")

log = logging.getLogger(__name__)


def component_name(task_type: str) -> str:
    """``files.write`` → ``FilesWritePayload``, ``acme.deploy-v2`` → ``AcmeDeployV2Payload``."""
    parts = re.split(r"[^A-Za-z0-9]+", task_type)
    return "".join(part[:1].upper() + part[1:] for part in parts) + "Payload"


def payload_components(model: type[BaseModel], name: str) -> dict[str, dict[str, Any]]:
    """The component ``name`` for ``model`` and one per model it nests, refs pointing into
    the document's components."""
    schema = model.model_json_schema(ref_template=REFS + "{model}")
    nested: dict[str, dict[str, Any]] = schema.pop("$defs", {})
    return {**nested, name: schema}


def add_payload_schemas(document: dict[str, Any], executors: Mapping[str, Executor]) -> None:
    """Add every executor's payload schema to ``document`` and point the task bodies'
    ``payload`` at them. A type whose components would replace a different schema of
    the same name is left out (logged), never allowed to change another's."""
    components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    refs: dict[str, dict[str, str]] = {}
    for task_type, executor in sorted(executors.items()):
        model = getattr(executor, "payload_model", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        name = component_name(task_type)
        found = payload_components(model, name)
        clashes = sorted(n for n, s in found.items() if components.get(n, s) != s)
        if clashes:
            log.warning(
                "the payload schema of %s is not in the OpenAPI document: its component(s) "
                "%s clash with others of the same name",
                task_type,
                ", ".join(clashes),
            )
            continue
        components.update(found)
        refs[task_type] = {"$ref": REFS + name}
    if not refs:
        return
    listed = "; ".join(f"`{t}`: {ref['$ref'].removeprefix(REFS)}" for t, ref in refs.items())
    description = (
        f"The payload of the task's `type`, validated by that type's executor ({listed}). "
        "GET /api/v1/task-types lists every installed type with its payload schema, plugins "
        "included; a payload that does not fit answers 422 validation_failed naming the field."
    )
    for body in _BODIES:
        payload = components.get(body, {}).get("properties", {}).get("payload")
        if payload is not None:
            payload["description"] = description
            payload[EXTENSION] = refs
