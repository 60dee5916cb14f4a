"""Access ends when it is revoked: every open WebSocket was opened with a token, and the
hub ends its subscriber (close code 4401) once that token no longer authenticates —
revoked (a dashboard logout revokes its session token), expired, or its owner (or its
agent's owner) disabled.

One query per server process every ``ADE_WS_AUTH_RECHECK_SECONDS`` checks the tokens of
all its sockets at once, on a read snapshot that takes no write lock. Polling rather
than an event from each revoking path: it covers expiry (which no event announces) and
revocations by other processes (``ade users disable`` on the command line) alike, and it
costs the same however many sockets are open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from community_ade.auth.service import live_token_hashes
from community_ade.errors import AdeError
from community_ade.infra.aio import stop_if_cancelled
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
    while True:
        stop_if_cancelled()
        await asyncio.sleep(runtime.settings.ws_auth_recheck_seconds)
        try:
            ended = await check_access_once(hub, runtime)
        except (AdeError, SQLAlchemyError, OSError) as exc:  # e.g. the database is away
            log.warning("cannot re-check the WebSockets' tokens: %s", exc)
            continue
        if ended:
            log.info("closed %d WebSocket(s) whose access ended", ended)
