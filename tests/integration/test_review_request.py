"""What a notification shows about a task waiting on review (``review_request.gather``),
on real SQLite and PostgreSQL: names not ids, the risk inputs, each slot with who filled
it or who may still fill it, the digest, a bounded excerpt and the dashboard link."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_reviews import APPROVE, decide, set_policy, submitted_task, user

from community_ade.approvals.review_request import excerpt, gather, risk_breakdown
from community_ade.auth import service as auth
from community_ade.errors import Conflict, InvalidInput, NotFound
from community_ade.storage.models import Task


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.conf").write_text("debug = false\n")
    return root


async def test_gather_names_people_and_lists_who_may_fill_each_open_slot(
    sessions: async_sessionmaker[AsyncSession], workspace: Path
) -> None:
    await set_policy(
        sessions,
        {
            "rules": [
                {
                    "name": "owners and one more",
                    "task_types": ["files.*"],
                    "groups": [{"group": "db-owners"}],
                    "min_total": 2,
                }
            ]
        },
    )
    alice = await user(sessions, "submitter")
    owner = await user(sessions, "reviewer", "db-owners")
    other_owner = await user(sessions, "reviewer", "db-owners")
    reviewer = await user(sessions, "reviewer")
    await user(sessions, "viewer")  # may never review: listed nowhere
    async with sessions.begin() as session:
        await auth.set_email(session, reviewer.id, " Rita@Example.COM ")
    task = await submitted_task(sessions, workspace, alice)

    async with sessions() as session:
        before = await gather(session, task.id, public_url="https://ade.example.com/")
        row = await session.get(Task, task.id)
        assert row is not None
    assert before.title == "turn on debug"
    assert before.submitter == alice.name
    assert before.agent is None
    assert before.digest == row.preview_digest
    assert before.state == "SUBMITTED"
    assert before.link == f"https://ade.example.com/approvals/{task.id}"
    assert before.review_deadline == row.review_deadline
    assert before.risk == row.risk_score
    assert [r.name for r in before.risk_inputs] == [
        "criticality",
        "magnitude",
        "blast radius",
        "failure rate",
    ]
    assert before.preview is not None
    assert "debug = true" in before.preview.text
    assert not before.preview.truncated
    assert [s.label for s in before.open_slots] == ["db-owners #1", "any reviewer #1"]
    group_slot, any_slot = before.open_slots
    assert {p.name for p in group_slot.eligible} == {owner.name, other_owner.name}
    assert {p.name for p in any_slot.eligible} == {owner.name, other_owner.name, reviewer.name}
    rita = next(p for p in before.reviewers if p.name == reviewer.name)
    assert rita.email == "rita@example.com"
    assert rita.id == str(reviewer.id)
    assert alice.name not in {p.name for p in before.reviewers}

    await decide(sessions, owner, task, APPROVE)
    async with sessions() as session:
        after = await gather(session, task.id, public_url="https://ade.example.com")
    assert after.state == "REVIEWING"
    filled = [s for s in after.slots if s.filled_by is not None]
    assert [(s.label, s.filled_by) for s in filled] == [("db-owners #1", owner.name)]
    [still_open] = after.open_slots
    # Who voted is told no more; the rest may still fill the general slot.
    assert {p.name for p in still_open.eligible} == {other_owner.name, reviewer.name}
    assert after.blocked_by == ("needs 2 approvals in total, has 1",)


async def test_gather_refuses_an_unknown_task(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        with pytest.raises(NotFound):
            await gather(session, uuid.uuid4(), public_url="http://x")


def test_excerpt_is_bounded_by_lines_and_characters() -> None:
    assert excerpt("a\nb\nc", lines=3, chars=100) == ("a\nb\nc", False)
    assert excerpt("a\nb\nc", lines=2, chars=100) == ("a\nb", True)
    assert excerpt("x" * 50, lines=5, chars=10) == ("x" * 10, True)
    assert excerpt("", lines=5, chars=10) == ("", False)


def test_risk_breakdown_weighs_each_input() -> None:
    assert risk_breakdown(None) == ()
    rows = risk_breakdown({"criticality": 80, "magnitude": 10, "level": "high"})
    assert rows[0].name == "criticality"
    assert rows[0].points == 80 * rows[0].weight
    assert rows[2].value == 0.0


async def test_an_email_is_checked_normalised_and_unique(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        first = await auth.create_user(session, "erin", "reviewer", email="Erin@Example.com")
        assert first.email == "erin@example.com"
        with pytest.raises(InvalidInput):
            await auth.set_email(session, first.id, "not an address")
    with pytest.raises(Conflict):
        async with sessions.begin() as session:
            await auth.create_user(session, "frank", "reviewer", email="ERIN@example.com ")
    async with sessions.begin() as session:
        cleared = await auth.set_email(session, first.id, None)
        assert cleared.email is None
