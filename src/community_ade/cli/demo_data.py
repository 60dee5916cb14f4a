"""Demo data for ``ade serve --demo``: people, a group, a policy and tasks in several
states, so a newcomer can click through the API (``/docs``) at once.

Seeding happens once per data directory; the tokens are written to ``demo-tokens.json``
there (they are demo credentials, shown again on every start).
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from community_ade.approvals.governance import Governance
from community_ade.approvals.policy_document import PolicyDocument
from community_ade.approvals.reviews import ReviewAction, ReviewService
from community_ade.approvals.risk import Action, ResourceRef, ResourceType
from community_ade.approvals.service import TaskDraft, TaskService
from community_ade.auth import service as auth
from community_ade.auth.principal import Principal
from community_ade.execution.executors.base import PlanContext
from community_ade.runtime import Runtime
from community_ade.storage.models import User

PEOPLE = {"admin": "admin", "alice": "submitter", "bob": "reviewer", "carol": "reviewer"}
POLICY = {
    "rules": [
        {
            "name": "configuration needs an sre",
            "task_types": ["files.*"],
            "resource_types": ["configuration"],
            "groups": [{"group": "sre", "count": 1}],
        }
    ]
}


def tokens_file(runtime: Runtime) -> Path:
    return runtime.settings.data_dir / "demo-tokens.json"


async def seed(runtime: Runtime) -> dict[str, str]:
    """Create the demo data unless users exist; return the demo tokens by user name."""
    path = tokens_file(runtime)
    async with runtime.sessions.begin() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            return dict(json.loads(path.read_text())) if path.exists() else {}
        people: dict[str, Principal] = {}
        tokens: dict[str, str] = {}
        sre = await auth.create_group(session, "sre", "site reliability")
        for name, role in PEOPLE.items():
            user = await auth.create_user(session, name, role, display_name=name.title())
            tokens[name], _ = await auth.create_token(session, name="demo", user_id=user.id)
            if name == "carol":
                await auth.add_member(session, sre.id, user.id)
            people[name] = await auth.authenticate_token(session, tokens[name], now=user.created_at)
        workspace = runtime.settings.allowed_workspace_roots[0] / "demo"
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "app.yaml").write_text("replicas: 2\nlog_level: info\n")
        (workspace / "README.md").write_text("# demo service\n")
        tasks = TaskService(session, plan_context=PlanContext.from_settings(runtime.settings))
        await Governance(session, tasks).put_policy(
            people["admin"], PolicyDocument.model_validate(POLICY)
        )
        reviews = ReviewService(session)

        async def task(title: str, path: str, content: str, resource: ResourceType | None) -> str:
            write = (Action.WRITE,)
            resources = [ResourceRef(type=resource, id="demo", actions=write)] if resource else []
            draft = TaskDraft(
                type="files.write",
                title=title,
                payload={
                    "root": str(workspace),
                    "changes": [{"path": path, "action": "write", "content": content}],
                },
                resources=resources,
            )
            created = await tasks.create(people["alice"], draft)
            submission = await tasks.submit(people["alice"], created.id)
            return submission.plan.digest

        await task(
            "scale the demo service to 3",
            "app.yaml",
            "replicas: 3\nlog_level: info\n",
            ResourceType.CONFIGURATION,
        )
        readme = await tasks.create(
            people["alice"],
            TaskDraft(
                type="files.write",
                title="document the demo service",
                payload={
                    "root": str(workspace),
                    "changes": [
                        {
                            "path": "README.md",
                            "action": "write",
                            "content": "# demo service\n\nRuns the demo.\n",
                        }
                    ],
                },
                resources=[
                    ResourceRef(type=ResourceType.STORAGE, id="docs", actions=(Action.WRITE,))
                ],
            ),
        )
        submitted = await tasks.submit(people["alice"], readme.id)
        await reviews.decide(people["bob"], readme.id, ReviewAction.APPROVE, submitted.plan.digest)
        await task("turn on debug logging", "app.yaml", "replicas: 2\nlog_level: debug\n", None)
    path.write_text(json.dumps(tokens, indent=2))
    path.chmod(0o600)
    return tokens
