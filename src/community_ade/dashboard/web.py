"""What every dashboard page shares: the logged-in visitor, CSRF, rendering, errors.

A page handler takes ``VisitorDep`` (the person behind the ``ade_session`` cookie; a
visitor without one is redirected to the login page) and returns ``render(...)``. Its
router uses ``route_class=PageRoute`` so domain errors become an HTML error page with the
status ``api/errors.py`` gives their code, never a JSON problem or a traceback. Every
unsafe request (POST) must carry the visitor's CSRF token, as the form field
``csrf_token`` or the ``X-CSRF-Token`` header (htmx sends the header, set on <body>).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.api.deps import SessionDep
from community_ade.api.errors import STATUS_BY_CODE
from community_ade.auth.principal import Permission, Principal
from community_ade.auth.service import authenticate_token
from community_ade.dashboard import filters
from community_ade.dashboard.security import csrf_matches, csrf_token, load_secret
from community_ade.errors import AdeError, Unauthenticated
from community_ade.storage.models import utcnow

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
# Installed by `make venv` from the npm registry (never committed); see docs/dashboard.md.
HTMX_FILE = STATIC_DIR / "vendor" / "htmx.min.js"

SESSION_COOKIE = "ade_session"
LOGIN_NONCE_COOKIE = "ade_login_nonce"
FLASH_COOKIE = "ade_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Every page: never inside another site's frame (a decision button must not be
# clickjacked), no MIME sniffing, no page addresses (task ids) leaked to other sites.
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

templates = Jinja2Templates(directory=HERE / "templates")
filters.install(templates.env)


@dataclass(frozen=True)
class NavItem:
    """One entry of the top navigation, shown to visitors holding ``permission``."""

    label: str
    href: str
    permission: Permission
    order: int


class LoginRequired(Exception):
    """No valid session: the visitor is sent to the login page."""


class CsrfRefused(Exception):
    """An unsafe request without the right CSRF token."""


@dataclass(frozen=True)
class Visitor:
    """The logged-in person: their principal, the session token and its CSRF token."""

    principal: Principal
    session_token: str
    csrf: str

    def can(self, permission: str) -> bool:
        return self.principal.can(Permission(permission))


def secret_of(request: Request) -> bytes:
    """The server secret, read (or created) once per app."""
    state = request.app.state
    secret: bytes | None = getattr(state, "dashboard_secret", None)
    if secret is None:
        secret = load_secret(request.app.state.runtime.settings)
        state.dashboard_secret = secret
    return secret


async def offered_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def authenticate_visitor(request: Request, session: AsyncSession) -> Visitor | None:
    """The visitor behind the session cookie, or None (no cookie, revoked, expired)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        principal = await authenticate_token(session, token, now=utcnow())
    except Unauthenticated:
        return None
    if principal.kind != "human":
        return None
    return Visitor(principal, token, csrf_token(secret_of(request), "session", token))


async def current_visitor(request: Request, session: SessionDep) -> Visitor:
    visitor = await authenticate_visitor(request, session)
    if visitor is None:
        raise LoginRequired
    request.state.visitor = visitor  # so an error page still shows the navigation
    if request.method not in SAFE_METHODS:
        offered = await offered_csrf(request)
        if not csrf_matches(secret_of(request), "session", visitor.session_token, offered):
            raise CsrfRefused
    return visitor


VisitorDep = Annotated[Visitor, Depends(current_visitor)]


def nav_items(request: Request) -> list[NavItem]:
    items: list[NavItem] = request.app.state.dashboard_nav
    return items


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    visitor: Visitor | None,
    status_code: int = 200,
) -> HTMLResponse:
    """A full page (or, for htmx requests to a ``partial`` template, a fragment)."""
    flash = request.cookies.get(FLASH_COOKIE)
    nav = []
    if visitor is not None:
        nav = [n for n in nav_items(request) if visitor.principal.can(n.permission)]
    response = templates.TemplateResponse(
        request,
        template,
        {
            "visitor": visitor,
            "nav": nav,
            "flash": unquote(flash) if flash else None,
            "htmx_missing": not HTMX_FILE.exists(),
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
        headers=PAGE_HEADERS,
    )
    if flash:
        response.delete_cookie(FLASH_COOKIE)
    return response


def redirect(target: str, *, flash: str | None = None) -> RedirectResponse:
    """303 to ``target`` (a POST answered by a page), with a one-time message."""
    response = RedirectResponse(target, status_code=303)
    if flash:
        response.set_cookie(FLASH_COOKIE, quote(flash), max_age=60, httponly=True, samesite="lax")
    return response


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    response = render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        visitor=getattr(request.state, "visitor", None),
        status_code=status,
    )
    if request.headers.get("HX-Request"):
        # A partial update that failed shows the error in place of the page's content.
        response.headers.update({"HX-Retarget": "#main", "HX-Reselect": "#main"})
        response.headers["HX-Reswap"] = "outerHTML"
    return response


class PageRoute(APIRoute):
    """Turns the failures of a page into pages: the login redirect, the CSRF refusal,
    domain errors (status by their code) and malformed input (422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                if request.method in SAFE_METHODS:
                    target = request.url.path
                    if request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
                return error_page(request, 401, "Please log in", "Your session has ended.")
            except CsrfRefused:
                log.warning("CSRF token missing or wrong on %s %s", request.method, request.url)
                return error_page(
                    request,
                    403,
                    "Request refused",
                    "This form was not sent from a page of this dashboard (CSRF check "
                    "failed). Reload the page and try again.",
                )
            except AdeError as exc:
                status = STATUS_BY_CODE.get(exc.code, 400)
                return error_page(request, status, exc.code.replace("_", " "), exc.message)
            except RequestValidationError as exc:
                fields = ", ".join(".".join(str(p) for p in e["loc"][1:]) for e in exc.errors())
                return error_page(request, 422, "Invalid input", f"check these fields: {fields}")

        return page_handler
