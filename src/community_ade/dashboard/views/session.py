"""Login and logout. A login is a real API token ("dashboard session", expiring after
``ADE_DASHBOARD_SESSION_HOURS``) kept in the HttpOnly cookie ``ade_session``; logout
revokes it, so a copied cookie stops working too."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from community_ade.api.deps import RuntimeDep, SessionDep
from community_ade.auth import tokens
from community_ade.auth.service import authenticate_password, create_token, revoke_token
from community_ade.dashboard.security import csrf_matches, csrf_token, safe_next
from community_ade.dashboard.web import (
    LOGIN_NONCE_COOKIE,
    SESSION_COOKIE,
    CsrfRefused,
    PageRoute,
    VisitorDep,
    authenticate_visitor,
    redirect,
    render,
    secret_of,
)
from community_ade.errors import Unauthenticated
from community_ade.storage.models import ApiToken, utcnow

router = APIRouter(route_class=PageRoute)

SESSION_TOKEN_NAME = "dashboard session"


def _login_page(
    request: Request, nonce: str, *, next_url: str, error: str | None, status_code: int = 200
) -> HTMLResponse:
    response = render(
        request,
        "login.html",
        {
            "login_csrf": csrf_token(secret_of(request), "login", nonce),
            "next_url": next_url,
            "error": error,
        },
        visitor=None,
        status_code=status_code,
    )
    secure = request.url.scheme == "https"
    response.set_cookie(
        LOGIN_NONCE_COOKIE, nonce, httponly=True, samesite="strict", secure=secure, max_age=3600
    )
    return response


@router.get("/login")
async def login_form(request: Request, session: SessionDep, next: str = "/") -> Response:
    if await authenticate_visitor(request, session) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE) or secrets.token_urlsafe(24)
    return _login_page(request, nonce, next_url=safe_next(next), error=None)


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE, "")
    if not nonce or not csrf_matches(secret_of(request), "login", nonce, csrf_token):
        raise CsrfRefused
    try:
        principal = await authenticate_password(session, username.strip(), password)
    except Unauthenticated as exc:
        return _login_page(
            request, nonce, next_url=safe_next(next), error=exc.message, status_code=401
        )
    hours = runtime.settings.dashboard_session_hours
    plaintext, _ = await create_token(
        session,
        name=SESSION_TOKEN_NAME,
        user_id=principal.id,
        expires_at=utcnow() + timedelta(hours=hours),
    )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        plaintext,
        max_age=int(hours * 3600),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_NONCE_COOKIE)
    return response


@router.post("/logout")
async def logout(visitor: VisitorDep, session: SessionDep) -> Response:
    token_hash = tokens.parse_token(visitor.session_token).token_hash
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if row is not None:
        await revoke_token(session, row.id)
    response = redirect("/login", flash="You are logged out.")
    response.delete_cookie(SESSION_COOKIE)
    return response
