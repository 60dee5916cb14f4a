"""Schemathesis over the OpenAPI document the app serves: every operation is fuzzed; no
request may end in a 5xx, and every error must be an ``application/problem+json`` document
with a ``type`` (issue 3: "a schemathesis run over the OpenAPI document with no 5xx
responses, in CI").

One test item per operation, each on a fresh database (the ``api`` fixture: the real app
with its lifespan and Runtime open, users of every role with bearer tokens). Per operation:

- as ``admin``: schema-conforming requests, then schema-violating ones (negative mode);
- as ``vic`` (viewer): schema-conforming requests;
- with no token, or whatever the generated ``Authorization`` header holds.

Random UUIDs only ever reach "404 not found", so half of the conforming requests are
steered to real objects: a task under review (and its preview digest), a DRAFT task, a
delegation, the seeded users, and a valid ``files.write`` type and payload.

Hypothesis runs derandomized (the same examples on every run, so a CI failure reproduces
locally) in a worker thread; each request goes to the app through the fixture's client on
the test's event loop. SQLite only, to keep the run under a minute: PostgreSQL doubles it
(add "postgresql" to the ``database_url`` parametrization to run it there too).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from conftest import Api
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from community_ade.api.app import create_app
from community_ade.api.errors import PROBLEM_JSON

# The operations, from the same code that serves /openapi.json (no Runtime needed for it).
OPERATIONS = [
    result.ok().label
    for result in schemathesis.openapi.from_dict(create_app().openapi()).get_all_operations()
]


def _settings(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        deadline=None,  # a request's time depends on the machine, not on the input
        derandomize=True,  # the same examples on every run: CI failures reproduce
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        # Requests are slow next to pure functions, generated API bodies are large, and
        # some operations have few valid inputs: none of that is a problem here.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
        print_blob=False,
    )


# -- checks ---------------------------------------------------------------------------------


def problem_document(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Every 4xx/5xx is an RFC 9457 problem document with a stable ``type``."""
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == PROBLEM_JSON, (
        f"{response.status_code} answered with Content-Type {content_type!r}, "
        f"not {PROBLEM_JSON}: {response.text[:300]!r}"
    )
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"the problem document is not JSON: {response.text[:300]!r}") from exc
    assert isinstance(body, dict), f"the problem document is not an object: {body!r}"
    assert isinstance(body.get("type"), str), f"no problem 'type': {body!r}"
    assert body["type"], f"an empty problem 'type': {body!r}"
    assert body.get("status", response.status_code) == response.status_code, (
        f"problem 'status' {body.get('status')!r} is not the HTTP status {response.status_code}"
    )


CHECKS = [not_a_server_error, problem_document]


# -- sending a generated case through the fixture's client -----------------------------------


def _sender(
    api: Api, loop: asyncio.AbstractEventLoop
) -> Callable[[dict[str, Any]], httpx.Response]:
    """A blocking ``send(transport_kwargs) -> httpx.Response`` for the Hypothesis thread.

    ``requests`` prepares the request exactly as Schemathesis means it (query encoding,
    JSON or raw body); httpx sends those bytes to the app on the test's event loop."""

    def send(kwargs: dict[str, Any]) -> httpx.Response:
        fields = {"method", "url", "headers", "params", "json", "data", "cookies"}
        unexpected = set(kwargs) - fields
        assert not unexpected, f"unexpected transport arguments {unexpected}"
        prepared = requests.Request(**kwargs).prepare()
        headers = [
            (name.encode("latin-1"), value.encode("latin-1") if isinstance(value, str) else value)
            for name, value in prepared.headers.items()
        ]
        request = api.client.request(
            prepared.method or "GET",
            prepared.url or "",
            headers=headers,
            content=prepared.body,
        )
        return asyncio.run_coroutine_threadsafe(request, loop).result(timeout=60)

    return send


# -- steering: real objects instead of random UUIDs ------------------------------------------


TOP_LEVEL_ONLY = {"type", "payload"}


async def _seed(api: Api) -> dict[str, list[Any]]:
    """A task under review (submitted by alice), a DRAFT task and a delegation of admin's;
    their ids (and the digest, the users, a task type and a valid payload for it) are
    what steered examples use."""
    c = api.client
    payload = {
        "root": str(api.workspace),
        "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
    }
    task = {
        "type": "files.write",
        "title": "turn on debug",
        "payload": payload,
        "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
    }
    under_review = (await c.post("/api/v1/tasks", json=task, headers=api.as_("alice"))).json()
    submitted = await c.post(f"/api/v1/tasks/{under_review['id']}/submit", headers=api.as_("alice"))
    assert submitted.status_code == 200, submitted.text
    draft = (await c.post("/api/v1/tasks", json=task, headers=api.as_("admin"))).json()
    delegation = await c.post(
        "/api/v1/delegations",
        json={
            "delegate": api.ids["bob"],
            "valid_from": "2020-01-01T00:00:00Z",
            "valid_until": "2099-01-01T00:00:00Z",
        },
        headers=api.as_("admin"),
    )
    assert delegation.status_code == 201, delegation.text
    users = [api.ids[name] for name in ("admin", "alice", "bob", "carol", "vic")]
    return {
        "task_id": [under_review["id"], draft["id"]],
        "delegation_id": [delegation.json()["id"]],
        "digest": [submitted.json()["preview_digest"]],
        "delegate": users,
        "delegate_to": users,
        "type": ["files.write"],
        "payload": [payload],
    }


def _steer(
    value: Any, known: dict[str, list[Any]], draw: Callable[[Any], Any], *, top: bool = True
) -> Any:
    """Replace, each with a drawn chance, the fields named in ``known`` by real values
    (``type`` and ``payload`` only at the top level: nested ``type``s are resource types)."""
    if isinstance(value, list):
        return [_steer(item, known, draw, top=False) for item in value]
    if not isinstance(value, dict):
        return value
    steered = {}
    for key, item in value.items():
        if key in known and (top or key not in TOP_LEVEL_ONLY) and draw(st.booleans()):
            item = draw(st.sampled_from(known[key]))
        steered[key] = _steer(item, known, draw, top=False)
    return steered


def _negatable(operation: schemathesis.APIOperation) -> bool:
    """Whether negative mode has anything to make invalid besides the token."""
    names = {p.name.lower() for p in operation.iter_parameters()} - {"authorization"}
    return bool(names) or bool(list(operation.body))


# -- the test -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pass:
    name: str
    mode: schemathesis.GenerationMode
    who: str | None  # a user of the ``api`` fixture; None: the generated Authorization header
    examples: int
    steer: bool  # half of the examples aimed at the seeded objects


POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
# 1-2 s per operation on SQLite on a 2-core box: about 35 s for the whole document.
PASSES = (
    Pass("admin", POSITIVE, "admin", examples=100, steer=True),
    Pass("admin, invalid requests", NEGATIVE, "admin", examples=40, steer=False),
    Pass("viewer", POSITIVE, "vic", examples=20, steer=True),
    Pass("no or a generated token", POSITIVE, None, examples=10, steer=False),
)


def _fuzz(
    operation: schemathesis.APIOperation,
    send: Callable[[dict[str, Any]], httpx.Response],
    fuzz: Pass,
    headers: dict[str, str],
    known: dict[str, list[Any]],
) -> None:
    # Authorization is a header parameter of every route (FastAPI documents it): fixed, so
    # that negative mode spends its examples on the rest; generated when nobody is given.
    fixed = {"authorization": headers["Authorization"]} if headers else None
    strategy = operation.as_strategy(generation_mode=fuzz.mode, headers=fixed)

    @_settings(fuzz.examples)
    @given(case=strategy, data=st.data())
    def run(case: schemathesis.Case, data: st.DataObject) -> None:
        if fuzz.steer and data.draw(st.booleans(), label="steer"):
            case.path_parameters = _steer(case.path_parameters, known, data.draw)
            case.body = _steer(case.body, known, data.draw)
        kwargs = case.as_transport_kwargs(base_url="http://ade", headers=headers)
        try:
            response = send(kwargs)
        except Exception as exc:  # the fixture's client re-raises what the app did not handle
            curl = case.as_curl_command(headers=headers)
            raise AssertionError(
                f"[{fuzz.name}] the app raised {exc!r} (answered 500) on:\n    {curl}"
            ) from exc
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseException as exc:  # Schemathesis reports failures as an exception group
            exc.add_note(f"[{fuzz.name}]")
            raise

    run()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("label", OPERATIONS)
async def test_openapi_fuzz(api: Api, label: str) -> None:
    served = await api.client.get("/openapi.json")
    schema = schemathesis.openapi.from_dict(served.json())
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served OpenAPI document"
    known = await _seed(api)
    send = _sender(api, asyncio.get_running_loop())
    for fuzz in PASSES:
        if fuzz.mode is NEGATIVE and not _negatable(operation):
            continue
        headers = api.as_(fuzz.who) if fuzz.who else {}
        # Hypothesis drives its examples synchronously; the app stays on this event loop.
        await asyncio.to_thread(_fuzz, operation, send, fuzz, headers, known)
