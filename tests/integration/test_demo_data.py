"""``ade serve --demo``'s data: logins that work, and demo agents whose every kind of
change submits (several types, risks and routes) through the API as ``ade agents run``
does — on the embedded Runtime and a served app, like a newcomer's."""

from __future__ import annotations

import uuid
from pathlib import Path

from livesrv import serve
from sqlalchemy import select

from community_ade.auth import service as auth
from community_ade.cli.demo_agents import agent_clients, run_demo_item
from community_ade.cli.demo_data import (
    PEOPLE,
    TRICKLE,
    logins,
    logins_file,
    repository_of,
    seed,
)
from community_ade.runtime import Runtime
from community_ade.settings import Settings
from community_ade.storage.models import Agent, AuditEvent, Task


async def test_demo_logins_and_every_kind_of_agent_proposal(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    async with Runtime.open(settings) as runtime:
        await seed(runtime)
        passwords = logins(tmp_path)
        assert set(passwords) == set(PEOPLE)
        assert logins_file(tmp_path).stat().st_mode & 0o077 == 0
        assert (repository_of(runtime) / ".git").is_dir()
        async with runtime.sessions.begin() as session:
            for name, password in passwords.items():
                principal = await auth.authenticate_password(session, name, password)
                assert principal.role == PEOPLE[name]
            agents = set(await session.scalars(select(Agent.name)))
            seeded = await session.scalars(
                select(AuditEvent.data).where(AuditEvent.type == "approval:decision")
            )
            assert [data["surface"] for data in seeded] == ["demo"]  # nobody decided in person
        assert {"deploy-bot", "docs-bot"} <= agents

        with serve(settings) as server:
            clients = await agent_clients(runtime, server.url)
            results = [
                await run_demo_item(runtime, clients, n, decision_timeout=0.2)
                for n in range(len(TRICKLE))
            ]
            for client in clients.values():
                await client.aclose()
        titles = [await title_of(runtime, r.proposed[-1]) for r in results]
        # Each script ran to its end: the proposal made, its decision not awaited further.
        assert all('"outcome": "waiting"' in r.output for r in results), results
        async with runtime.sessions.begin() as session:
            rows = {t.title: t for t in await session.scalars(select(Task))}
        trickled = [rows[title] for title in titles]
        assert {t.type for t in trickled} == {"files.write", "git.patch"}
        assert all(t.agent_id is not None for t in trickled)
        states = {t.title: t.state for t in trickled}
        note = next(title for title in titles if "on-call note" in title)
        assert states.pop(note) == "APPROVED"  # the policy auto-approves small notes
        assert set(states.values()) == {"SUBMITTED"}
        levels = {t.risk_inputs["level"] for t in trickled if t.risk_inputs}
        assert levels == {"low", "medium", "high"}
        migration = next(t for t in trickled if t.title.startswith("migration"))
        assert migration.requirements is not None
        assert {"group": "db-owners", "count": 1} in migration.requirements["groups"]


async def title_of(runtime: Runtime, task_id: str) -> str:
    async with runtime.sessions() as session:
        task = await session.get(Task, uuid.UUID(task_id))
    assert task is not None
    return task.title
