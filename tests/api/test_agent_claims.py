"""Tasks their agent applies (agent.call): never queued for a worker; the proposing agent
claims the approved task (APPROVED → APPLYING, locks held in a lease, fence answered),
reports complete or fail with that fence; a lapsed claim is retried or failed by the
sweep, and a report with the old fence is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Api
from test_agents_api import agent_token, create, problem

from community_ade.execution.claims import settle_lapsed_claims
from community_ade.execution.worker import Worker

TASKS = "/api/v1/tasks"


async def propose(
    api: Api, headers: dict[str, str], arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = {
        "type": "agent.call",
        "title": "deploy api",
        "payload": {"function": "deploy", "arguments": arguments or {"service": "api"}},
        "resources": [{"type": "service", "id": "api", "actions": ["write"]}],
    }
    created = await api.client.post(TASKS, json=body, headers=headers)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    submitted = await api.client.post(f"{TASKS}/{task_id}/submit", headers=headers)
    assert submitted.status_code == 200, submitted.text
    result: dict[str, Any] = submitted.json()
    return result


async def approved(api: Api, headers: dict[str, str], **kw: Any) -> str:
    submitted = await propose(api, headers, **kw)
    task_id: str = submitted["task"]["id"]
    decided = await api.client.post(
        f"/api/v1/approvals/{task_id}/approve",
        json={"digest": submitted["preview_digest"]},
        headers=api.as_("bob"),
    )
    assert decided.json()["task"]["state"] == "APPROVED", decided.text
    return task_id


@pytest.fixture
async def agent(api: Api) -> dict[str, str]:
    made = await create(api, name="deployer", tools=[])
    return await agent_token(api, made["id"])


async def claim(api: Api, agent: dict[str, str], task_id: str) -> dict[str, Any]:
    response = await api.client.post(f"{TASKS}/{task_id}/claim", json={}, headers=agent)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def held(api: Api, resource: str) -> bool:
    return bool((await api.runtime.locks.inspect_resource(resource)).holders)


async def test_the_preview_is_the_call_and_no_worker_takes_it(
    api: Api, agent: dict[str, str]
) -> None:
    submitted = await propose(api, agent, {"version": "1.4.2", "service": "api"})
    preview = await api.client.get(
        f"{TASKS}/{submitted['task']['id']}/preview", headers=api.as_("vic")
    )
    assert preview.json()["format"] == "json"
    assert '"function": "deploy"' in preview.json()["content"]
    # Argument order does not change what is approved.
    again = await propose(api, agent, {"service": "api", "version": "1.4.2"})
    assert again["preview_digest"] == submitted["preview_digest"]

    task_id = await approved(api, agent)
    await api.runtime.queue.drain_background()
    assert sum((await api.runtime.queue.depth()).ready) == 0
    await asyncio.wait_for(Worker(api.runtime, burst=True).run(), 60)
    task = (await api.client.get(f"{TASKS}/{task_id}", headers=api.as_("vic"))).json()
    assert task["state"] == "APPROVED"


async def test_claim_apply_complete(api: Api, agent: dict[str, str]) -> None:
    task_id = await approved(api, agent)
    claimed = await claim(api, agent, task_id)
    assert claimed["task"]["state"] == "APPLYING"
    assert claimed["task"]["attempts"] == 1
    fence = claimed["fence"]
    assert claimed["lease"]["locks"]["fence"] == fence
    assert set(claimed["lease"]["locks"]["resources"]) == {f"task:{task_id}", "service:api"}
    assert await held(api, "service:api")

    done = await api.client.post(
        f"{TASKS}/{task_id}/complete",
        json={"fence": fence, "summary": "deployed 1.4.2", "details": {"url": "x"}},
        headers=agent,
    )
    assert done.status_code == 200, done.text
    task = done.json()
    assert task["state"] == "COMPLETED"
    assert task["result"]["summary"] == "deployed 1.4.2"
    assert not await held(api, "service:api")
    lease = await api.client.post(
        f"/api/v1/leases/{claimed['lease']['id']}/heartbeat", headers=agent
    )
    assert lease.status_code == 404


async def test_who_may_claim_and_when(api: Api, agent: dict[str, str]) -> None:
    other = await agent_token(api, (await create(api, name="other-bot", tools=[]))["id"])
    pending = (await propose(api, agent))["task"]["id"]
    problem(
        await api.client.post(f"{TASKS}/{pending}/claim", json={}, headers=agent),
        409,
        "invalid_transition",
    )
    task_id = await approved(api, agent)
    for who in (api.as_("alice"), api.as_("admin"), other):
        problem(
            await api.client.post(f"{TASKS}/{task_id}/claim", json={}, headers=who),
            403,
            "forbidden",
        )
    files = await api.client.post(
        TASKS,
        json={
            "type": "files.write",
            "title": "x",
            "payload": {
                "root": str(api.workspace),
                "changes": [{"path": "a.txt", "action": "write", "content": "a"}],
            },
        },
        headers=agent,
    )
    refused = problem(
        await api.client.post(f"{TASKS}/{files.json()['id']}/claim", json={}, headers=agent),
        409,
        "conflict",
    )
    assert refused["task_type"] == "files.write"
    await claim(api, agent, task_id)
    problem(
        await api.client.post(f"{TASKS}/{task_id}/claim", json={}, headers=agent),
        409,
        "invalid_transition",
    )


async def test_fail_retries_while_asked_then_fails(api: Api, agent: dict[str, str]) -> None:
    task_id = await approved(api, agent)
    first = await claim(api, agent, task_id)
    retried = await api.client.post(
        f"{TASKS}/{task_id}/fail",
        json={
            "fence": first["fence"],
            "error": "registry busy",
            "rollback_outcome": "nothing_to_roll_back",
            "retry": True,
        },
        headers=agent,
    )
    assert retried.json()["state"] == "APPROVED", retried.text
    assert retried.json()["last_error"] == "registry busy"
    assert not await held(api, "service:api")
    second = await claim(api, agent, task_id)
    assert second["fence"] > first["fence"]
    assert second["task"]["attempts"] == 2
    failed = await api.client.post(
        f"{TASKS}/{task_id}/fail",
        json={"fence": second["fence"], "error": "bad image", "rollback_outcome": "rolled_back"},
        headers=agent,
    )
    body = failed.json()
    assert (body["state"], body["rollback_outcome"]) == ("FAILED", "rolled_back"), failed.text


async def test_a_lapsed_claim_is_retried_and_its_old_fence_refused(
    api: Api, agent: dict[str, str]
) -> None:
    task_id = await approved(api, agent)
    first = await claim(api, agent, task_id)
    # A live claim is left alone by the sweep.
    assert await settle_lapsed_claims(api.runtime) == []
    # The agent vanishes: its lease goes (as when it is not renewed in time).
    closed = await api.client.delete(f"/api/v1/leases/{first['lease']['id']}", headers=agent)
    assert closed.status_code == 204
    assert [str(t) for t in await settle_lapsed_claims(api.runtime)] == [task_id]
    task = (await api.client.get(f"{TASKS}/{task_id}", headers=agent)).json()
    assert (task["state"], task["rollback_outcome"]) == ("APPROVED", "unknown")
    assert "lapsed" in task["last_error"]

    second = await claim(api, agent, task_id)
    stale = problem(
        await api.client.post(
            f"{TASKS}/{task_id}/complete", json={"fence": first["fence"]}, headers=agent
        ),
        409,
        "fence_rejected",
    )
    assert stale["newest"] == second["fence"]
    done = await api.client.post(
        f"{TASKS}/{task_id}/complete", json={"fence": second["fence"]}, headers=agent
    )
    assert done.json()["state"] == "COMPLETED", done.text


async def test_a_claim_that_keeps_lapsing_fails(api: Api, agent: dict[str, str]) -> None:
    task_id = await approved(api, agent)
    attempts = api.runtime.settings.worker_max_attempts
    for _ in range(attempts):
        claimed = await claim(api, agent, task_id)
        await api.client.delete(f"/api/v1/leases/{claimed['lease']['id']}", headers=agent)
        await settle_lapsed_claims(api.runtime)
    task = (await api.client.get(f"{TASKS}/{task_id}", headers=agent)).json()
    assert (task["state"], task["attempts"]) == ("FAILED", attempts)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"function": "rm -rf", "arguments": {}}, "function"),
        ({"function": "f", "arguments": {"blob": "x" * 70_000}}, "arguments"),
        ({"function": "f", "arguments": [1, 2]}, "arguments"),
        ({"function": "f", "arguments": {}, "extra": 1}, "extra"),
    ],
)
async def test_bad_calls_are_refused_naming_the_field(
    api: Api, agent: dict[str, str], payload: dict[str, Any], field: str
) -> None:
    created = await api.client.post(
        TASKS, json={"type": "agent.call", "title": "x", "payload": payload}, headers=agent
    )
    if created.status_code == 201:  # create may accept a draft; submit validates
        created = await api.client.post(f"{TASKS}/{created.json()['id']}/submit", headers=agent)
    body = problem(created, 422, "validation_failed")
    assert [e["path"] for e in body["errors"]] == [field], body


async def test_task_types_describe_themselves(api: Api) -> None:
    listed = await api.client.get("/api/v1/task-types", headers=api.as_("vic"))
    assert listed.status_code == 200, listed.text
    types = {t["type"]: t for t in listed.json()}
    assert {"agent.call", "files.write", "git.patch", "http.request", "shell"} <= set(types)
    call = types["agent.call"]
    assert call["applied_by"] == "agent"
    assert types["files.write"]["applied_by"] == "worker"
    assert call["description"].startswith("Previews a function call")
    schema = call["payload_schema"]
    assert schema["required"] == ["function"]
    assert set(schema["properties"]) == {"function", "arguments"}
    assert schema["additionalProperties"] is False
