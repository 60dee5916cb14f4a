"""Secrets end to end over the API, on both databases: an admin stores a secret, a
submitter's http.request task refers to it, reviewers approve the preview that shows the
reference, a worker sends the request to a real local receiver with the value, and the
value appears nowhere anyone can read: not in the task, its preview, any list, the audit
log, the events stream, the dashboard's pages, nor the secrets routes themselves."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import Api
from sqlalchemy import select

from community_ade.events.relay import relay_for
from community_ade.execution.worker import Worker
from community_ade.storage.models import AuditEvent, Secret

VALUE = "tok_live_7f3a9c1e5b2d4086"  # what must never be read back
QUERY_VALUE = "qk-0c8e2f41d9a7"
TASKS = "/api/v1/tasks"


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP receiver that records each request and, carelessly, echoes its
    headers back (the apply must not record them)."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({"path": self.path, "headers": dict(self.headers.items())})
            reply = json.dumps({"you sent": dict(self.headers.items()), "path": self.path})
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def api_settings(receiver: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"http_allowlist": [f"{receiver[0]}/hooks/"]}


def webhook(url: str, **headers: Any) -> dict[str, Any]:
    return {
        "type": "http.request",
        "title": "deploy the api",
        "payload": {
            "method": "POST",
            "url": f"{url}/hooks/deploy?env=prod",
            "headers": headers
            or {"Authorization": {"secret": "deploy-token", "prefix": "Bearer "}},
            "query": {"api_key": {"secret": "hooks-key"}},
            "body": {"service": "api"},
        },
    }


async def store(api: Api, name: str, value: str, who: str = "admin") -> Any:
    return await api.client.put(
        f"/api/v1/secrets/{name}",
        json={"value": value, "description": f"{name} of the deploy hook"},
        headers=api.as_(who),
    )


@pytest.fixture
async def stored(
    api: Api, receiver: tuple[str, list[dict[str, Any]]]
) -> tuple[str, list[dict[str, Any]]]:
    """The two secrets ``webhook`` refers to, stored; the receiver, with nothing seen."""
    assert (await store(api, "deploy-token", VALUE)).status_code == 201
    assert (await store(api, "hooks-key", QUERY_VALUE)).status_code == 201
    receiver[1].clear()
    return receiver


async def approved(api: Api, body: dict[str, Any]) -> str:
    """Created by alice, submitted, approved by as many reviewers as it needs."""
    c = api.client
    created = await c.post(TASKS, json=body, headers=api.as_("alice"))
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    submitted = await c.post(f"{TASKS}/{task_id}/submit", headers=api.as_("alice"))
    assert submitted.status_code == 200, submitted.text
    digest = submitted.json()["preview_digest"]
    for reviewer in ("bob", "carol", "admin"):
        voted = await c.post(
            f"/api/v1/approvals/{task_id}/approve",
            json={"digest": digest},
            headers=api.as_(reviewer),
        )
        assert voted.status_code == 200, voted.text
        if voted.json()["task"]["state"] == "APPROVED":
            return str(task_id)
    raise AssertionError("three approvals did not approve the task")


async def apply_all(api: Api) -> None:
    await api.runtime.queue.drain_background()
    await asyncio.wait_for(Worker(api.runtime, concurrency=1, burst=True).run(), 60)


async def everything_in_redis(api: Api) -> str:
    """Every key and value of the test's own (embedded) Redis, as text."""
    r = api.runtime.redis
    dump: list[str] = []
    async for key in r.scan_iter(count=1000):
        kind = await r.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            value: Any = await r.get(key)
        elif kind == "hash":
            value = await r.hgetall(key)
        elif kind == "stream":
            value = await r.xrange(key)
        elif kind == "list":
            value = await r.lrange(key, 0, -1)
        elif kind == "set":
            value = await r.smembers(key)
        elif kind == "zset":
            value = await r.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        dump.append(f"{key!r} {value!r}")
    return "\n".join(dump)


async def test_a_secret_reaches_the_receiver_and_no_reader(
    api: Api, stored: tuple[str, list[dict[str, Any]]]
) -> None:
    url, seen = stored
    c = api.client
    replaced = await store(api, "deploy-token", VALUE)
    assert replaced.status_code == 200
    assert replaced.json()["created_by"] == api.ids["admin"]

    task_id = await approved(api, webhook(url))
    preview = (await c.get(f"{TASKS}/{task_id}/preview", headers=api.as_("vic"))).json()
    assert "Authorization: Bearer {secret:deploy-token}" in preview["content"]
    assert "api_key={secret:hooks-key}" in preview["content"]
    await apply_all(api)

    # The receiver got the values...
    [request] = seen
    assert request["headers"]["Authorization"] == f"Bearer {VALUE}"
    assert request["path"] == f"/hooks/deploy?env=prod&api_key={QUERY_VALUE}"
    task = (await c.get(f"{TASKS}/{task_id}", headers=api.as_("vic"))).json()
    assert task["state"] == "COMPLETED", task
    echoed = task["result"]["details"]["response"]
    assert "Bearer {secret:deploy-token}" in echoed  # the receiver's echo, scrubbed

    # ...and nobody who reads gets them.
    reads = [
        f"{TASKS}/{task_id}",
        f"{TASKS}/{task_id}/preview",
        TASKS,
        "/api/v1/approvals",
        f"/api/v1/approvals/{task_id}",
        "/api/v1/audit?limit=100",
        "/api/v1/secrets",
        "/api/v1/secrets/deploy-token",
    ]
    for path in reads:
        answer = await c.get(path, headers=api.as_("admin"))
        assert answer.status_code == 200, (path, answer.text)
        assert VALUE not in answer.text, path
        assert QUERY_VALUE not in answer.text, path
    session_cookie = {"Cookie": f"ade_session={api.tokens['vic']}"}
    for page in [f"/tasks/{task_id}", f"/approvals/{task_id}", "/tasks", "/audit", "/"]:
        html = await c.get(page, headers=session_cookie)
        assert html.status_code == 200, (page, html.text[:500])
        assert VALUE not in html.text, page
        assert QUERY_VALUE not in html.text, page
    async with api.runtime.sessions() as session:
        rows = (await session.scalars(select(AuditEvent))).all()
        secrets = (await session.scalars(select(Secret))).all()
    audit_text = json.dumps([[r.type, r.subject, r.data] for r in rows])
    assert VALUE not in audit_text
    assert QUERY_VALUE not in audit_text
    assert {"secret:stored"} <= {r.type for r in rows}
    assert next(r.data for r in rows if r.type == "secret:stored") == {
        "name": "deploy-token",
        "created": True,
    }
    # Sealed at rest, and the apply noted its use.
    assert all(VALUE.encode() not in s.ciphertext for s in secrets)
    assert all(s.last_used_at is not None for s in secrets)
    # The live events stream (everything the relay copied into Redis, and all else there).
    await relay_for(api.runtime).relay_audit()
    redis_text = await everything_in_redis(api)
    assert "secret:stored" in redis_text
    assert "task:completed" in redis_text
    assert VALUE not in redis_text
    assert QUERY_VALUE not in redis_text


async def test_inline_credentials_and_unknown_secrets_are_refused_at_create(
    api: Api, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, _ = receiver
    c = api.client
    assert (await store(api, "hooks-key", QUERY_VALUE)).status_code == 201
    inline = webhook(url, Authorization=f"Bearer {VALUE}")
    inline["payload"]["url"] += "&token=abc123"
    refused = await c.post(TASKS, json=inline, headers=api.as_("alice"))
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"] == "validation_failed"
    assert [e["path"] for e in problem["errors"]] == ["headers.Authorization", "url"]
    assert all("ade secrets set" in e["message"] for e in problem["errors"])
    assert VALUE not in refused.text  # not even echoed to its sender

    unknown = await c.post(TASKS, json=webhook(url), headers=api.as_("alice"))
    assert unknown.status_code == 422
    [error] = unknown.json()["errors"]
    assert error["path"] == "headers.Authorization"
    assert "'deploy-token', which does not exist" in error["message"]
    listed = (await c.get(TASKS, headers=api.as_("alice"))).json()
    assert listed["total"] == 0  # nothing half-written

    # An edit is checked the same way.
    assert (await store(api, "deploy-token", VALUE)).status_code == 201
    created = await c.post(TASKS, json=webhook(url), headers=api.as_("alice"))
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    edit = {"payload": inline["payload"]}
    patched = await c.patch(f"{TASKS}/{task_id}", json=edit, headers=api.as_("alice"))
    assert patched.status_code == 422, patched.text
    task = (await c.get(f"{TASKS}/{task_id}", headers=api.as_("vic"))).json()
    assert task["payload"]["headers"]["Authorization"] == {
        "secret": "deploy-token",
        "prefix": "Bearer ",
    }


async def test_a_secret_deleted_after_approval_fails_the_apply(
    api: Api, stored: tuple[str, list[dict[str, Any]]]
) -> None:
    url, seen = stored
    c = api.client
    task_id = await approved(api, webhook(url))
    refused = await c.delete("/api/v1/secrets/hooks-key", headers=api.as_("bob"))
    assert refused.status_code == 403
    deleted = await c.delete("/api/v1/secrets/hooks-key", headers=api.as_("admin"))
    assert deleted.status_code == 204
    await apply_all(api)
    task = (await c.get(f"{TASKS}/{task_id}", headers=api.as_("alice"))).json()
    assert task["state"] == "FAILED", task
    assert task["attempts"] == 1  # permanent: not retried
    assert "no longer exist: hooks-key" in task["last_error"]
    assert seen == []


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("short", {"value": "1234567"}, 422),
        ("Bad-Name", {"value": VALUE}, 422),
        ("x", {"value": VALUE, "extra": 1}, 422),
        ("x", {"value": VALUE, "description": "d" * 501}, 422),
        ("x", {}, 422),
    ],
)
async def test_bad_secrets_are_refused_plainly(
    api: Api, name: str, body: dict[str, Any], status: int
) -> None:
    answer = await api.client.put(f"/api/v1/secrets/{name}", json=body, headers=api.as_("admin"))
    assert answer.status_code == status, answer.text
    assert answer.json()["type"] == "validation_failed"
    assert VALUE not in answer.text
    missing = await api.client.get(f"/api/v1/secrets/{uuid.uuid4().hex}", headers=api.as_("vic"))
    assert missing.status_code == 403  # viewers do not even list names
    missing = await api.client.get(f"/api/v1/secrets/{uuid.uuid4().hex}", headers=api.as_("alice"))
    assert missing.status_code == 404
