"""``SyncAdeClient``: the same SDK for plain synchronous code.

It runs an ``AdeClient`` on an event loop of its own, in a background thread (an anyio
blocking portal), and each method blocks until the async one returns. So ``lease``
keeps heartbeating while the calling thread works, and one client may be used from
several threads. Every method is the async client's, wrapped: same arguments, same
results, same exceptions.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, ExitStack
from types import TracebackType
from typing import Concatenate, ParamSpec, Self, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from community_ade.client.aio import AdeClient

P = ParamSpec("P")
R = TypeVar("R")


def _built_like(
    factory: Callable[P, AdeClient],
) -> Callable[
    [Callable[[SyncAdeClient, AdeClient], None]], Callable[Concatenate[SyncAdeClient, P], None]
]:
    """``__init__`` taking the async client's arguments."""

    def decorate(
        init: Callable[[SyncAdeClient, AdeClient], None],
    ) -> Callable[Concatenate[SyncAdeClient, P], None]:
        @functools.wraps(init)
        def build(self: SyncAdeClient, /, *args: P.args, **kwargs: P.kwargs) -> None:
            init(self, factory(*args, **kwargs))

        return build

    return decorate


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


def _blocking_context(
    method: Callable[Concatenate[AdeClient, P], AbstractAsyncContextManager[R]],
) -> Callable[Concatenate[SyncAdeClient, P], AbstractContextManager[R]]:
    """The async client's context manager ``method`` as a blocking one: entered and
    left on the background loop, which keeps its background work (heartbeats) running
    in between."""

    @functools.wraps(method)
    def enter(
        self: SyncAdeClient, /, *args: P.args, **kwargs: P.kwargs
    ) -> AbstractContextManager[R]:
        return self.portal.wrap_async_context_manager(method(self.client, *args, **kwargs))

    return enter


class SyncAdeClient:
    """The blocking client; arguments as ``AdeClient`` (``ADE_URL``/``ADE_TOKEN``).

    ::

        with SyncAdeClient() as ade:
            proposal = ade.propose("files.write", payload, resources, title="…")
            task = ade.wait(proposal.task.id)
    """

    @_built_like(AdeClient)
    def __init__(self, client: AdeClient) -> None:
        self.client = client
        self.closed = False
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
        """Close the connections and stop the background loop (once; again: no-op)."""
        if self.closed:
            return
        self.closed = True
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

    lease = _blocking_context(AdeClient.lease)
