"""Demo data for ``ade serve --demo``: people with passwords, reviewer groups, a policy,
agents, a workspace and a git repository to change, tasks in several states — and the
trickle of changes the demo agents propose while the server runs (``demo_agents``), so
the review queue is live within a minute.

Seeding happens once per data directory. The logins (passwords) and API tokens are demo
credentials, written to ``demo-logins.json`` and ``demo-tokens.json`` there (mode 0600)
and shown again on every start.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.agents.config import AgentConfig
from community_ade.agents.leases import LeaseStore
from community_ade.agents.service import AgentService
from community_ade.approvals.governance import Governance
from community_ade.approvals.policy_document import PolicyDocument
from community_ade.approvals.reviews import DecisionSurface, ReviewAction, ReviewService
from community_ade.approvals.risk import Action, ResourceRef, ResourceType, Scope
from community_ade.approvals.service import TaskDraft, TaskService
from community_ade.auth import service as auth
from community_ade.auth.principal import Principal
from community_ade.runtime import Runtime
from community_ade.storage.models import Agent, User

PEOPLE = {"admin": "admin", "alice": "submitter", "bob": "reviewer", "carol": "reviewer"}
GROUPS = {"sre": ("site reliability", ("carol",)), "db-owners": ("database owners", ("bob",))}
AGENTS = {
    "deploy-bot": "Rolls out configuration changes for the demo service.",
    "docs-bot": "Keeps the demo repository's notes up to date.",
}
# What a demo agent can do over MCP (`/mcp`, `ade mcp`): read the workspace, propose
# changes to it.
AGENT_TOOLS = ("files.read", "code.search", "git.log", "files.write", "git.patch")
CONNECTABLE_AGENT = "deploy-bot"
POLICY = {
    "rules": [
        {
            "name": "configuration needs an sre",
            "task_types": ["files.*"],
            "resource_types": ["configuration"],
            "groups": [{"group": "sre", "count": 1}],
        },
        {
            "name": "databases need a db owner",
            "resource_types": ["database"],
            "groups": [{"group": "db-owners", "count": 1}],
        },
        {
            "name": "small notes apply themselves",
            "task_types": ["git.patch"],
            "resource_types": ["storage"],
            "risk_max": 30,
            "auto_approve_below": 30,
        },
    ]
}
# Seconds between two tasks of the trickle (a newcomer sees one within a minute).
TRICKLE_SECONDS = (20.0, 30.0)
TRICKLE_FIRST_SECONDS = 8.0


def tokens_file(runtime: Runtime) -> Path:
    return runtime.settings.data_dir / "demo-tokens.json"


def logins_file(data_dir: Path) -> Path:
    return data_dir / "demo-logins.json"


def workspace_of(runtime: Runtime) -> Path:
    return runtime.settings.allowed_workspace_roots[0] / "demo"


def repository_of(runtime: Runtime) -> Path:
    return runtime.settings.allowed_workspace_roots[0] / "demo-repo"


def logins(data_dir: Path) -> dict[str, str]:
    """The demo people's passwords by user name ({} before seeding)."""
    path = logins_file(data_dir)
    return dict(json.loads(path.read_text())) if path.exists() else {}


def _write_private(path: Path, content: dict[str, str]) -> None:
    path.write_text(json.dumps(content, indent=2))
    path.chmod(0o600)


def _git(repo: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@example.invalid",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo),
    }
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, timeout=30)


def make_repository(repo: Path) -> None:
    """A small git repository on branch ``main`` for the demo's ``git.patch`` tasks."""
    if (repo / ".git").exists():
        return
    (repo / "notes").mkdir(parents=True, exist_ok=True)
    (repo / "README.md").write_text("# demo repository\n\nChanged by the demo's agents.\n")
    (repo / "notes" / "index.md").write_text("# notes\n")
    _git(repo, "init", "--quiet", "--initial-branch=main")
    _git(repo, "add", "README.md", "notes/index.md")
    _git(repo, "commit", "--quiet", "-m", "demo repository")


async def _person(session: AsyncSession, name: str) -> Principal:
    return await auth.human_principal(session, await auth.get_user_by_name(session, name))


async def _agent(session: AsyncSession, name: str) -> Principal:
    agent = await session.scalar(select(Agent).where(Agent.name == name))
    if agent is None:
        raise LookupError(f"no demo agent {name!r}")
    return Principal(
        id=agent.id,
        kind="agent",
        name=agent.name,
        role="submitter",
        groups=frozenset(),
        owner_id=agent.owner_id,
    )


async def _create_agents(runtime: Runtime, session: AsyncSession, owner: Principal) -> None:
    service = AgentService(
        session,
        locks=runtime.locks,
        leases=LeaseStore(runtime.redis),
        lock_lease=timedelta(seconds=runtime.settings.lock_lease_seconds),
    )
    models = sorted((await service.catalogue()).context_windows)
    for name, description in AGENTS.items():
        config = AgentConfig(
            name=name,
            model=models[0],
            description=description,
            tags=("demo",),
            capacity=2,
            tools=AGENT_TOOLS,
            allowed_task_types=("files.write", "git.patch"),
        )
        await service.create(owner, config, comment="demo")


async def seed(runtime: Runtime) -> dict[str, str]:
    """Create the demo data unless users exist; return the demo API tokens by user name
    (and one for the agent ``CONNECTABLE_AGENT``, to connect an MCP host with)."""
    path = tokens_file(runtime)
    async with runtime.sessions.begin() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            return dict(json.loads(path.read_text())) if path.exists() else {}
        tokens: dict[str, str] = {}
        passwords: dict[str, str] = {}
        for name, role in PEOPLE.items():
            passwords[name] = secrets.token_urlsafe(12)
            user = await auth.create_user(
                session, name, role, password=passwords[name], display_name=name.title()
            )
            tokens[name], _ = await auth.create_token(session, name="demo", user_id=user.id)
        for group_name, (description, members) in GROUPS.items():
            group = await auth.create_group(session, group_name, description)
            for member in members:
                user = await auth.get_user_by_name(session, member)
                await auth.add_member(session, group.id, user.id)
        people = {name: await _person(session, name) for name in PEOPLE}
        workspace = workspace_of(runtime)
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "app.yaml").write_text("replicas: 2\nlog_level: info\n")
        (workspace / "README.md").write_text("# demo service\n")
        await asyncio.to_thread(make_repository, repository_of(runtime))
        tasks = TaskService(session, plan_context=runtime.plan_context(session))
        await Governance(session, tasks).put_policy(
            people["admin"], PolicyDocument.model_validate(POLICY)
        )
        await _create_agents(runtime, session, people["alice"])
        connectable = await _agent(session, CONNECTABLE_AGENT)
        tokens[CONNECTABLE_AGENT], _ = await auth.create_token(
            session, name="demo", agent_id=connectable.id
        )
        await _initial_tasks(tasks, ReviewService(session), people, workspace)
    _write_private(logins_file(runtime.settings.data_dir), passwords)
    _write_private(path, tokens)
    return tokens


def _files_write(
    title: str, workspace: Path, path: str, content: str, *resources: ResourceRef
) -> TaskDraft:
    return TaskDraft(
        type="files.write",
        title=title,
        payload={
            "root": str(workspace),
            "changes": [{"path": path, "action": "write", "content": content}],
        },
        resources=resources,
    )


def _written(kind: ResourceType, name: str, scope: Scope = Scope.NAMESPACE) -> ResourceRef:
    return ResourceRef(type=kind, id=name, scope=scope, actions=(Action.WRITE,))


async def _initial_tasks(
    tasks: TaskService, reviews: ReviewService, people: dict[str, Principal], workspace: Path
) -> None:
    alice = people["alice"]
    for draft in (
        _files_write(
            "scale the demo service to 3",
            workspace,
            "app.yaml",
            "replicas: 3\nlog_level: info\n",
            _written(ResourceType.CONFIGURATION, "demo"),
        ),
        _files_write(
            "document the demo service",
            workspace,
            "README.md",
            "# demo service\n\nRuns the demo.\n",
            _written(ResourceType.STORAGE, "docs"),
        ),
        _files_write(
            "turn on debug logging", workspace, "app.yaml", "replicas: 2\nlog_level: debug\n"
        ),
    ):
        created = await tasks.create(alice, draft)
        submission = await tasks.submit(alice, created.id)
        if draft.title == "document the demo service":
            await reviews.decide(
                people["bob"],
                created.id,
                ReviewAction.APPROVE,
                submission.plan.digest,
                surface=DecisionSurface.DEMO,
            )


# -- the trickle ----------------------------------------------------------------------------

TrickleItem = Callable[[Runtime, int], TaskDraft]


def _scale(runtime: Runtime, n: int) -> TaskDraft:
    service = random.choice(["checkout", "search", "billing", "catalog"])
    return _files_write(
        f"scale {service} to {n % 7 + 2} replicas",
        workspace_of(runtime),
        f"services/{service}.yaml",
        f"service: {service}\nreplicas: {n % 7 + 2}\n",
        _written(ResourceType.SERVICE, service, Scope.CLUSTER),
    )


def _feature_flag(runtime: Runtime, n: int) -> TaskDraft:
    flag = random.choice(["new-checkout", "fast-search", "dark-mode", "beta-billing"])
    return _files_write(
        f"turn {'on' if n % 2 else 'off'} the {flag} flag",
        workspace_of(runtime),
        f"flags/{flag}.yaml",
        f"flag: {flag}\nenabled: {str(bool(n % 2)).lower()}\nrollout_percent: {10 * (n % 10)}\n",
        _written(ResourceType.CONFIGURATION, "flags"),
    )


def _migration(runtime: Runtime, n: int) -> TaskDraft:
    table = random.choice(["orders", "customers", "invoices"])
    columns = "".join(f"ALTER TABLE {table} ADD COLUMN note_{n}_{i} text;\n" for i in range(12))
    return _files_write(
        f"migration {n:04d}: add note columns to {table}",
        workspace_of(runtime),
        f"migrations/{n:04d}_{table}.sql",
        columns,
        _written(ResourceType.DATABASE, f"{table}-db"),
    )


def _secret(runtime: Runtime, n: int) -> TaskDraft:
    keys = "".join(f"key_{i}: vault:payments/v{n}/{i}\n" for i in range(40))
    return _files_write(
        f"rotate the payments keys (v{n})",
        workspace_of(runtime),
        "secrets/payments.yaml",
        keys,
        _written(ResourceType.SECRET, "payments", Scope.GLOBAL),
    )


def _note(runtime: Runtime, n: int) -> TaskDraft:
    lines = ["# on-call note", "", f"Shift {n}: nothing unusual.", "Dashboards checked."]
    patch = f"--- /dev/null\n+++ b/notes/shift-{n:04d}.md\n@@ -0,0 +1,{len(lines)} @@\n" + "".join(
        f"+{line}\n" for line in lines
    )
    return TaskDraft(
        type="git.patch",
        title=f"add the on-call note for shift {n}",
        payload={
            "repo": str(repository_of(runtime)),
            "branch": "main",
            "patch": patch,
            "message": f"on-call note {n}",
        },
        resources=[
            ResourceRef(
                type=ResourceType.STORAGE, id="notes", scope=Scope.INSTANCE, actions=(Action.WRITE,)
            )
        ],
    )


TRICKLE: tuple[tuple[TrickleItem, str], ...] = (
    (_scale, "deploy-bot"),
    (_feature_flag, "deploy-bot"),
    (_note, "docs-bot"),
    (_migration, "deploy-bot"),
    (_scale, "deploy-bot"),
    (_secret, "deploy-bot"),
)
