"""Login and logout. A login is a real API token ("dashboard session", expiring after
``ADE_DASHBOARD_SESSION_HOURS``) kept in the HttpOnly cookie ``ade_session``; logout
revokes it, so a copied cookie stops working too. The token records when the person
authenticated (``auth_time``) for decisions that need a fresh login (step-up).

Password login can be turned off (``ADE_PASSWORD_LOGIN=false``) when people sign in
through the identity provider (``oidc.py``)."""

from __future__ import annotations

import math
import secrets
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.api.deps import RuntimeDep, SessionDep
from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM, Actor
from community_ade.auth import tokens
from community_ade.auth.principal import Principal
from community_ade.auth.service import authenticate_password, create_token, revoke_token
from community_ade.auth.throttle import LoginFailure, LoginThrottle
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
from community_ade.errors import NotFound, Unauthenticated
from community_ade.runtime import Runtime
from community_ade.storage.models import ApiToken, utcnow

router = APIRouter(route_class=PageRoute)

SESSION_TOKEN_NAME = "dashboard session"
# A username as typed may be anything up to the form's 200 characters; real ones are 64.
MAX_LOGGED_NAME = 64


def _login_page(
    request: Request, nonce: str, *, next_url: str, error: str | None, status_code: int = 200
) -> HTMLResponse:
    settings = request.app.state.runtime.settings
    response = render(
        request,
        "login.html",
        {
            "login_csrf": csrf_token(secret_of(request), "login", nonce),
            "next_url": next_url,
            "error": error,
            "password_login": settings.password_login,
            "oidc_name": settings.oidc_display_name if settings.oidc_issuer else None,
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
async def login_form(
    request: Request, session: SessionDep, next: str = "/", reauth: bool = False
) -> Response:
    """The login page; ``reauth``: shown even to a logged-in visitor, whose decision
    needs a fresh login (step-up without an identity provider)."""
    if not reauth and await authenticate_visitor(request, session) is not None:
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
    if not runtime.settings.password_login:
        raise NotFound("password login is turned off here: sign in with the identity provider")
    nonce = request.cookies.get(LOGIN_NONCE_COOKIE, "")
    if not nonce or not csrf_matches(secret_of(request), "login", nonce, csrf_token):
        raise CsrfRefused
    name = username.strip()
    address = request.client.host if request.client else "unknown"
    throttle = LoginThrottle.from_settings(runtime.redis, runtime.settings)
    # Checked before the password, so a locked-out guesser costs no argon2 verification.
    wait = math.ceil(await throttle.wait(name, address))
    if wait > 0:
        refusal = _login_page(
            request,
            nonce,
            next_url=safe_next(next),
            error=f"Too many failed logins. Try again in {wait} seconds.",
            status_code=429,
        )
        refusal.headers["Retry-After"] = str(wait)
        return refusal
    try:
        principal = await authenticate_password(session, name, password)
    except Unauthenticated as exc:
        failure = await throttle.failed(name, address)
        if failure.locks_account or failure.locks_address:
            await _audit_throttled(session, name, address, failure)
        return _login_page(
            request, nonce, next_url=safe_next(next), error=exc.message, status_code=401
        )
    earlier_failures = await throttle.succeeded(name)
    notice = None
    if earlier_failures:
        notice = (
            f"{earlier_failures} failed login attempt(s) on your account since your last "
            "login. If that was not you, tell an administrator."
        )
    # A password typed just now is a fresh authentication.
    await _audit_login(session, principal, "password")
    return await start_session(
        request, session, runtime, principal, next_url=next, auth_time=utcnow(), flash=notice
    )


async def _audit_login(session: AsyncSession, principal: Principal, method: str) -> None:
    await audit.append(
        session,
        type="auth:login",
        actor=Actor(kind="human", id=str(principal.id)),
        subject=f"user:{principal.id}",
        data={"method": method},
    )


async def start_session(
    request: Request,
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    *,
    next_url: str,
    auth_time: datetime | None,
    flash: str | None = None,
) -> Response:
    """A new dashboard session for ``principal`` (its token in the cookie), replacing
    the visitor's current one (a re-login for step-up), and the redirect to ``next_url``."""
    await _revoke_session(session, request.cookies.get(SESSION_COOKIE))
    hours = runtime.settings.dashboard_session_hours
    plaintext, _ = await create_token(
        session,
        name=SESSION_TOKEN_NAME,
        user_id=principal.id,
        expires_at=utcnow() + timedelta(hours=hours),
        auth_time=auth_time,
    )
    response = redirect(safe_next(next_url), flash=flash)
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


async def _revoke_session(session: AsyncSession, plaintext: str | None) -> None:
    """Revoke the token of a session cookie, if it is one."""
    try:
        token_hash = tokens.parse_token(plaintext or "").token_hash
    except Unauthenticated:
        return
    row = await session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if row is not None:
        await revoke_token(session, row.id)


async def _audit_throttled(
    session: AsyncSession, username: str, address: str, failure: LoginFailure
) -> None:
    """Once per episode: the failure that first makes the account or the address wait."""
    # As typed, so possibly anything: printable characters only (no NUL in the chain).
    shown = "".join(c if c.isprintable() else "?" for c in username[:MAX_LOGGED_NAME])
    locked = [
        what
        for what, locks in (("account", failure.locks_account), ("address", failure.locks_address))
        if locks
    ]
    await audit.append(
        session,
        type="auth:login_throttled",
        actor=SYSTEM,
        subject=f"login:{shown}",
        data={
            "username": shown,
            "address": address,
            "locked": locked,
            "account_failures": failure.account_failures,
            "address_failures": failure.address_failures,
        },
    )


@router.post("/logout")
async def logout(visitor: VisitorDep, session: SessionDep) -> Response:
    await _revoke_session(session, visitor.session_token)
    response = redirect("/login", flash="You are logged out.")
    response.delete_cookie(SESSION_COOKIE)
    return response
