"""Small read queries the pages share: who is behind an id."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.storage.models import Agent, User


def _uuids(ids: Iterable[uuid.UUID | str | None]) -> set[uuid.UUID]:
    out = set()
    for value in ids:
        if value is None:
            continue
        try:
            out.add(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
        except ValueError:  # "system" and other non-user actors
            continue
    return out


async def usernames(session: AsyncSession, ids: Iterable[uuid.UUID | str | None]) -> dict[str, str]:
    """``str(user id) -> username`` for the ids that are users."""
    wanted = _uuids(ids)
    if not wanted:
        return {}
    rows = await session.execute(select(User.id, User.username).where(User.id.in_(wanted)))
    return {str(uid): name for uid, name in rows}


async def agent_names(
    session: AsyncSession, ids: Iterable[uuid.UUID | str | None]
) -> dict[str, str]:
    wanted = _uuids(ids)
    if not wanted:
        return {}
    rows = await session.execute(select(Agent.id, Agent.name).where(Agent.id.in_(wanted)))
    return {str(aid): name for aid, name in rows}


async def actor_names(
    session: AsyncSession, ids: Iterable[uuid.UUID | str | None]
) -> dict[str, str]:
    """Users and agents by id (an audit actor may be either)."""
    ids = list(ids)
    return {**await agent_names(session, ids), **await usernames(session, ids)}


def subject_agent(subject: str) -> str | None:
    """The agent id of an ``agent:<id>`` subject (audit, events), else None."""
    return subject.removeprefix("agent:") if subject.startswith("agent:") else None
