"""Notification preferences over storage: one JSON document per person (IO)."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.notifications.preferences import NotificationPreferences
from community_ade.storage.models import NotificationPreference, utcnow


async def preferences_of(
    session: AsyncSession, users: Collection[uuid.UUID]
) -> dict[uuid.UUID, NotificationPreferences]:
    """Each user's preferences; the defaults for those who never chose."""
    found = {
        row.user_id: NotificationPreferences.model_validate(row.document)
        for row in await session.scalars(
            select(NotificationPreference).where(NotificationPreference.user_id.in_(users))
        )
    }
    return {user: found.get(user) or NotificationPreferences() for user in users}


async def save_preferences(
    session: AsyncSession, user: uuid.UUID, prefs: NotificationPreferences
) -> None:
    document = prefs.model_dump(mode="json")
    row = await session.get(NotificationPreference, user, with_for_update=True)
    if row is None:
        session.add(NotificationPreference(user_id=user, document=document))
    else:
        row.document = document
        row.updated_at = utcnow()
    await session.flush()
