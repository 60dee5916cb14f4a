"""``lease``: an agent's HTTP lease (``/leases``) held for the length of a block.

Opening it may take apply locks (``resources``); the block gets the fencing token to
pass to whatever it changes. A background task renews the lease every
``renew_every_seconds`` (a third of its length). If a renewal is refused — the locks
were force-released (``LockLost``), or the lease lapsed (``NotFound``) — the lease is
``lost``: ``check()`` raises it inside the block, and leaving the block raises it too,
so the loss is never silent. The lease is closed on the way out either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Literal

import httpx

from community_ade.api.agent_schemas import HeldLocksOut, LeaseCreate, LeaseOut
from community_ade.client.errors import AdeProblem
from community_ade.client.transport import Transport

log = logging.getLogger(__name__)

Mode = Literal["exclusive", "shared"]


class HeldLease:
    """The lease inside its block: what the server said last, and whether it was lost."""

    def __init__(self, transport: Transport, info: LeaseOut) -> None:
        self.transport = transport
        self.info = info
        self.lost: AdeProblem | None = None
        self.heartbeats = 0
        self._renewing: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return str(self.info.id)

    @property
    def locks(self) -> HeldLocksOut | None:
        return self.info.locks

    @property
    def fence(self) -> int | None:
        """The fencing token of the locks held (None without ``resources``)."""
        return None if self.info.locks is None else self.info.locks.fence

    def check(self) -> None:
        """Raise the reason the lease was lost (``LockLost``, ``NotFound``), if it was."""
        if self.lost is not None:
            raise self.lost

    async def heartbeat(self) -> LeaseOut:
        """Renew now (the background task does this on its own)."""
        body = await self.transport.request("POST", f"/leases/{self.id}/heartbeat", idempotent=True)
        self.info = LeaseOut.model_validate(body)
        self.heartbeats += 1
        return self.info

    def start_renewing(self) -> None:
        """Renew in the background, every ``renew_every_seconds``, until stopped or lost."""
        self._renewing = asyncio.create_task(self._renew_until_lost(), name=f"lease-{self.id}")

    async def stop_renewing(self) -> None:
        renewing, self._renewing = self._renewing, None
        if renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.info.renew_every_seconds)
            try:
                await self.heartbeat()
            except AdeProblem as exc:
                if exc.status >= 500:  # the server's trouble, not the lease's: try again
                    log.warning("lease %s heartbeat failed: %s", self.id, exc)
                    continue
                self.lost = exc
                log.warning("lease %s lost: %s", self.id, exc)
                return
            except httpx.TransportError as exc:
                log.warning("lease %s heartbeat failed: %s", self.id, exc)


@contextlib.asynccontextmanager
async def hold_lease(transport: Transport, body: LeaseCreate) -> AsyncIterator[HeldLease]:
    opened = await transport.request("POST", "/leases", json=body.model_dump(mode="json"))
    lease = HeldLease(transport, LeaseOut.model_validate(opened))
    lease.start_renewing()
    try:
        yield lease
    finally:
        await lease.stop_renewing()
        await close_lease(lease)
    lease.check()


async def close_lease(lease: HeldLease) -> None:
    with contextlib.suppress(AdeProblem):  # already gone (lapsed, lost): nothing to close
        await lease.transport.request("DELETE", f"/leases/{lease.id}")
