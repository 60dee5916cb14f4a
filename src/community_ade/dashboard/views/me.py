"""The visitor's own page (notification preferences) and what the live script asks
about them: how many tasks wait on them, and whether a new one does."""

from __future__ import annotations

import uuid
from datetime import time
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from community_ade.api.deps import ReviewsDep, SessionDep
from community_ade.approvals.reviews import COUNT_CAP, awaiting, standing_covers
from community_ade.approvals.states import OPEN_FOR_REVIEW
from community_ade.auth.principal import Permission
from community_ade.dashboard.web import PageRoute, VisitorDep, redirect, render
from community_ade.errors import InvalidInput
from community_ade.notifications.preference_store import preferences_of, save_preferences
from community_ade.notifications.preferences import (
    Channel,
    Delivery,
    NotificationPreferences,
    QuietHours,
)
from community_ade.storage.models import Task

router = APIRouter(route_class=PageRoute)

# Most used zones first in the page's suggestions; any IANA name is accepted.
SUGGESTED_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Australia/Sydney",
)


@router.get("/me")
async def my_page(request: Request, visitor: VisitorDep, session: SessionDep) -> HTMLResponse:
    prefs = (await preferences_of(session, [visitor.principal.id]))[visitor.principal.id]
    return render(
        request,
        "notifications/me.html",
        {
            "prefs": prefs,
            "channels": list(Channel),
            "deliveries": list(Delivery),
            "zones": SUGGESTED_ZONES,
        },
        visitor=visitor,
    )


@router.post("/me/notifications")
async def save_my_preferences(
    visitor: VisitorDep,
    session: SessionDep,
    timezone: Annotated[str, Form(max_length=64)] = "UTC",
    delivery: Annotated[Delivery, Form()] = Delivery.IMMEDIATE,
    digest_hour: Annotated[int, Form(ge=0, le=23)] = 9,
    quiet_start: Annotated[time | Literal[""], Form()] = "",
    quiet_end: Annotated[time | Literal[""], Form()] = "",
    channel: Annotated[list[Channel] | None, Form()] = None,
) -> Response:
    if (quiet_start == "") != (quiet_end == ""):
        raise InvalidInput("give both the start and the end of the quiet hours, or neither")
    try:
        quiet = None
        if isinstance(quiet_start, time) and isinstance(quiet_end, time):
            quiet = QuietHours(start=quiet_start, end=quiet_end)
        prefs = NotificationPreferences(
            channels=frozenset(channel or ()),
            timezone=timezone.strip(),
            quiet_hours=quiet,
            delivery=delivery,
            digest_hour=digest_hour,
        )
    except ValidationError as exc:
        raise InvalidInput("; ".join(e["msg"] for e in exc.errors())) from None
    await save_preferences(session, visitor.principal.id, prefs)
    return redirect("/me", flash="Your notification preferences are saved.")


@router.get("/live/waiting")
async def waiting_on_me(
    visitor: VisitorDep,
    session: SessionDep,
    reviews: ReviewsDep,
    task: Annotated[uuid.UUID | None, Query()] = None,
) -> JSONResponse:
    """The number of tasks waiting on the visitor (the page title shows it), whether
    browser notifications are on for them, and — given ``task`` — whether that task
    waits on them (a new one is worth a notification)."""
    principal = visitor.principal
    count, waits, title = 0, False, None
    if principal.can(Permission.REVIEW):
        _, count = await reviews.open_for_review(principal, awaiting_me=True, page=1, limit=1)
        if task is not None:
            standing = await standing_covers(session, principal)
            title = await session.scalar(
                select(Task.title).where(
                    Task.id == task,
                    Task.state.in_([s.value for s in OPEN_FOR_REVIEW]),
                    awaiting(principal, standing),
                )
            )
            waits = title is not None
    prefs = (await preferences_of(session, [principal.id]))[principal.id]
    return JSONResponse(
        {
            "count": min(count, COUNT_CAP),
            "more": count > COUNT_CAP,
            "notify": Channel.DASHBOARD in prefs.channels,
            "task_waits": waits,
            "task_title": title,
        },
        headers={"Cache-Control": "no-store"},
    )
