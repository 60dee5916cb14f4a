"""The authorization matrix: every route of the REST API × every kind of caller.

``MATRIX_TABLE`` is the expected answer of each (route, caller) cell, written out by hand
from the role table in the docs (deliberately *not* derived from ``ROLE_PERMISSIONS``):

- ``ok``: allowed, and the route must actually do its job (the status it promises, 200,
  201, 202 or 204, and a body or a follow-up request that shows the effect: the task
  created, the vote recorded, the agent gone, ...);
- ``403``: a ``forbidden`` problem document naming the missing permission (``needs``);
- ``401``: an ``unauthenticated`` problem document (no token, or one that is not valid).

Every cell gets a fresh precondition: the caller's own DRAFT task for edit / submit /
cancel, a task somebody else submitted for the review routes, the caller's own delegation
for revoke, the caller's own agent (two versions, a token) or a lease of it, a lock grant
to force-release, and so on. ``SCENARIO_TABLE`` adds the cells where the answer depends on
more than the role: ownership, separation of duties (``self_review``), policy eligibility
(``not_eligible``), idempotency replays and dead tokens.

``test_matrix_covers_every_route`` enumerates the app's routes, so a new route without a
row here fails the suite; only the WebSocket and the dashboard's cookie-authenticated
pages are left out, each saying where it is tested (``EXEMPT_ROUTES``). Everything runs
on SQLite and on PostgreSQL (the ``api`` fixture).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import Api
from starlette.routing import WebSocketRoute

from community_ade.api.app import create_app
from community_ade.auth import service as auth
from community_ade.dashboard.web import PageRoute
from community_ade.storage.models import WebhookDelivery

# -- the expected matrix ----------------------------------------------------------------------

OK = "ok"
NO = "forbidden"
AUTH = "unauthenticated"
SELF = "self_review"
INELIGIBLE = "not_eligible"

CALLERS = ("admin", "reviewer", "submitter", "viewer", "agent", "anonymous", "bad_token")

# Claim, complete and fail belong to the agent that proposed the task (an agent.call):
# every person is refused, whatever the role, so no permission is named ("-").
# Columns: adm admin, rev reviewer (bob), sub submitter (alice), vwr viewer (vic), agt an
# agent of alice's, non no token, bad a well-formed token that was never issued.
# Cells: ok = allowed and done; 403 = forbidden, naming the permission in "needs";
# 401 = unauthenticated.
MATRIX_TABLE = """
method path                                         needs             adm rev sub vwr agt non bad
GET    /healthz                                     -                 ok  ok  ok  ok  ok  ok  ok
GET    /readyz                                      -                 ok  ok  ok  ok  ok  ok  ok
POST   /api/v1/tasks                                task_write        ok  ok  ok  403 ok  401 401
GET    /api/v1/tasks                                task_read         ok  ok  ok  ok  ok  401 401
GET    /api/v1/tasks/{task_id}                      task_read         ok  ok  ok  ok  ok  401 401
PATCH  /api/v1/tasks/{task_id}                      task_write        ok  ok  ok  403 ok  401 401
POST   /api/v1/tasks/{task_id}/submit               task_write        ok  ok  ok  403 ok  401 401
POST   /api/v1/tasks/{task_id}/cancel               task_write        ok  ok  ok  403 ok  401 401
POST   /api/v1/tasks/{task_id}/apply                task_write        ok  ok  ok  403 ok  401 401
GET    /api/v1/task-types                           task_read         ok  ok  ok  ok  ok  401 401
POST   /api/v1/tasks/{task_id}/claim                -                 403 403 403 403 ok  401 401
POST   /api/v1/tasks/{task_id}/complete             -                 403 403 403 403 ok  401 401
POST   /api/v1/tasks/{task_id}/fail                 -                 403 403 403 403 ok  401 401
GET    /api/v1/tasks/{task_id}/preview              task_read         ok  ok  ok  ok  ok  401 401
GET    /api/v1/tasks/{task_id}/decision             task_read         ok  ok  ok  ok  ok  401 401
GET    /api/v1/approvals                            task_read         ok  ok  ok  ok  ok  401 401
GET    /api/v1/approvals/{task_id}                  task_read         ok  ok  ok  ok  ok  401 401
POST   /api/v1/approvals/{task_id}/approve          review            ok  ok  403 403 403 401 401
POST   /api/v1/approvals/{task_id}/reject           review            ok  ok  403 403 403 401 401
POST   /api/v1/approvals/{task_id}/request-changes  review            ok  ok  403 403 403 401 401
POST   /api/v1/approvals/{task_id}/delegate         review            ok  ok  403 403 403 401 401
POST   /api/v1/approvals/batch                      review            ok  ok  403 403 403 401 401
GET    /api/v1/policies                             policy_read       ok  ok  ok  ok  ok  401 401
PUT    /api/v1/policies                             policy_write      ok  403 403 403 403 401 401
POST   /api/v1/policies/evaluate                    policy_read       ok  ok  ok  ok  ok  401 401
GET    /api/v1/delegations                          delegation_read   ok  ok  ok  ok  ok  401 401
POST   /api/v1/delegations                          delegation_write  ok  ok  403 403 403 401 401
DELETE /api/v1/delegations/{delegation_id}          delegation_write  ok  ok  403 403 403 401 401
GET    /api/v1/audit                                audit_read        ok  ok  ok  ok  ok  401 401
GET    /api/v1/audit/verify                         audit_read        ok  ok  ok  ok  ok  401 401
GET    /.well-known/ade-audit-key                   -                 ok  ok  ok  ok  ok  ok  ok
GET    /api/v1/audit/checkpoint                     -                 ok  ok  ok  ok  ok  ok  ok
POST   /api/v1/audit/checkpoint                     audit_read        ok  ok  ok  ok  ok  401 401
GET    /api/v1/audit/consistency                    -                 ok  ok  ok  ok  ok  ok  ok
GET    /api/v1/audit/{seq}/proof                    audit_read        ok  ok  ok  ok  ok  401 401
GET    /api/v1/tasks/{task_id}/receipts             task_read         ok  ok  ok  ok  ok  401 401
GET    /api/v1/agents                               agent_read        ok  ok  ok  ok  ok  401 401
POST   /api/v1/agents                               agent_write       ok  ok  ok  403 403 401 401
GET    /api/v1/agents/{agent_id}                    agent_read        ok  ok  ok  ok  ok  401 401
PATCH  /api/v1/agents/{agent_id}                    agent_write       ok  ok  ok  403 403 401 401
DELETE /api/v1/agents/{agent_id}                    agent_write       ok  ok  ok  403 403 401 401
GET    /api/v1/agents/{agent_id}/versions           agent_read        ok  ok  ok  ok  ok  401 401
GET    /api/v1/agents/{agent_id}/versions/diff      agent_read        ok  ok  ok  ok  ok  401 401
POST   /api/v1/agents/{agent_id}/revert             agent_write       ok  ok  ok  403 403 401 401
GET    /api/v1/agents/{agent_id}/health             agent_read        ok  ok  ok  ok  ok  401 401
GET    /api/v1/agents/{agent_id}/tokens             agent_write       ok  ok  ok  403 403 401 401
POST   /api/v1/agents/{agent_id}/tokens             agent_write       ok  ok  ok  403 403 401 401
DELETE /api/v1/agents/{agent_id}/tokens/{token_id}  agent_write       ok  ok  ok  403 403 401 401
GET    /api/v1/tokens                               -                 ok  ok  ok  ok  403 401 401
POST   /api/v1/tokens                               -                 ok  ok  ok  ok  403 401 401
DELETE /api/v1/tokens/{token_id}                    -                 ok  ok  ok  ok  403 401 401
GET    /api/v1/catalogue/models                     agent_read        ok  ok  ok  ok  ok  401 401
POST   /api/v1/catalogue/models                     catalogue_write   ok  403 403 403 403 401 401
PUT    /api/v1/catalogue/models/{model_id}          catalogue_write   ok  403 403 403 403 401 401
DELETE /api/v1/catalogue/models/{model_id}          catalogue_write   ok  403 403 403 403 401 401
GET    /api/v1/catalogue/tools                      agent_read        ok  ok  ok  ok  ok  401 401
POST   /api/v1/catalogue/tools                      catalogue_write   ok  403 403 403 403 401 401
PUT    /api/v1/catalogue/tools/{tool_id}            catalogue_write   ok  403 403 403 403 401 401
DELETE /api/v1/catalogue/tools/{tool_id}            catalogue_write   ok  403 403 403 403 401 401
GET    /api/v1/secrets                              secret_read       ok  ok  ok  403 ok  401 401
GET    /api/v1/secrets/{name}                       secret_read       ok  ok  ok  403 ok  401 401
PUT    /api/v1/secrets/{name}                       secret_write      ok  403 403 403 403 401 401
DELETE /api/v1/secrets/{name}                       secret_write      ok  403 403 403 403 401 401
GET    /api/v1/integrations/slack                   secret_write      ok  403 403 403 403 401 401
PUT    /api/v1/integrations/slack                   secret_write      ok  403 403 403 403 401 401
DELETE /api/v1/integrations/slack                   secret_write      ok  403 403 403 403 401 401
PUT    /api/v1/integrations/slack/channels/{kind}/{name} secret_write ok  403 403 403 403 401 401
PUT    /api/v1/integrations/slack/users/{username}  user_admin        ok  403 403 403 403 401 401
GET    /api/v1/users/me/notification-preferences    -                 ok  ok  ok  ok  403 401 401
PUT    /api/v1/users/me/notification-preferences    -                 ok  ok  ok  ok  403 401 401
GET    /api/v1/shell-profiles                       task_read         ok  ok  ok  ok  ok  401 401
GET    /api/v1/shell-profiles/{name}                task_read         ok  ok  ok  ok  ok  401 401
PUT    /api/v1/shell-profiles/{name}                shell_profile_write ok 403 403 403 403 401 401
DELETE /api/v1/shell-profiles/{name}                shell_profile_write ok 403 403 403 403 401 401
POST   /api/v1/leases                               lock_lease        ok  ok  ok  403 ok  401 401
POST   /api/v1/leases/{lease_id}/heartbeat          lock_lease        ok  ok  ok  403 ok  401 401
DELETE /api/v1/leases/{lease_id}                    lock_lease        ok  ok  ok  403 ok  401 401
GET    /api/v1/locks                                lock_read         ok  ok  ok  ok  ok  401 401
GET    /api/v1/locks/events                         lock_read         ok  ok  ok  ok  ok  401 401
POST   /api/v1/locks/force-release                  lock_admin        ok  403 403 403 403 401 401
GET    /api/v1/webhooks                             webhook_admin     ok  403 403 403 403 401 401
POST   /api/v1/webhooks                             webhook_admin     ok  403 403 403 403 401 401
GET    /api/v1/webhooks/{webhook_id}                webhook_admin     ok  403 403 403 403 401 401
PATCH  /api/v1/webhooks/{webhook_id}                webhook_admin     ok  403 403 403 403 401 401
DELETE /api/v1/webhooks/{webhook_id}                webhook_admin     ok  403 403 403 403 401 401
POST   /api/v1/webhooks/{webhook_id}/rotate-secret  webhook_admin     ok  403 403 403 403 401 401
GET    /api/v1/webhooks/{webhook_id}/deliveries     webhook_admin     ok  403 403 403 403 401 401
GET    /api/v1/webhook-deliveries/{delivery_id}     webhook_admin     ok  403 403 403 403 401 401
POST   /api/v1/webhook-deliveries/{delivery_id}/redeliver webhook_admin ok  403 403 403 403 401 401
GET    /metrics                                     -                 ok  ok  ok  ok  ok  ok  ok
"""

CELLS = {"ok": OK, "403": NO, "401": AUTH}


def _parse_matrix(table: str) -> dict[tuple[str, str], tuple[str | None, tuple[str, ...]]]:
    rows = {}
    for line in table.strip().splitlines()[1:]:
        method, path, needs, *cells = line.split()
        assert len(cells) == len(CALLERS), line
        rows[(method, path)] = (None if needs == "-" else needs, tuple(CELLS[c] for c in cells))
    return rows


MATRIX = _parse_matrix(MATRIX_TABLE)

# The framework's own documentation pages: not part of the API, no row needed.
FRAMEWORK_ROUTES = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
# WS /api/v1/ws has no row: httpx cannot open a WebSocket. tests/api/test_ws.py checks its
# authentication (bearer token, ?token=, a session cookie with its Origin: 4401 otherwise)
# and the read permission of each topic.
# /mcp speaks JSON-RPC, not REST: tests/integration/test_mcp_transports.py checks that it
# answers 401 without a token and refuses a person's token, and tests/api/test_mcp_gateway.py
# that an agent sees only its own tools.
# Slack's interactivity endpoint takes Slack's signature, not a token: tests/api/test_slack.py
# checks that a bad signature or an old timestamp is a 401 that changes nothing.
EXEMPT_ROUTES = {
    ("WS", "/api/v1/ws"),
    ("GET", "/mcp"),
    ("POST", "/mcp"),
    ("DELETE", "/mcp"),
    ("POST", "/api/v1/integrations/slack/interactivity"),
}
# The dashboard's pages (PageRoute) are not walked at all: they take a session cookie, not
# a bearer token, and answer HTML and login redirects, not problem documents;
# tests/integration/test_dashboard_pages.py covers them role by role.

# Who each caller is (the users come from the ``api`` fixture; ``agent`` is made here).
USERS = {
    "admin": "admin",
    "reviewer": "bob",
    "submitter": "alice",
    "viewer": "vic",
    "db_owner": "carol",  # a reviewer in the group db-owners
}
# Callers that may create tasks / delegations: the others act on somebody else's.
TASK_WRITERS = {"admin", "reviewer", "submitter", "agent", "db_owner"}
DELEGATORS = {"admin", "reviewer", "db_owner"}
# Callers that may register and manage agents (humans with agent_write).
AGENT_MANAGERS = {"admin", "reviewer", "submitter", "db_owner"}

# A well-formed token that was never issued.
UNKNOWN_TOKEN = "ade_u0000000_" + "A" * 43


# -- the world a cell runs in -----------------------------------------------------------------


@dataclass
class Target:
    """What a cell acts on, prepared by a precondition."""

    task_id: str | None = None
    digest: str | None = None
    delegation_id: str | None = None
    agent_id: str | None = None
    token_id: str | None = None
    token: str | None = None  # the plaintext of token_id
    lease_id: str | None = None
    entry_id: str | None = None  # a catalogue entry
    resource: str | None = None  # a lock resource, held by request_id
    request_id: str | None = None
    fence: int | None = None  # of a claimed task
    delivery_id: str | None = None  # a webhook delivery of the subscription entry_id
    headers: dict[str, str] = field(default_factory=dict)


class World:
    """The ``api`` fixture plus an agent of alice's, and helpers to set the scene."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {user: api.ids[name] for user, name in USERS.items()}

    @classmethod
    async def create(cls, api: Api) -> World:
        world = cls(api)
        await world.add_agent("agent", owner="submitter")
        return world

    async def add_agent(self, caller: str, *, owner: str) -> None:
        """An agent identity owned by ``owner`` and a token for it, known as ``caller``."""
        async with self.api.runtime.sessions.begin() as session:
            agent = await auth.create_agent_identity(
                session, f"{caller}-bot", uuid.UUID(self.ids[owner])
            )
            self.tokens[caller], _ = await auth.create_token(
                session, name="matrix", agent_id=agent.id
            )
            self.ids[caller] = str(agent.id)

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "anonymous":
            return {}
        if caller == "bad_token":
            return {"Authorization": f"Bearer {UNKNOWN_TOKEN}"}
        if caller in self.tokens:
            return {"Authorization": f"Bearer {self.tokens[caller]}"}
        return self.api.as_(USERS[caller])

    async def call(
        self, caller: str, t: Target, method: str, url: str, json: Any = None
    ) -> httpx.Response:
        headers = self.headers(caller) | t.headers
        return await self.api.client.request(method, url, json=json, headers=headers)

    # -- scene setting (always as someone allowed, asserting it worked) --

    def task_body(self) -> dict[str, Any]:
        return {
            "type": "files.write",
            "title": "turn on debug",
            "payload": {
                "root": str(self.api.workspace),
                "changes": [{"path": "app.conf", "action": "write", "content": "debug = true\n"}],
            },
            "resources": [{"type": "configuration", "id": "app", "actions": ["write"]}],
        }

    async def draft(self, owner: str, headers: dict[str, str] | None = None) -> str:
        t = Target(headers=headers or {})
        r = await self.call(owner, t, "POST", "/api/v1/tasks", self.task_body())
        assert r.status_code == 201, f"setup: {owner} creates a task: {r.text}"
        return str(r.json()["id"])

    async def submitted(self, owner: str) -> Target:
        task_id = await self.draft(owner)
        r = await self.call(owner, Target(), "POST", f"/api/v1/tasks/{task_id}/submit")
        assert r.status_code == 200, f"setup: {owner} submits: {r.text}"
        assert r.json()["task"]["state"] == "SUBMITTED", r.text
        return Target(task_id=task_id, digest=r.json()["preview_digest"])

    async def delegation(self, delegator: str, delegate: str = "db_owner") -> str:
        body = self.delegation_body(delegate)
        r = await self.call(delegator, Target(), "POST", "/api/v1/delegations", body)
        assert r.status_code == 201, f"setup: {delegator} delegates: {r.text}"
        return str(r.json()["id"])

    def delegation_body(self, delegate: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "delegate": self.ids[delegate],
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_until": (now + timedelta(days=1)).isoformat(),
        }

    async def put_policy(self, document: dict[str, Any]) -> None:
        r = await self.call("admin", Target(), "PUT", "/api/v1/policies", document)
        assert r.status_code == 200, f"setup: admin stores a policy: {r.text}"

    async def status(self, method: str, url: str, *, token: str | None = None) -> int:
        """The status the admin (or the bearer ``token``) gets: to check a cell's effect."""
        headers = self.headers("admin") if token is None else {"Authorization": f"Bearer {token}"}
        return (await self.api.client.request(method, url, headers=headers)).status_code

    async def agent(self, owner: str) -> str:
        """A new agent of ``owner``'s at version 1 (registered over the API)."""
        body = {"name": f"{owner}-{uuid.uuid4().hex[:8]}", "model": "gpt-4o"}
        r = await self.call(owner, Target(), "POST", "/api/v1/agents", body)
        assert r.status_code == 201, f"setup: {owner} registers an agent: {r.text}"
        return str(r.json()["id"])

    async def managed_agent(self, owner: str) -> Target:
        """An agent of ``owner``'s with two versions (the description changed to
        "edited") and a token."""
        agent_id = await self.agent(owner)
        url = f"/api/v1/agents/{agent_id}"
        r = await self.call(owner, Target(), "PATCH", url, {"description": "edited"})
        assert r.json()["config_version"] == 2, f"setup: {owner} edits the agent: {r.text}"
        r = await self.call(owner, Target(), "POST", f"{url}/tokens", {"name": "setup"})
        assert r.status_code == 201, f"setup: {owner} gives the agent a token: {r.text}"
        token = r.json()
        return Target(agent_id=agent_id, token_id=token["id"], token=token["token"])

    async def lease(self, opener: str, agent_id: str) -> str:
        body = {"agent_id": agent_id}
        r = await self.call(opener, Target(), "POST", "/api/v1/leases", body)
        assert r.status_code == 201, f"setup: {opener} opens a lease: {r.text}"
        return str(r.json()["id"])


# -- preconditions: (world, caller) -> the target of the cell ---------------------------------

Precondition = Callable[[World, str], Awaitable[Target]]


async def nothing(w: World, caller: str) -> Target:
    return Target()


async def own_draft(w: World, caller: str) -> Target:
    """The caller's own DRAFT task; a caller that cannot create one gets alice's."""
    return Target(task_id=await w.draft(caller if caller in TASK_WRITERS else "submitter"))


async def submitted_by_submitter(w: World, caller: str) -> Target:
    return await w.submitted("submitter")


async def own_delegation(w: World, caller: str) -> Target:
    """The caller's own delegation; a caller that cannot delegate gets bob's."""
    delegator = caller if caller in DELEGATORS else "reviewer"
    delegate = "reviewer" if delegator == "db_owner" else "db_owner"
    return Target(delegation_id=await w.delegation(delegator, delegate))


async def reviewers_delegation(w: World, caller: str) -> Target:
    return Target(delegation_id=await w.delegation("reviewer"))


async def approved_waiting(w: World, owner: str) -> Target:
    """An APPROVED task of ``owner`` that waits for POST /apply (manual-apply policy)."""
    await w.put_policy(
        {
            "rules": [{"name": "auto", "task_types": ["*"], "auto_approve_below": 100}],
            "apply": {"files.write": "manual"},
        }
    )
    task_id = await w.draft(owner)
    r = await w.call(owner, Target(), "POST", f"/api/v1/tasks/{task_id}/submit")
    assert r.json()["task"]["state"] == "APPROVED", f"setup: {owner}'s task approved: {r.text}"
    return Target(task_id=task_id)


async def own_approved(w: World, caller: str) -> Target:
    return await approved_waiting(w, caller if caller in TASK_WRITERS else "submitter")


async def agents_approved_call(w: World, caller: str) -> Target:
    """An APPROVED agent.call task of the matrix's agent (auto-approved). Each cell's
    claim holds one permit of the agent's until its lease lapses: room for all seven."""
    await w.api.runtime.locks.set_capacity(w.ids["agent"], len(CALLERS))
    await w.put_policy(
        {"rules": [{"name": "auto", "task_types": ["*"], "auto_approve_below": 100}]}
    )
    body = {"type": "agent.call", "title": "call", "payload": {"function": "f", "arguments": {}}}
    r = await w.call("agent", Target(), "POST", "/api/v1/tasks", body)
    assert r.status_code == 201, f"setup: the agent proposes a call: {r.text}"
    task_id = r.json()["id"]
    r = await w.call("agent", Target(), "POST", f"/api/v1/tasks/{task_id}/submit")
    assert r.json()["task"]["state"] == "APPROVED", f"setup: the call approved: {r.text}"
    return Target(task_id=task_id)


async def agents_claimed_call(w: World, caller: str) -> Target:
    """The matrix's agent claimed its approved agent.call task."""
    target = await agents_approved_call(w, caller)
    r = await w.call("agent", target, "POST", f"/api/v1/tasks/{target.task_id}/claim", {})
    assert r.status_code == 200, f"setup: the agent claims its call: {r.text}"
    target.fence = r.json()["fence"]
    return target


async def submitters_approved(w: World, caller: str) -> Target:
    return await approved_waiting(w, "submitter")


async def submitters_draft(w: World, caller: str) -> Target:
    return Target(task_id=await w.draft("submitter"))


async def agents_draft(w: World, caller: str) -> Target:
    return Target(task_id=await w.draft("agent"))


async def db_owner_delegation(w: World, caller: str) -> Target:
    return Target(delegation_id=await w.delegation("db_owner", "reviewer"))


async def reviewers_task(w: World, caller: str) -> Target:
    return await w.submitted("reviewer")


async def admins_task(w: World, caller: str) -> Target:
    return await w.submitted("admin")


async def reviewer_agent_task(w: World, caller: str) -> Target:
    await w.add_agent("reviewers_agent", owner="reviewer")
    return await w.submitted("reviewers_agent")


async def group_rule_task(w: World, caller: str) -> Target:
    """Alice's task under a policy that wants one approval from db-owners (carol) and no
    general slot: bob (a reviewer) and the admin are not eligible."""
    await w.put_policy(
        {
            "rules": [
                {
                    "name": "config needs db-owners",
                    "task_types": ["files.*"],
                    "resource_types": ["configuration"],
                    "groups": [{"group": "db-owners", "count": 1}],
                }
            ]
        }
    )
    target = await w.submitted("submitter")
    task = (await w.call("admin", target, "GET", f"/api/v1/tasks/{target.task_id}")).json()
    assert task["requirements"]["groups"] == [{"group": "db-owners", "count": 1}], task
    assert task["requirements"]["approvals_needed"] == 1, task
    return target


async def create_key_used(w: World, caller: str) -> Target:
    """Alice created a task with an Idempotency-Key; the caller sends the same key."""
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    await w.draft("submitter", headers=key)
    return Target(headers=key)


async def submit_key_used(w: World, caller: str) -> Target:
    """Alice submitted her task with an Idempotency-Key; the caller sends the same key."""
    key = {"Idempotency-Key": f"submit-{uuid.uuid4()}"}
    task_id = await w.draft("submitter")
    r = await w.call("submitter", Target(headers=key), "POST", f"/api/v1/tasks/{task_id}/submit")
    assert r.status_code == 200, r.text
    return Target(task_id=task_id, headers=key)


async def revoked_token(w: World, caller: str) -> Target:
    async with w.api.runtime.sessions.begin() as session:
        user = await auth.get_user_by_name(session, "bob")
        w.tokens[caller], row = await auth.create_token(session, name="old", user_id=user.id)
        await auth.revoke_token(session, row.id)
    return Target()


async def disabled_user(w: World, caller: str) -> Target:
    async with w.api.runtime.sessions.begin() as session:
        user = await auth.create_user(session, "dora", "admin")
        w.tokens[caller], _ = await auth.create_token(session, name="t", user_id=user.id)
        await auth.disable_user(session, user.id)
    return Target()


async def disabled_owner(w: World, caller: str) -> Target:
    async with w.api.runtime.sessions.begin() as session:
        owner = await auth.create_user(session, "olaf", "submitter")
        agent = await auth.create_agent_identity(session, "olafs-bot", owner.id)
        w.tokens[caller], _ = await auth.create_token(session, name="t", agent_id=agent.id)
        await auth.disable_user(session, owner.id)
    return Target()


async def own_agent(w: World, caller: str) -> Target:
    """The caller's own agent; a caller that cannot manage agents gets alice's."""
    return await w.managed_agent(caller if caller in AGENT_MANAGERS else "submitter")


async def submitters_agent(w: World, caller: str) -> Target:
    return await w.managed_agent("submitter")


def _lease_holder(caller: str) -> str:
    """Who opens the lease a cell of ``caller`` acts on: the caller if it may lease at all
    (the agent for itself, a human for its own agent), else alice."""
    return caller if caller in AGENT_MANAGERS | {"agent"} else "submitter"


async def own_leasable_agent(w: World, caller: str) -> Target:
    """An agent the caller may lease: the agent itself, or the human's own agent (alice's
    for a caller that may not lease)."""
    holder = _lease_holder(caller)
    return Target(agent_id=w.ids["agent"] if holder == "agent" else await w.agent(holder))


async def own_lease(w: World, caller: str) -> Target:
    target = await own_leasable_agent(w, caller)
    assert target.agent_id is not None
    target.lease_id = await w.lease(_lease_holder(caller), target.agent_id)
    return target


async def submitters_lease(w: World, caller: str) -> Target:
    """A lease of an agent of alice's (not the matrix's agent), opened by alice."""
    return await own_lease(w, "submitter")


async def agents_lease(w: World, caller: str) -> Target:
    """The lease the matrix's agent opened for itself."""
    return await own_lease(w, "agent")


def catalogue_entry(kind: str) -> Precondition:
    """A catalogue entry the admin just added (``kind``: models or tools)."""

    async def added(w: World, caller: str) -> Target:
        entry_id = f"matrix-{uuid.uuid4().hex[:8]}"
        body = {"id": entry_id, **CATALOGUE_ENTRIES[kind]}
        r = await w.call("admin", Target(), "POST", f"/api/v1/catalogue/{kind}", body)
        assert r.status_code == 201, f"setup: admin adds to the catalogue: {r.text}"
        return Target(entry_id=entry_id)

    return added


SHELL_PROFILE = {"command": ["git", "diff", "--stat"], "description": "matrix"}
SHELL_PROFILES = "/api/v1/shell-profiles"


async def shell_profile(w: World, caller: str) -> Target:
    """A shell profile the admin just saved (version 1)."""
    name = f"matrix-{uuid.uuid4().hex[:8]}"
    r = await w.call("admin", Target(), "PUT", f"{SHELL_PROFILES}/{name}", SHELL_PROFILE)
    assert r.status_code == 200, f"setup: admin saves a shell profile: {r.text}"
    return Target(entry_id=name)


async def held_lock(w: World, caller: str) -> Target:
    """An exclusive grant on a resource of this cell's own (its own lock agent too, so
    that the cells of a route never wait for a permit)."""
    resource = f"matrix-{uuid.uuid4().hex[:8]}"
    grant = await w.api.runtime.locks.acquire(
        f"task-{resource}", f"agent-{resource}", {resource: "exclusive"}, timeout=5
    )
    return Target(resource=resource, request_id=grant.request_id)


# -- the routes: one request each, and what "did its job" means -------------------------------


@dataclass
class Reply:
    response: httpx.Response
    ok_status: int
    did_its_job: Callable[[Any], bool]


Action = Callable[[World, str, Target], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    action: Action
    precondition: Precondition


ROUTES: dict[tuple[str, str], Route] = {}


def route(
    method: str, path: str, precondition: Precondition = nothing
) -> Callable[[Action], Action]:
    def register(action: Action) -> Action:
        ROUTES[(method, path)] = Route(action, precondition)
        return action

    return register


def decision(w: World, caller: str, b: Any, state: str, verb: str) -> bool:
    review = b["review"]
    mine = review["actor_id"] == w.ids[caller]
    return bool(b["task"]["state"] == state and review["decision"] == verb and mine)


@route("GET", "/healthz")
async def healthz(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/healthz")
    return Reply(r, 200, lambda b: b == {"status": "ok"})


@route("GET", "/readyz")
async def readyz(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/readyz")
    return Reply(r, 200, lambda b: b["status"] == "ok")


@route("POST", "/api/v1/tasks")
async def create_task(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", "/api/v1/tasks", w.task_body())

    def created(b: Any) -> bool:
        mine = b["submitter_id"] == w.ids[caller] and b["agent_id"] is None
        agents = b["submitter_id"] == w.ids["submitter"] and b["agent_id"] == w.ids["agent"]
        return bool(b["state"] == "DRAFT" and (agents if caller == "agent" else mine))

    return Reply(r, 201, created)


@route("GET", "/api/v1/tasks", own_draft)
async def list_tasks(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/tasks?limit=100")
    return Reply(r, 200, lambda b: t.task_id in [i["id"] for i in b["items"]])


@route("GET", "/api/v1/tasks/{task_id}", own_draft)
async def get_task(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"/api/v1/tasks/{t.task_id}")
    return Reply(r, 200, lambda b: b["id"] == t.task_id)


@route("PATCH", "/api/v1/tasks/{task_id}", own_draft)
async def update_task(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "PATCH", f"/api/v1/tasks/{t.task_id}", {"title": "edited"})
    return Reply(r, 200, lambda b: b["title"] == "edited" and b["id"] == t.task_id)


@route("POST", "/api/v1/tasks/{task_id}/submit", own_draft)
async def submit_task(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"/api/v1/tasks/{t.task_id}/submit")
    return Reply(r, 200, lambda b: b["task"]["state"] == "SUBMITTED" and len(b["preview_digest"]))


@route("POST", "/api/v1/tasks/{task_id}/cancel", own_draft)
async def cancel_task(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"/api/v1/tasks/{t.task_id}/cancel", {"reason": "no"})
    return Reply(r, 200, lambda b: b["state"] == "CANCELLED")


@route("POST", "/api/v1/tasks/{task_id}/apply", own_approved)
async def apply_task(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"/api/v1/tasks/{t.task_id}/apply")
    return Reply(r, 202, lambda b: b["id"] == t.task_id and bool(b["apply_requested_at"]))


@route("GET", "/api/v1/task-types")
async def task_types(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/task-types")
    return Reply(r, 200, lambda b: "files.write" in [i["type"] for i in b])


@route("POST", "/api/v1/tasks/{task_id}/claim", agents_approved_call)
async def claim_task(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"/api/v1/tasks/{t.task_id}/claim", {})
    return Reply(r, 200, lambda b: b["task"]["state"] == "APPLYING" and b["fence"] > 0)


@route("POST", "/api/v1/tasks/{task_id}/complete", agents_claimed_call)
async def complete_task(w: World, caller: str, t: Target) -> Reply:
    body = {"fence": t.fence}
    r = await w.call(caller, t, "POST", f"/api/v1/tasks/{t.task_id}/complete", body)
    return Reply(r, 200, lambda b: b["state"] == "COMPLETED")


@route("POST", "/api/v1/tasks/{task_id}/fail", agents_claimed_call)
async def fail_task(w: World, caller: str, t: Target) -> Reply:
    body = {"fence": t.fence, "error": "no", "rollback_outcome": "nothing_to_roll_back"}
    r = await w.call(caller, t, "POST", f"/api/v1/tasks/{t.task_id}/fail", body)
    return Reply(r, 200, lambda b: b["state"] == "FAILED")


@route("GET", "/api/v1/tasks/{task_id}/preview", submitted_by_submitter)
async def get_preview(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"/api/v1/tasks/{t.task_id}/preview")
    return Reply(r, 200, lambda b: b["digest"] == t.digest and "+debug = true" in b["content"])


@route("GET", "/api/v1/tasks/{task_id}/decision", submitted_by_submitter)
async def get_decision(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"/api/v1/tasks/{t.task_id}/decision")
    return Reply(r, 200, lambda b: b["task_id"] == t.task_id and b["decided"] is False)


@route("GET", "/api/v1/approvals", submitted_by_submitter)
async def list_approvals(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/approvals?limit=100")
    return Reply(r, 200, lambda b: t.task_id in [i["id"] for i in b["items"]])


@route("GET", "/api/v1/approvals/{task_id}", submitted_by_submitter)
async def get_approval(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"/api/v1/approvals/{t.task_id}")
    return Reply(r, 200, lambda b: b["task"]["id"] == t.task_id and b["accounting"]["needed"] >= 1)


@route("POST", "/api/v1/approvals/{task_id}/approve", submitted_by_submitter)
async def approve(w: World, caller: str, t: Target) -> Reply:
    url = f"/api/v1/approvals/{t.task_id}/approve"
    r = await w.call(caller, t, "POST", url, {"digest": t.digest})
    return Reply(r, 200, lambda b: decision(w, caller, b, "APPROVED", "approve"))


@route("POST", "/api/v1/approvals/{task_id}/reject", submitted_by_submitter)
async def reject(w: World, caller: str, t: Target) -> Reply:
    url = f"/api/v1/approvals/{t.task_id}/reject"
    r = await w.call(caller, t, "POST", url, {"digest": t.digest, "comment": "no"})
    return Reply(r, 200, lambda b: decision(w, caller, b, "REJECTED", "reject"))


@route("POST", "/api/v1/approvals/{task_id}/request-changes", submitted_by_submitter)
async def request_changes(w: World, caller: str, t: Target) -> Reply:
    url = f"/api/v1/approvals/{t.task_id}/request-changes"
    r = await w.call(caller, t, "POST", url, {"digest": t.digest, "comment": "please"})
    return Reply(r, 200, lambda b: decision(w, caller, b, "DRAFT", "request_changes"))


@route("POST", "/api/v1/approvals/{task_id}/delegate", submitted_by_submitter)
async def delegate(w: World, caller: str, t: Target) -> Reply:
    stand_in = "reviewer" if caller == "db_owner" else "db_owner"
    body = {"digest": t.digest, "delegate_to": w.ids[stand_in]}
    r = await w.call(caller, t, "POST", f"/api/v1/approvals/{t.task_id}/delegate", body)
    return Reply(
        r,
        200,
        lambda b: (
            decision(w, caller, b, "SUBMITTED", "delegate")
            and b["review"]["delegate_to"] == w.ids[stand_in]
        ),
    )


@route("POST", "/api/v1/approvals/batch", submitted_by_submitter)
async def batch(w: World, caller: str, t: Target) -> Reply:
    body = {"items": [{"task_id": t.task_id, "action": "approve", "digest": t.digest}]}
    r = await w.call(caller, t, "POST", "/api/v1/approvals/batch", body)
    return Reply(
        r,
        200,
        lambda b: (
            [(i["task_id"], i["result"], i["state"]) for i in b["results"]]
            == [(t.task_id, "ok", "APPROVED")]
        ),
    )


@route("GET", "/api/v1/policies")
async def get_policy(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/policies")
    return Reply(  # the built-in policy: its one rule lets coding agents' reads through
        r,
        200,
        lambda b: (
            b["version"] == 0
            and [rule["name"] for rule in b["document"]["rules"]]
            == ["coding agents: read-only tools"]
        ),
    )


@route("PUT", "/api/v1/policies")
async def put_policy(w: World, caller: str, t: Target) -> Reply:
    document = {"rules": [], "default_review_ttl_seconds": 3600}
    r = await w.call(caller, t, "PUT", "/api/v1/policies", document)
    return Reply(
        r,
        200,
        lambda b: b["version"] == 1 and b["document"]["default_review_ttl_seconds"] == 3600,
    )


@route("POST", "/api/v1/policies/evaluate")
async def evaluate_policy(w: World, caller: str, t: Target) -> Reply:
    body = {"type": "files.write", "resources": w.task_body()["resources"], "lines_changed": 2}
    r = await w.call(caller, t, "POST", "/api/v1/policies/evaluate", body)
    return Reply(
        r,
        200,
        lambda b: (
            b["requirements"]["approvals_needed"] >= 1
            and w.ids["db_owner"] in b["eligible_reviewers"]["any_slot"]
            and w.ids["viewer"] not in b["eligible_reviewers"]["any_slot"]
        ),
    )


@route("GET", "/api/v1/delegations", reviewers_delegation)
async def list_delegations(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/delegations")
    # Bob's delegation to carol: the admin and bob see it; the others are no party to it.
    party = caller in {"admin", "reviewer", "db_owner"}
    return Reply(r, 200, lambda b: (t.delegation_id in [d["id"] for d in b]) == party)


@route("POST", "/api/v1/delegations")
async def create_delegation(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", "/api/v1/delegations", w.delegation_body("db_owner"))
    return Reply(
        r,
        201,
        lambda b: b["delegator_id"] == w.ids[caller] and b["delegate_id"] == w.ids["db_owner"],
    )


@route("DELETE", "/api/v1/delegations/{delegation_id}", own_delegation)
async def revoke_delegation(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "DELETE", f"/api/v1/delegations/{t.delegation_id}")
    return Reply(r, 200, lambda b: b["id"] == t.delegation_id and b["revoked_at"] is not None)


@route("GET", "/api/v1/audit", own_draft)
async def list_audit(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"/api/v1/audit?subject=task:{t.task_id}")
    return Reply(r, 200, lambda b: [e["type"] for e in b["items"]] == ["task:created"])


@route("GET", "/api/v1/audit/verify", own_draft)
async def verify_audit(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/audit/verify")
    return Reply(r, 200, lambda b: b["ok"] is True and b["checked"] >= 1)


async def checkpointed(w: World, caller: str) -> Target:
    """A task of alice's in the log, and a checkpoint signed over it (as the admin)."""
    target = await submitted_by_submitter(w, caller)
    r = await w.call("admin", Target(), "POST", "/api/v1/audit/checkpoint")
    assert r.status_code == 200, f"setup: a checkpoint: {r.text}"
    return target


@route("GET", "/.well-known/ade-audit-key")
async def audit_key(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/.well-known/ade-audit-key")
    return Reply(r, 200, lambda b: str(b).startswith("community-ade/"))


@route("GET", "/api/v1/audit/checkpoint", checkpointed)
async def get_checkpoint(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/audit/checkpoint")
    return Reply(r, 200, lambda b: b["size"] >= 1 and "\u2014 " in b["note"])


@route("POST", "/api/v1/audit/checkpoint", own_draft)
async def make_checkpoint(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", "/api/v1/audit/checkpoint")
    return Reply(r, 200, lambda b: b["size"] >= 1)


@route("GET", "/api/v1/audit/consistency", checkpointed)
async def audit_consistency(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/audit/consistency?from=1&to=2")
    return Reply(r, 200, lambda b: b["from"] == 1 and b["to"] == 2 and len(b["proof"]) == 1)


@route("GET", "/api/v1/audit/{seq}/proof", checkpointed)
async def audit_proof(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/audit/1/proof")
    return Reply(r, 200, lambda b: b["seq"] == 1 and b["size"] >= 1)


@route("GET", "/api/v1/tasks/{task_id}/receipts", checkpointed)
async def task_receipts(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"/api/v1/tasks/{t.task_id}/receipts")
    return Reply(r, 200, lambda b: [x["entry"]["type"] for x in b] == ["task:submitted"])


AGENTS = "/api/v1/agents"


@route("GET", AGENTS, own_agent)
async def list_agents(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{AGENTS}?limit=100")
    return Reply(r, 200, lambda b: t.agent_id in [a["id"] for a in b["items"]])


@route("POST", AGENTS)
async def create_agent(w: World, caller: str, t: Target) -> Reply:
    body = {"name": f"new-{uuid.uuid4().hex[:8]}", "model": "gpt-4o"}
    r = await w.call(caller, t, "POST", AGENTS, body)
    return Reply(
        r,
        201,
        lambda b: b["owner_id"] == w.ids[caller] and b["config_version"] == 1,
    )


@route("GET", AGENTS + "/{agent_id}", own_agent)
async def get_agent(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{AGENTS}/{t.agent_id}")
    return Reply(r, 200, lambda b: b["id"] == t.agent_id and b["health"]["status"] == "offline")


@route("PATCH", AGENTS + "/{agent_id}", own_agent)
async def update_agent(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "PATCH", f"{AGENTS}/{t.agent_id}", {"description": "patched"})
    return Reply(r, 200, lambda b: b["description"] == "patched" and b["config_version"] == 3)


@route("DELETE", AGENTS + "/{agent_id}", own_agent)
async def delete_agent(w: World, caller: str, t: Target) -> Reply:
    url = f"{AGENTS}/{t.agent_id}"
    r = await w.call(caller, t, "DELETE", url)
    # Retired: gone from the API, and its token no longer authenticates.
    gone = r.status_code == 204 and (
        await w.status("GET", url),
        await w.status("GET", AGENTS, token=t.token),
    ) == (404, 401)
    return Reply(r, 204, lambda b: gone)


@route("GET", AGENTS + "/{agent_id}/versions", own_agent)
async def list_agent_versions(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{AGENTS}/{t.agent_id}/versions")
    return Reply(r, 200, lambda b: [v["version"] for v in b] == [2, 1])


@route("GET", AGENTS + "/{agent_id}/versions/diff", own_agent)
async def diff_agent_versions(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{AGENTS}/{t.agent_id}/versions/diff?from=1&to=2")
    return Reply(
        r, 200, lambda b: b["changes"] == [{"field": "description", "from": "", "to": "edited"}]
    )


@route("POST", AGENTS + "/{agent_id}/revert", own_agent)
async def revert_agent(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"{AGENTS}/{t.agent_id}/revert", {"version": 1})
    return Reply(r, 200, lambda b: b["config_version"] == 3 and b["description"] == "")


@route("GET", AGENTS + "/{agent_id}/health", own_agent)
async def agent_health(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{AGENTS}/{t.agent_id}/health")
    return Reply(r, 200, lambda b: b["status"] == "offline" and b["live_leases"] == 0)


@route("GET", AGENTS + "/{agent_id}/tokens", own_agent)
async def list_agent_tokens(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{AGENTS}/{t.agent_id}/tokens")
    return Reply(r, 200, lambda b: [x["id"] for x in b] == [t.token_id] and "token" not in b[0])


@route("POST", AGENTS + "/{agent_id}/tokens", own_agent)
async def create_agent_token(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"{AGENTS}/{t.agent_id}/tokens", {"name": "matrix"})
    # The new token authenticates as the agent.
    works = r.status_code == 201 and (
        await w.status("GET", f"{AGENTS}/{t.agent_id}", token=r.json()["token"]) == 200
    )
    return Reply(r, 201, lambda b: works and b["name"] == "matrix")


@route("DELETE", AGENTS + "/{agent_id}/tokens/{token_id}", own_agent)
async def revoke_agent_token(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "DELETE", f"{AGENTS}/{t.agent_id}/tokens/{t.token_id}")
    dead = r.status_code == 200 and await w.status("GET", AGENTS, token=t.token) == 401
    return Reply(r, 200, lambda b: dead and b["id"] == t.token_id and b["revoked_at"] is not None)


async def own_token(w: World, caller: str) -> Target:
    """A token of the caller's own (a person's); other callers get alice's."""
    person = caller if caller in USERS else "submitter"
    async with w.api.runtime.sessions.begin() as session:
        token, row = await auth.create_token(
            session, name="own", user_id=uuid.UUID(w.ids[person]), scopes=["read"]
        )
    return Target(token_id=str(row.id), token=token)


@route("GET", "/api/v1/tokens", own_token)
async def list_own_tokens(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/tokens")
    return Reply(r, 200, lambda b: t.token_id in [x["id"] for x in b] and "token" not in b[0])


@route("POST", "/api/v1/tokens", nothing)
async def create_own_token(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", "/api/v1/tokens", {"name": "m", "scopes": ["read"]})
    # The new token reads as its maker (tests/api/test_token_scopes.py: and no more).
    works = r.status_code == 201 and (
        await w.status("GET", "/api/v1/tasks", token=r.json()["token"]) == 200
    )
    return Reply(r, 201, lambda b: works and b["scopes"] == ["read"])


@route("DELETE", "/api/v1/tokens/{token_id}", own_token)
async def revoke_own_token(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "DELETE", f"/api/v1/tokens/{t.token_id}")
    dead = r.status_code == 200 and await w.status("GET", "/api/v1/tasks", token=t.token) == 401
    return Reply(r, 200, lambda b: dead and b["revoked_at"] is not None)


# What a new catalogue entry holds besides its id, and an entry the migrations seed.
CATALOGUE_ENTRIES: dict[str, dict[str, Any]] = {
    "models": {"name": "Tiny", "provider": "Local", "context_window": 1000},
    "tools": {"name": "Tiny tool", "category": "Misc"},
}
SEEDED = {"models": "gpt-4o", "tools": "files.read"}


def register_catalogue_routes(kind: str) -> None:
    """The five routes of one part of the catalogue (models or tools): the same shape."""
    url = f"/api/v1/catalogue/{kind}"
    entry = url + "/{" + kind[:-1] + "_id}"

    async def listed(w: World, caller: str) -> list[str]:
        r = await w.call(caller, Target(), "GET", url)
        return [e["id"] for e in r.json()]

    @route("GET", url)
    async def read(w: World, caller: str, t: Target) -> Reply:
        r = await w.call(caller, t, "GET", url)
        return Reply(r, 200, lambda b: SEEDED[kind] in [e["id"] for e in b])

    @route("POST", url)
    async def create(w: World, caller: str, t: Target) -> Reply:
        entry_id = f"new-{uuid.uuid4().hex[:8]}"
        r = await w.call(caller, t, "POST", url, {"id": entry_id, **CATALOGUE_ENTRIES[kind]})
        added = r.status_code == 201 and entry_id in await listed(w, "viewer")
        return Reply(r, 201, lambda b: added and b["id"] == entry_id)

    @route("PUT", entry, catalogue_entry(kind))
    async def replace(w: World, caller: str, t: Target) -> Reply:
        body = CATALOGUE_ENTRIES[kind] | {"name": "Renamed"}
        r = await w.call(caller, t, "PUT", f"{url}/{t.entry_id}", body)
        return Reply(r, 200, lambda b: b["id"] == t.entry_id and b["name"] == "Renamed")

    @route("DELETE", entry, catalogue_entry(kind))
    async def delete(w: World, caller: str, t: Target) -> Reply:
        r = await w.call(caller, t, "DELETE", f"{url}/{t.entry_id}")
        gone = r.status_code == 204 and t.entry_id not in await listed(w, "viewer")
        return Reply(r, 204, lambda b: gone)


register_catalogue_routes("models")
register_catalogue_routes("tools")

SECRETS = "/api/v1/secrets"
SECRET_VALUE = "matrix-secret-value"


async def stored_secret(w: World, caller: str) -> Target:
    """A secret the admin just stored (its name in ``entry_id``)."""
    name = f"matrix-{uuid.uuid4().hex[:8]}"
    r = await w.call("admin", Target(), "PUT", f"{SECRETS}/{name}", {"value": SECRET_VALUE})
    assert r.status_code == 201, f"setup: admin stores a secret: {r.text}"
    return Target(entry_id=name)


async def secret_names(w: World) -> list[str]:
    return [s["name"] for s in (await w.call("admin", Target(), "GET", SECRETS)).json()]


@route("GET", SECRETS, stored_secret)
async def list_secrets(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", SECRETS)
    return Reply(
        r, 200, lambda b: t.entry_id in [s["name"] for s in b] and SECRET_VALUE not in r.text
    )


@route("GET", SECRETS + "/{name}", stored_secret)
async def get_secret(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{SECRETS}/{t.entry_id}")
    return Reply(r, 200, lambda b: b["name"] == t.entry_id and SECRET_VALUE not in r.text)


@route("PUT", SECRETS + "/{name}")
async def put_secret(w: World, caller: str, t: Target) -> Reply:
    name = f"new-{uuid.uuid4().hex[:8]}"
    r = await w.call(caller, t, "PUT", f"{SECRETS}/{name}", {"value": SECRET_VALUE})
    stored = r.status_code == 201 and name in await secret_names(w)
    return Reply(r, 201, lambda b: stored and b["name"] == name and SECRET_VALUE not in r.text)


@route("DELETE", SECRETS + "/{name}", stored_secret)
async def delete_secret(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "DELETE", f"{SECRETS}/{t.entry_id}")
    gone = r.status_code == 204 and t.entry_id not in await secret_names(w)
    return Reply(r, 204, lambda b: gone)


SLACK = "/api/v1/integrations/slack"
SLACK_TOKEN = "xoxb-matrix-0000000000"


async def slack_configured(w: World, caller: str) -> Target:
    body = {"bot_token": SLACK_TOKEN, "signing_secret": "matrixsigningsecret0000"}
    r = await w.call("admin", Target(), "PUT", SLACK, body)
    assert r.status_code == 200, f"setup: admin configures Slack: {r.text}"
    return Target()


async def slack_config(w: World) -> Any:
    return (await w.call("admin", Target(), "GET", SLACK)).json()


@route("GET", SLACK, slack_configured)
async def get_slack(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", SLACK)
    return Reply(r, 200, lambda b: b["configured"] and SLACK_TOKEN not in r.text)


@route("PUT", SLACK)
async def put_slack(w: World, caller: str, t: Target) -> Reply:
    body = {"bot_token": SLACK_TOKEN, "signing_secret": "matrixsigningsecret0000"}
    r = await w.call(caller, t, "PUT", SLACK, body | {"default_channel": "C0MATRIX"})
    return Reply(r, 200, lambda b: b["default_channel"] == "C0MATRIX")


@route("DELETE", SLACK, slack_configured)
async def delete_slack(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "DELETE", SLACK)
    gone = r.status_code == 204 and not (await slack_config(w))["configured"]
    return Reply(r, 204, lambda b: gone)


@route("PUT", SLACK + "/channels/{kind}/{name}")
async def put_slack_channel(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "PUT", f"{SLACK}/channels/group/db-owners", {"channel": "C0DB"})
    routed = {"kind": "group", "name": "db-owners", "channel": "C0DB"}
    return Reply(r, 200, lambda b: routed in b["channels"])


@route("PUT", SLACK + "/users/{username}")
async def put_slack_user(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "PUT", f"{SLACK}/users/carol", {"slack_user_id": "UCAROL"})
    linked = {"username": "carol", "slack_user_id": "UCAROL", "source": "admin"}
    return Reply(r, 200, lambda b: linked in b["users"])


WEBHOOKS = "/api/v1/webhooks"
DELIVERIES = "/api/v1/webhook-deliveries"
# Allowed, so subscriptions can be made; nothing listens there and no event matches the
# filter, so nothing is ever sent.
HOOK_URL = "http://127.0.0.1:9/hooks"
HOOK = {"url": HOOK_URL, "event_types": ["matrix:none"]}


@pytest.fixture
def api_settings() -> dict[str, Any]:
    return {"http_allowlist": [HOOK_URL]}


async def subscription(w: World, caller: str) -> Target:
    """A webhook subscription the admin just made (``entry_id``) with one delivery
    (``delivery_id``) in its log."""
    r = await w.call("admin", Target(), "POST", WEBHOOKS, HOOK)
    assert r.status_code == 201, f"setup: admin subscribes a webhook: {r.text}"
    webhook_id = r.json()["id"]
    delivery_id = f"msg_{uuid.uuid4().hex}"
    async with w.api.runtime.sessions.begin() as session:
        session.add(
            WebhookDelivery(
                id=delivery_id,
                subscription_id=uuid.UUID(webhook_id),
                event_seq=1,
                event_type="matrix:event",
                subject="matrix",
                payload='{"type":"matrix:event"}',
                status="failed",
                attempts=8,
            )
        )
    return Target(entry_id=webhook_id, delivery_id=delivery_id)


@route("GET", WEBHOOKS, subscription)
async def list_webhooks(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", WEBHOOKS + "?limit=100")
    return Reply(r, 200, lambda b: t.entry_id in [h["id"] for h in b["items"]])


@route("POST", WEBHOOKS)
async def create_webhook(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", WEBHOOKS, HOOK)
    return Reply(r, 201, lambda b: b["secret"].startswith("whsec_") and b["url"] == HOOK_URL)


@route("GET", WEBHOOKS + "/{webhook_id}", subscription)
async def get_webhook(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{WEBHOOKS}/{t.entry_id}")
    return Reply(r, 200, lambda b: b["id"] == t.entry_id and "secret" not in b)


@route("PATCH", WEBHOOKS + "/{webhook_id}", subscription)
async def update_webhook(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "PATCH", f"{WEBHOOKS}/{t.entry_id}", {"enabled": False})
    return Reply(r, 200, lambda b: b["enabled"] is False)


@route("DELETE", WEBHOOKS + "/{webhook_id}", subscription)
async def delete_webhook(w: World, caller: str, t: Target) -> Reply:
    url = f"{WEBHOOKS}/{t.entry_id}"
    r = await w.call(caller, t, "DELETE", url)
    gone = r.status_code == 204 and await w.status("GET", url) == 404
    return Reply(r, 204, lambda b: gone)


@route("POST", WEBHOOKS + "/{webhook_id}/rotate-secret", subscription)
async def rotate_webhook_secret(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"{WEBHOOKS}/{t.entry_id}/rotate-secret")
    return Reply(r, 200, lambda b: b["secret"].startswith("whsec_") and b["previous_secret_until"])


@route("GET", WEBHOOKS + "/{webhook_id}/deliveries", subscription)
async def list_webhook_deliveries(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{WEBHOOKS}/{t.entry_id}/deliveries")
    return Reply(r, 200, lambda b: [d["id"] for d in b["items"]] == [t.delivery_id])


@route("GET", DELIVERIES + "/{delivery_id}", subscription)
async def get_webhook_delivery(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{DELIVERIES}/{t.delivery_id}")
    return Reply(r, 200, lambda b: b["payload"] == {"type": "matrix:event"})


@route("POST", DELIVERIES + "/{delivery_id}/redeliver", subscription)
async def redeliver_webhook(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"{DELIVERIES}/{t.delivery_id}/redeliver")
    return Reply(r, 202, lambda b: b["status"] == "pending" and b["attempts"] == 0)


@route("GET", SHELL_PROFILES, shell_profile)
async def list_shell_profiles(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", SHELL_PROFILES)
    return Reply(r, 200, lambda b: t.entry_id in [p["name"] for p in b])


@route("GET", SHELL_PROFILES + "/{name}", shell_profile)
async def get_shell_profile(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", f"{SHELL_PROFILES}/{t.entry_id}")
    return Reply(r, 200, lambda b: b["name"] == t.entry_id and b["profile"]["command"][0] == "git")


@route("PUT", SHELL_PROFILES + "/{name}", shell_profile)
async def put_shell_profile(w: World, caller: str, t: Target) -> Reply:
    body = SHELL_PROFILE | {"command": ["git", "status"]}
    r = await w.call(caller, t, "PUT", f"{SHELL_PROFILES}/{t.entry_id}", body)
    return Reply(
        r, 200, lambda b: b["version"] == 2 and b["profile"]["command"] == ["git", "status"]
    )


@route("DELETE", SHELL_PROFILES + "/{name}", shell_profile)
async def delete_shell_profile(w: World, caller: str, t: Target) -> Reply:
    url = f"{SHELL_PROFILES}/{t.entry_id}"
    r = await w.call(caller, t, "DELETE", url)
    gone = r.status_code == 204 and await w.status("GET", url) == 404
    return Reply(r, 204, lambda b: gone)


@route("POST", "/api/v1/leases", own_leasable_agent)
async def open_lease(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", "/api/v1/leases", {"agent_id": t.agent_id})
    # While the lease lives, the agent has one (its health shows it).
    health = await w.call("admin", t, "GET", f"{AGENTS}/{t.agent_id}/health")
    return Reply(
        r,
        201,
        lambda b: b["agent_id"] == t.agent_id and health.json()["live_leases"] == 1,
    )


@route("POST", "/api/v1/leases/{lease_id}/heartbeat", own_lease)
async def heartbeat_lease(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "POST", f"/api/v1/leases/{t.lease_id}/heartbeat")
    return Reply(r, 200, lambda b: b["id"] == t.lease_id and b["agent_id"] == t.agent_id)


@route("DELETE", "/api/v1/leases/{lease_id}", own_lease)
async def close_lease(w: World, caller: str, t: Target) -> Reply:
    url = f"/api/v1/leases/{t.lease_id}"
    r = await w.call(caller, t, "DELETE", url)
    closed = r.status_code == 204 and await w.status("POST", f"{url}/heartbeat") == 404
    return Reply(r, 204, lambda b: closed)


@route("GET", "/api/v1/locks", held_lock)
async def list_locks(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/locks")

    def holders(b: Any) -> list[list[str]]:
        return [
            [h["request"] for h in res["holders"]]
            for res in b["resources"]
            if res["resource"] == t.resource
        ]

    return Reply(r, 200, lambda b: holders(b) == [[t.request_id]])


@route("GET", "/api/v1/locks/events", held_lock)
async def list_lock_events(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/locks/events")
    return Reply(
        r, 200, lambda b: any(e["type"] == "lock:acquired" and e["req"] == t.request_id for e in b)
    )


@route("POST", "/api/v1/locks/force-release", held_lock)
async def force_release(w: World, caller: str, t: Target) -> Reply:
    body = {"resource": t.resource, "reason": "matrix"}
    r = await w.call(caller, t, "POST", "/api/v1/locks/force-release", body)
    assert t.resource is not None
    # The holder stays listed through the lock-delay, but no longer as granted.
    holders = (await w.api.runtime.locks.inspect_resource(t.resource)).holders
    ended = [h.request for h in holders if h.state != "granted"]
    return Reply(r, 200, lambda b: b["ended"] == ended == [t.request_id])


@route("GET", "/api/v1/users/me/notification-preferences")
async def get_notification_preferences(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/api/v1/users/me/notification-preferences")
    return Reply(r, 200, lambda b: b["timezone"] == "UTC")


@route("PUT", "/api/v1/users/me/notification-preferences")
async def put_notification_preferences(w: World, caller: str, t: Target) -> Reply:
    body = {"channels": ["email"], "timezone": "Europe/Paris"}
    r = await w.call(caller, t, "PUT", "/api/v1/users/me/notification-preferences", body)
    return Reply(r, 200, lambda b: b["channels"] == ["email"] and b["timezone"] == "Europe/Paris")


@route("GET", "/metrics", submitters_draft)
async def metrics(w: World, caller: str, t: Target) -> Reply:
    r = await w.call(caller, t, "GET", "/metrics")
    return Reply(r, 200, lambda text: 'ade_tasks{state="DRAFT"}' in text)


# -- judging one cell -------------------------------------------------------------------------


def _show(r: httpx.Response) -> str:
    return f"{r.status_code} {r.text[:600]}"


def _body(r: httpx.Response) -> Any:
    """The answer's JSON; its text when it is not JSON (/metrics); None when empty (204)."""
    if not r.content:
        return None
    return r.json() if "json" in r.headers.get("content-type", "") else r.text


def _problem(r: httpx.Response, status: int, code: str) -> str | None:
    """None if ``r`` is the problem document (status, type); else what is wrong."""
    if r.status_code != status:
        return f"expected {status} {code}, got {_show(r)}"
    if not r.headers.get("content-type", "").startswith("application/problem+json"):
        return f"expected application/problem+json, got {r.headers.get('content-type')}"
    body = r.json()
    if body.get("type") != code or body.get("status") != status or not body.get("detail"):
        return f"expected a {status} {code} problem document, got {_show(r)}"
    return None


def judge(expected: str, reply: Reply, permission: str | None) -> str | None:
    """None if the reply is what the cell expects; else a description of the mismatch."""
    r = reply.response
    if expected == OK:
        if r.status_code != reply.ok_status:
            return f"expected {reply.ok_status}, got {_show(r)}"
        if not reply.did_its_job(_body(r)):
            return f"answered {r.status_code} but did not do its job: {_show(r)}"
        return None
    if expected == AUTH:
        wrong = _problem(r, 401, AUTH)
        if wrong is None and r.headers.get("www-authenticate") != "Bearer":
            wrong = f"401 without 'WWW-Authenticate: Bearer': {dict(r.headers)}"
        return wrong
    if expected.startswith("item:"):  # a batch answers per item
        if r.status_code != 200:
            return f"expected 200 with item result {expected[5:]}, got {_show(r)}"
        got = [i["result"] for i in r.json()["results"]]
        return None if got == [expected[5:]] else f"expected item result {expected[5:]}: {_show(r)}"
    wrong = _problem(r, 403, expected)
    if wrong is None and permission is not None and r.json().get("permission") != permission:
        wrong = f"a 403 that does not name the missing permission {permission!r}: {_show(r)}"
    return wrong


async def run_cell(
    w: World,
    key: tuple[str, str],
    caller: str,
    expected: str,
    *,
    precondition: Precondition | None = None,
    permission: str | None = None,
) -> str | None:
    spec = ROUTES[key]
    target = await (precondition or spec.precondition)(w, caller)
    reply = await spec.action(w, caller, target)
    wrong = judge(expected, reply, permission)
    return None if wrong is None else f"{key[0]} {key[1]} as {caller}: {wrong}"


# -- the tests --------------------------------------------------------------------------------


def _walk(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, including those hidden from the OpenAPI document,
    except the dashboard's pages (see EXEMPT_ROUTES)."""
    for r in routes:
        if isinstance(r, PageRoute):
            continue
        path = getattr(r, "path", None)
        methods = getattr(r, "methods", None) or ({"WS"} if isinstance(r, WebSocketRoute) else ())
        for method in methods:
            if method != "HEAD" and path is not None:
                yield method, prefix + path
        inner = getattr(r, "original_router", None)  # FastAPI keeps included routers lazy
        if inner is not None:
            yield from _walk(inner.routes, prefix + r.include_context.prefix)
        elif path is not None and getattr(r, "routes", None):  # a Mount
            yield from _walk(r.routes, prefix + path)


def test_matrix_covers_every_route() -> None:
    app = create_app()
    documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    served = set(_walk(app.routes)) - FRAMEWORK_ROUTES - EXEMPT_ROUTES
    assert {k for k in served if k[1].startswith("/api/v1")}, "found no /api/v1 route to check"
    routes = documented | served
    assert sorted(routes - set(MATRIX)) == [], "routes without a row in the matrix"
    assert sorted(set(MATRIX) - routes) == [], "matrix rows for routes that do not exist"
    assert set(ROUTES) == set(MATRIX), "every matrix row needs its request in ROUTES"
    assert all(len(row) == len(CALLERS) for _, row in MATRIX.values())


@pytest.mark.parametrize("key", list(MATRIX), ids=lambda k: f"{k[0]} {k[1]}")
async def test_authorization_matrix(api: Api, key: tuple[str, str]) -> None:
    """One route × every caller; every mismatch is reported, not only the first."""
    world = await World.create(api)
    permission, row = MATRIX[key]
    failures = [
        await run_cell(world, key, caller, expected, permission=permission)
        for caller, expected in zip(CALLERS, row, strict=True)
    ]
    problems = [f for f in failures if f is not None]
    assert not problems, "\n".join(problems)


# Cells where the answer depends on more than the role. Paths are under /api/v1; callers as
# in CALLERS, plus db_owner (carol, a reviewer in db-owners) and three dead tokens;
# "item:X" is a batch answering 200 with X as the item's result.
SCENARIO_TABLE = """
method path                                  caller     precondition        expected
# Ownership: a DRAFT task is changed by its submitter (or the agent that made it) or an
# admin. An agent touches only its own tasks; its owner answers for them.
PATCH  /tasks/{task_id}                      reviewer   submitters_draft    403
PATCH  /tasks/{task_id}                      agent      submitters_draft    403
PATCH  /tasks/{task_id}                      admin      submitters_draft    ok
PATCH  /tasks/{task_id}                      submitter  agents_draft        ok
POST   /tasks/{task_id}/submit               reviewer   submitters_draft    403
POST   /tasks/{task_id}/submit               agent      submitters_draft    403
POST   /tasks/{task_id}/submit               admin      submitters_draft    ok
POST   /tasks/{task_id}/submit               submitter  agents_draft        ok
POST   /tasks/{task_id}/cancel               reviewer   submitters_draft    403
POST   /tasks/{task_id}/cancel               agent      submitters_draft    403
POST   /tasks/{task_id}/cancel               admin      submitters_draft    ok
POST   /tasks/{task_id}/cancel               submitter  agents_draft        ok
POST   /tasks/{task_id}/apply                reviewer   submitters_approved 403
POST   /tasks/{task_id}/apply                agent      submitters_approved 403
POST   /tasks/{task_id}/apply                admin      submitters_approved ok
# Only the delegator (or an admin) revokes a delegation.
DELETE /delegations/{delegation_id}          reviewer   db_owner_delegation 403
DELETE /delegations/{delegation_id}          admin      db_owner_delegation ok
# Separation of duties: nobody decides on a task they, or their agent, submitted.
POST   /approvals/{task_id}/approve          reviewer   reviewers_task      self_review
POST   /approvals/{task_id}/reject           reviewer   reviewers_task      self_review
POST   /approvals/{task_id}/request-changes  reviewer   reviewers_task      self_review
POST   /approvals/{task_id}/delegate         reviewer   reviewers_task      self_review
POST   /approvals/batch                      reviewer   reviewers_task      item:self_review
POST   /approvals/{task_id}/approve          admin      admins_task         self_review
POST   /approvals/{task_id}/approve          reviewer   reviewer_agent_task self_review
POST   /approvals/{task_id}/approve          db_owner   reviewers_task      ok
# Eligibility: under a rule wanting one db-owners approval (and no general slot) only
# carol may decide; neither the reviewer role nor the admin role fills a group slot.
POST   /approvals/{task_id}/approve          db_owner   group_rule_task     ok
POST   /approvals/{task_id}/approve          reviewer   group_rule_task     not_eligible
POST   /approvals/{task_id}/approve          admin      group_rule_task     not_eligible
POST   /approvals/{task_id}/reject           db_owner   group_rule_task     ok
POST   /approvals/{task_id}/reject           reviewer   group_rule_task     not_eligible
POST   /approvals/{task_id}/request-changes  db_owner   group_rule_task     ok
POST   /approvals/{task_id}/request-changes  reviewer   group_rule_task     not_eligible
POST   /approvals/{task_id}/delegate         reviewer   group_rule_task     not_eligible
POST   /approvals/batch                      db_owner   group_rule_task     ok
POST   /approvals/batch                      reviewer   group_rule_task     item:not_eligible
# An Idempotency-Key never replays somebody else's answer past authorization.
POST   /tasks                                viewer     create_key_used     403
POST   /tasks                                anonymous  create_key_used     401
POST   /tasks/{task_id}/submit               reviewer   submit_key_used     403
# Dead tokens: revoked; of a disabled user; of an agent whose owner is disabled.
GET    /tasks                                revoked    revoked_token       401
GET    /tasks                                disabled   disabled_user       401
GET    /tasks                                orphaned   disabled_owner      401
# An agent is managed by its owner or an admin: bob (a reviewer) may not touch alice's.
PATCH  /agents/{agent_id}                    reviewer   submitters_agent    403
PATCH  /agents/{agent_id}                    admin      submitters_agent    ok
DELETE /agents/{agent_id}                    reviewer   submitters_agent    403
DELETE /agents/{agent_id}                    admin      submitters_agent    ok
POST   /agents/{agent_id}/revert             reviewer   submitters_agent    403
POST   /agents/{agent_id}/revert             admin      submitters_agent    ok
GET    /agents/{agent_id}/tokens             reviewer   submitters_agent    403
GET    /agents/{agent_id}/tokens             admin      submitters_agent    ok
POST   /agents/{agent_id}/tokens             reviewer   submitters_agent    403
POST   /agents/{agent_id}/tokens             admin      submitters_agent    ok
DELETE /agents/{agent_id}/tokens/{token_id}  reviewer   submitters_agent    403
DELETE /agents/{agent_id}/tokens/{token_id}  admin      submitters_agent    ok
# A lease belongs to its agent, the agent's owner or an admin; an agent leases only
# for itself.
POST   /leases                               reviewer   submitters_agent    403
POST   /leases                               agent      submitters_agent    403
POST   /leases                               admin      submitters_agent    ok
POST   /leases/{lease_id}/heartbeat          reviewer   submitters_lease    403
POST   /leases/{lease_id}/heartbeat          agent      submitters_lease    403
POST   /leases/{lease_id}/heartbeat          admin      submitters_lease    ok
POST   /leases/{lease_id}/heartbeat          submitter  agents_lease        ok
DELETE /leases/{lease_id}                    reviewer   submitters_lease    403
DELETE /leases/{lease_id}                    agent      submitters_lease    403
DELETE /leases/{lease_id}                    admin      submitters_lease    ok
DELETE /leases/{lease_id}                    submitter  agents_lease        ok
"""

PRECONDITIONS: dict[str, Precondition] = {
    "submitters_draft": submitters_draft,
    "agents_draft": agents_draft,
    "submitters_approved": submitters_approved,
    "db_owner_delegation": db_owner_delegation,
    "reviewers_task": reviewers_task,
    "admins_task": admins_task,
    "reviewer_agent_task": reviewer_agent_task,
    "group_rule_task": group_rule_task,
    "create_key_used": create_key_used,
    "submit_key_used": submit_key_used,
    "revoked_token": revoked_token,
    "disabled_user": disabled_user,
    "disabled_owner": disabled_owner,
    "submitters_agent": submitters_agent,
    "submitters_lease": submitters_lease,
    "agents_lease": agents_lease,
}


def _parse_scenarios(table: str) -> list[tuple[tuple[str, str], str, str, str]]:
    rows = []
    for line in table.strip().splitlines()[1:]:
        if not line.startswith("#"):
            method, path, caller, precondition, expected = line.split()
            outcome = CELLS.get(expected, expected)
            rows.append(((method, "/api/v1" + path), caller, precondition, outcome))
    return rows


SCENARIOS = _parse_scenarios(SCENARIO_TABLE)


@pytest.mark.parametrize(
    ("key", "caller", "precondition", "expected"),
    SCENARIOS,
    ids=[f"{k[0]} {k[1]} as {c} on {p}" for k, c, p, _ in SCENARIOS],
)
async def test_authorization_scenario(
    api: Api, key: tuple[str, str], caller: str, precondition: str, expected: str
) -> None:
    world = await World.create(api)
    wrong = await run_cell(world, key, caller, expected, precondition=PRECONDITIONS[precondition])
    assert wrong is None, wrong
