"""The review dashboard: server-rendered pages (Jinja2) on the same app as the API.

How a page module plugs in
--------------------------
Every module in ``dashboard/views/`` is a page module, found by ``install`` (no list to
edit). A page module defines

- ``router = APIRouter(route_class=PageRoute)`` with its pages (paths at the site root,
  e.g. ``/agents``, ``/agents/{agent_id}``), and
- optionally ``nav = NavItem("Agents", "/agents", Permission.AGENT_READ, order=50)`` for
  the top navigation (shown to visitors holding the permission, sorted by ``order``).

A page handler takes ``visitor: VisitorDep`` (redirects to the login page without a
session; checks the CSRF token on POST), calls domain services directly (not the JSON API),
and returns ``render(request, "<dir>/<page>.html", {...}, visitor=visitor)``; a POST
answers ``redirect(url, flash="...")``. Templates extend ``base.html`` (blocks ``title``
and ``content``); forms include ``{{ csrf_field() }}``. Elements that should update live
carry ``data-task-id`` / ``data-live`` attributes (see ``static/live.js``).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from community_ade.dashboard import views, web
from community_ade.dashboard.web import NavItem

log = logging.getLogger(__name__)


def install(app: FastAPI) -> None:
    """Mount the static files and every page module's router on ``app``."""
    if not web.HTMX_FILE.exists():
        log.error(
            "%s is missing: run `make venv` (it installs htmx from the npm registry); "
            "pages work, but without partial updates",
            web.HTMX_FILE,
        )
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    nav: list[NavItem] = []
    for module_info in sorted(pkgutil.iter_modules(views.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{views.__name__}.{module_info.name}")
        app.include_router(module.router, include_in_schema=False)
        item = getattr(module, "nav", None)
        if isinstance(item, NavItem):
            nav.append(item)
    app.state.dashboard_nav = sorted(nav, key=lambda n: n.order)
