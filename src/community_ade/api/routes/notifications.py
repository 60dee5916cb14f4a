"""The caller's own notification preferences (docs/notifications.md)."""

from __future__ import annotations

from fastapi import APIRouter

from community_ade.api.deps import PrincipalDep, SessionDep
from community_ade.auth.principal import Principal
from community_ade.errors import Forbidden
from community_ade.notifications.preference_store import preferences_of, save_preferences
from community_ade.notifications.preferences import NotificationPreferences

router = APIRouter(prefix="/users/me/notification-preferences", tags=["notifications"])


def _person(principal: Principal) -> Principal:
    if principal.kind != "human":
        raise Forbidden("agents are never notified: notification preferences are a person's")
    return principal


@router.get("", response_model=NotificationPreferences)
async def get_preferences(principal: PrincipalDep, session: SessionDep) -> NotificationPreferences:
    """Your channels, quiet hours and digest choice (the defaults until you save any)."""
    person = _person(principal)
    return (await preferences_of(session, [person.id]))[person.id]


@router.put("", response_model=NotificationPreferences)
async def put_preferences(
    body: NotificationPreferences, principal: PrincipalDep, session: SessionDep
) -> NotificationPreferences:
    """Replace your preferences whole; the next notification follows them."""
    person = _person(principal)
    await save_preferences(session, person.id, body)
    return body
