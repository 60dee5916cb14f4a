"""The OpenAPI document carries every task type's payload schema: a component per type,
and the task bodies' ``payload`` pointing at them by type, while staying a free object
(the server takes any installed type's payload, a plugin's too, and its executor
validates it). The document as the app serves it; no Runtime needed."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict

from community_ade.api import openapi_payloads
from community_ade.api.app import create_app
from community_ade.execution.executors import Plan, PlanContext, ValidationReport
from community_ade.execution.executors.base import Payload

DOCUMENT = create_app().openapi()
SCHEMAS = DOCUMENT["components"]["schemas"]
EXPECTED = {
    "agent.call": "AgentCallPayload",
    "files.write": "FilesWritePayload",
    "git.patch": "GitPatchPayload",
    "http.request": "HttpRequestPayload",
    "shell": "ShellPayload",
}


def component(name: str) -> Draft202012Validator:
    """A validator of one component, its refs resolved in the document's components."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return Draft202012Validator(schema)


def test_each_built_in_type_is_a_component_and_the_task_bodies_name_them() -> None:
    for body in ("TaskCreate", "TaskUpdate"):
        payload = SCHEMAS[body]["properties"]["payload"]
        refs = payload[openapi_payloads.EXTENSION]
        assert {t: r["$ref"].rsplit("/", 1)[1] for t, r in refs.items()} == EXPECTED
        for task_type, name in EXPECTED.items():
            assert f"`{task_type}`: {name}" in payload["description"]
    # Still a free object: a plugin's type is accepted and validated by its executor.
    assert SCHEMAS["TaskCreate"]["properties"]["payload"]["type"] == "object"
    assert SCHEMAS["TaskCreate"]["properties"]["payload"]["additionalProperties"] is True


def test_every_reference_in_the_document_resolves() -> None:
    text = json.dumps(DOCUMENT)
    assert '"#/$defs/' not in text  # nested models were lifted into the components
    for name in SCHEMAS:
        Draft202012Validator.check_schema(SCHEMAS[name])
    refs = {part.split('"', 1)[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs <= set(SCHEMAS)


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "FilesWritePayload",
            {"root": "/w", "changes": [{"path": "a", "action": "write", "content": "x"}]},
            {"root": "/w", "changes": [{"path": "../a", "action": "write", "content": "x"}]},
        ),
        (
            "HttpRequestPayload",
            {"method": "POST", "url": "https://x/", "headers": {"Authorization": {"secret": "t"}}},
            {"method": "POST", "url": "https://x/", "headers": {"Authorization": {"secret": 1}}},
        ),
        (
            "ShellPayload",
            {"profile": "deploy", "params": {"env": "eu"}, "cwd": "/srv"},
            {"profile": "deploy", "command": ["rm"], "cwd": "/srv"},
        ),
        ("GitPatchPayload", {"repo": "/r", "branch": "main", "patch": "p", "message": "m"}, {}),
        ("AgentCallPayload", {"function": "f"}, {"function": "f", "x": 1}),
    ],
)
def test_a_client_validates_payloads_with_the_components(
    name: str, good: dict[str, Any], bad: dict[str, Any]
) -> None:
    assert list(component(name).iter_errors(good)) == []
    assert list(component(name).iter_errors(bad)) != []


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class _DeployPayload(BaseModel):
    steps: list[_Step]


class TaskCreate(BaseModel):  # named like one of the API's own components
    other: int


class _ClashingPayload(BaseModel):
    nested: TaskCreate


class Plugin:
    def __init__(self, task_type: str, model: type[BaseModel] | None) -> None:
        self.task_type = task_type
        self.payload_model = model

    def validate(self, payload: Payload) -> ValidationReport:
        return ValidationReport()

    async def plan(self, payload: Payload, context: PlanContext) -> Plan:
        raise NotImplementedError


def test_a_plugin_type_gets_a_component_and_never_replaces_another() -> None:
    document = copy.deepcopy(DOCUMENT)
    before = copy.deepcopy(document["components"]["schemas"])
    openapi_payloads.add_payload_schemas(
        document,
        {
            "acme.deploy-v2": Plugin("acme.deploy-v2", _DeployPayload),
            "acme.clash": Plugin("acme.clash", _ClashingPayload),
            "acme.bare": Plugin("acme.bare", None),
        },
    )
    schemas = document["components"]["schemas"]
    assert schemas["AcmeDeployV2Payload"]["properties"]["steps"]["items"] == {
        "$ref": "#/components/schemas/_Step"
    }
    assert "_Step" in schemas
    assert "AcmeClashPayload" not in schemas
    assert "other" not in schemas["TaskCreate"]["properties"]
    assert {n: before[n] for n in before if n not in ("TaskCreate", "TaskUpdate")} == {
        n: schemas[n] for n in before if n not in ("TaskCreate", "TaskUpdate")
    }
    refs = schemas["TaskCreate"]["properties"]["payload"][openapi_payloads.EXTENSION]
    assert set(refs) == {"acme.deploy-v2"}


@pytest.mark.parametrize(
    ("task_type", "name"),
    [("files.write", "FilesWritePayload"), ("shell", "ShellPayload"), ("a-b_c.d", "ABCDPayload")],
)
def test_component_names_follow_the_type(task_type: str, name: str) -> None:
    assert openapi_payloads.component_name(task_type) == name
