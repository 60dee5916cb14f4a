"""The page an e-mail's decision link opens (docs/notifications.md, "E-mail").

GET shows the task and asks; it never decides, because mail scanners and link
previews fetch every link of a message. The logged-in reviewer decides with a POST that
carries the dashboard's CSRF token, through the review engine's one decision path
(``batch.decide_each``: a refusal changes nothing and the page says why). The link must
be signed by this server, unexpired, unused and addressed to the visitor; it decides on
the digest the e-mail showed, so a change edited since then is refused as stale.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.api.deps import ReviewsDep, SessionDep
from community_ade.api.errors import STATUS_BY_CODE
from community_ade.approvals.batch import BatchDecision, decide_each
from community_ade.approvals.reviews import DecisionSurface, ReviewAction
from community_ade.approvals.states import OPEN_FOR_REVIEW, TaskState
from community_ade.dashboard.views.queue import RESULT_TEXT
from community_ade.dashboard.web import PageRoute, Visitor, VisitorDep, redirect, render, secret_of
from community_ade.errors import NotFound
from community_ade.notifications import email_links
from community_ade.notifications.email_links import DecisionLink, LinkRefused
from community_ade.notifications.email_sender import CONFIRM_PATH
from community_ade.storage.db import flush_unique
from community_ade.storage.models import EmailLinkUse, Task, utcnow

router = APIRouter(route_class=PageRoute)

Token = Annotated[str, Query(max_length=email_links.MAX_TOKEN_LENGTH)]
DONE = {"approve": "approved", "reject": "rejected", "request_changes": "asked for changes on"}


async def _usable_link(
    request: Request, session: AsyncSession, visitor: Visitor, token: str
) -> DecisionLink:
    """The link ``token`` names, if the visitor may use it now."""
    link = email_links.verify(email_links.link_key(secret_of(request)), token, now=utcnow())
    if link.reviewer != visitor.principal.id:
        raise LinkRefused(
            "this link was sent to another reviewer: it cannot decide for you. Open the "
            "task from your own review queue instead"
        )
    if await session.get(EmailLinkUse, link.nonce) is not None:
        raise LinkRefused("this link was already used: each e-mail link decides once")
    return link


async def _task(session: AsyncSession, link: DecisionLink) -> Task:
    task = await session.get(Task, link.task)
    if task is None:
        raise NotFound(f"no task {link.task}")
    return task


def _page(
    request: Request,
    visitor: Visitor,
    task: Task,
    link: DecisionLink,
    token: str,
    *,
    refusal: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "notifications/email_decide.html",
        {
            "task": task,
            "token": token,
            "link_digest": link.digest,
            "stale": task.preview_digest != link.digest,
            "open": TaskState(task.state) in OPEN_FOR_REVIEW,
            "refusal": refusal,
            "action_path": CONFIRM_PATH,
        },
        visitor=visitor,
        status_code=status_code,
    )


@router.get(CONFIRM_PATH)
async def confirm_page(
    request: Request, visitor: VisitorDep, session: SessionDep, t: Token
) -> HTMLResponse:
    link = await _usable_link(request, session, visitor, t)
    return _page(request, visitor, await _task(session, link), link, t)


@router.post(CONFIRM_PATH)
async def decide_by_link(
    request: Request,
    visitor: VisitorDep,
    session: SessionDep,
    reviews: ReviewsDep,
    t: Annotated[str, Form(max_length=email_links.MAX_TOKEN_LENGTH)],
    action: Annotated[Literal["approve", "reject", "request_changes"], Form()],
    comment: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    link = await _usable_link(request, session, visitor, t)
    decision = BatchDecision(link.task, ReviewAction(action), link.digest, comment, None)
    [result] = await decide_each(
        session, reviews, visitor.principal, [decision], surface=DecisionSurface.EMAIL
    )
    task = await _task(session, link)
    if result.result != "ok":
        refusal = {
            "code": result.result,
            "text": RESULT_TEXT.get(result.result, result.result.replace("_", " ")),
            "detail": result.detail or "",
        }
        status = STATUS_BY_CODE.get(result.result, 400)
        return _page(request, visitor, task, link, t, refusal=refusal, status_code=status)
    session.add(EmailLinkUse(nonce=link.nonce, user_id=visitor.principal.id, task_id=link.task))
    await flush_unique(session, "a decision with this link")  # a concurrent use: rolled back
    return redirect(
        f"/tasks/{link.task}", flash=f"You {DONE[action]} “{task.title}”: it is {task.state}."
    )
