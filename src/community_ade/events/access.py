"""Access ends when it is revoked: every open WebSocket was opened with a token, and the
hub ends its subscriber (close code 4401) once that token no longer authenticates —
revoked (a dashboard logout revokes its session token), expired, or its owner (or its
agent's owner) disabled.

A commit in this process that revoked a token or disabled a user (the dashboard's
logout, an agent token revoked over the API) triggers a check at once; besides, every
``ADE_WS_AUTH_RECHECK_SECONDS`` a check covers what no commit here announces: tokens
expiring, and revocations by other processes (``ade users disable`` on the command
line). A check is one query for all the process's sockets, on a read snapshot that
takes no write lock.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from community_ade.auth.service import ACCESS_REVOKED, live_token_hashes
from community_ade.errors import AdeError
from community_ade.infra.aio import wait_event
from community_ade.runtime import Runtime
from community_ade.storage import db
from community_ade.storage.models import utcnow

if TYPE_CHECKING:  # the hub runs watch_access
    from community_ade.events.hub import Hub

log = logging.getLogger(__name__)

BATCH = 500  # token hashes per query: bounded IN lists


async def check_access_once(hub: Hub, runtime: Runtime) -> int:
    """End the subscribers whose tokens stopped authenticating; how many."""
    checked = hub.token_hashes()
    if not checked:
        return 0
    live: set[str] = set()
    now = utcnow()
    ordered = sorted(checked)
    async with db.snapshot_sessions(runtime.sessions).begin() as session:
        for start in range(0, len(ordered), BATCH):
            live |= await live_token_hashes(session, ordered[start : start + BATCH], now=now)
    return hub.end_access(live, checked)


async def watch_access(hub: Hub, runtime: Runtime) -> None:
    """Re-check the open sockets' tokens until cancelled."""
    revoked_here = asyncio.Event()
    with ACCESS_REVOKED.waking(revoked_here):
        while True:
            await wait_event(revoked_here, runtime.settings.ws_auth_recheck_seconds)
            revoked_here.clear()
            try:
                ended = await check_access_once(hub, runtime)
            except (AdeError, SQLAlchemyError, OSError) as exc:  # e.g. the database is away
                log.warning("cannot re-check the WebSockets' tokens: %s", exc)
                continue
            if ended:
                log.info("closed %d WebSocket(s) whose access ended", ended)
