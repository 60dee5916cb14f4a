"""``SyncAdeClient``: the same SDK for plain synchronous code.

It runs an ``AdeClient`` on an event loop of its own, in a background thread (an anyio
blocking portal), and each method blocks until the async one returns. So ``lease``
keeps heartbeating while the calling thread works, and one client may be used from
several threads. Every method is the async client's, wrapped: same arguments, same
results, same exceptions.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from community_ade.api.schemas import TaskOut
from community_ade.client.aio import AdeClient, TaskId
from community_ade.client.claims import ClaimedTask, RollbackOutcome

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


class SyncClaim:
    """``ClaimedTask`` for blocking code: the same attributes, ``complete`` and ``fail``
    block; the lease is renewed by the client's background loop meanwhile."""

    def __init__(self, portal: BlockingPortal, claim: ClaimedTask) -> None:
        self.portal = portal
        self.claim = claim

    @property
    def task(self) -> TaskOut:
        return self.claim.task

    @property
    def task_id(self) -> str:
        return self.claim.task_id

    @property
    def fence(self) -> int:
        return self.claim.fence

    @property
    def outcome(self) -> TaskOut | None:
        return self.claim.outcome

    def check(self) -> None:
        self.claim.check()

    def complete(self, summary: str = "done", details: Mapping[str, Any] | None = None) -> TaskOut:
        async def complete() -> TaskOut:
            return await self.claim.complete(summary, details)

        return self.portal.call(complete)

    def fail(
        self,
        error: str,
        rollback_outcome: RollbackOutcome = "unknown",
        *,
        retry: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> TaskOut:
        async def fail() -> TaskOut:
            return await self.claim.fail(error, rollback_outcome, retry=retry, details=details)

        return self.portal.call(fail)


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

    task_types = _blocking(AdeClient.task_types)
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

    complete = _blocking(AdeClient.complete)
    fail = _blocking(AdeClient.fail)

    lease = _blocking_context(AdeClient.lease)

    @contextlib.contextmanager
    def claim(
        self, task_id: TaskId, *, lease_seconds: float | None = None, wait_seconds: float = 0.0
    ) -> Iterator[SyncClaim]:
        """``AdeClient.claim`` for blocking code: ``with ade.claim(task_id) as claim:``."""
        held = self.client.claim(task_id, lease_seconds=lease_seconds, wait_seconds=wait_seconds)
        with self.portal.wrap_async_context_manager(held) as claim:
            yield SyncClaim(self.portal, claim)
