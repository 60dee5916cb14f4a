"""``SyncAdeClient``: the same SDK for plain synchronous code.

It runs an ``AdeClient`` on an event loop of its own, in a background thread (an anyio
blocking portal), and each method blocks until the async one returns. So ``lease``
keeps heartbeating while the calling thread works, and one client may be used from
several threads. Every method is the async client's, wrapped: same arguments, same
results, same exceptions.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from types import TracebackType
from typing import Concatenate, ParamSpec, Self, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from community_ade.client.aio import AdeClient, TaskId
from community_ade.client.lease import HeldLease, Mode
from community_ade.client.transport import Backoff

P = ParamSpec("P")
R = TypeVar("R")


def _blocking(
    method: Callable[Concatenate[AdeClient, P], Awaitable[R]],
) -> Callable[Concatenate[SyncAdeClient, P], R]:
    """The async client's ``method`` as a blocking one."""

    @functools.wraps(method)
    def call(self: SyncAdeClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async def run() -> R:
            return await method(self.client, *args, **kwargs)

        return self.portal.call(run)

    return call


class SyncAdeClient:
    """The blocking client; arguments as ``AdeClient`` (``ADE_URL``/``ADE_TOKEN``).

    ::

        with SyncAdeClient() as ade:
            proposal = ade.propose("files.write", payload, resources, title="…")
            task = ade.wait(proposal.task.id)
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        self.client = AdeClient(
            url, token, timeout=timeout, backoff=backoff, poll_interval=poll_interval
        )
        self._stack = ExitStack()
        self.portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the background loop."""
        try:
            self.portal.call(self.client.aclose)
        finally:
            self._stack.close()

    propose = _blocking(AdeClient.propose)
    get = _blocking(AdeClient.get)
    preview = _blocking(AdeClient.preview)
    cancel = _blocking(AdeClient.cancel)
    wait = _blocking(AdeClient.wait)
    awaiting_me = _blocking(AdeClient.awaiting_me)
    approval = _blocking(AdeClient.approval)
    approve = _blocking(AdeClient.approve)
    reject = _blocking(AdeClient.reject)
    request_changes = _blocking(AdeClient.request_changes)

    @contextmanager
    def lease(
        self,
        *,
        agent_id: TaskId | None = None,
        lease_seconds: float | None = None,
        resources: Mapping[str, Mode] | None = None,
        task: str | None = None,
        wait_seconds: float = 0.0,
    ) -> Iterator[HeldLease]:
        """``with ade.lease(resources={"db": "exclusive"}) as lease:``: as
        ``AdeClient.lease``; heartbeats run on the background loop meanwhile. Inside,
        ``lease.fence`` and ``lease.check()`` work as in async code (``lease.heartbeat``
        is a coroutine: leave it to the background loop)."""
        held: AbstractContextManager[HeldLease] = self.portal.wrap_async_context_manager(
            self.client.lease(
                agent_id=agent_id,
                lease_seconds=lease_seconds,
                resources=resources,
                task=task,
                wait_seconds=wait_seconds,
            )
        )
        with held as lease:
            yield lease
