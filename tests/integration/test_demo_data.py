"""``ade serve --demo``'s data: logins that work, and a trickle whose every kind of task
submits (several types, risks and routes) — on the embedded Runtime, like a newcomer's."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from community_ade.api.app import create_app
from community_ade.auth import service as auth
from community_ade.cli.demo_data import (
    PEOPLE,
    TRICKLE,
    add_trickle_task,
    logins,
    logins_file,
    repository_of,
    seed,
)
from community_ade.settings import Settings
from community_ade.storage.models import Agent, Task


async def test_demo_logins_and_every_kind_of_trickle_task(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
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
        assert {"deploy-bot", "docs-bot"} <= agents

        titles = [await add_trickle_task(runtime, n) for n in range(len(TRICKLE))]
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
