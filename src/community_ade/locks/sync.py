"""A blocking facade over the async lock manager, for scripts and threads.

It runs its own event loop on a background thread with its own ``Runtime`` (so the
heartbeats keep running while the caller blocks), and forwards every call to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from community_ade.locks.introspection import AgentState, DomainState, ResourceState
from community_ade.locks.manager import Grant, LockManager
from community_ade.locks.model import ResourceSpec
from community_ade.runtime import Runtime
from community_ade.settings import Settings

T = TypeVar("T")


class SyncLockManager:
    """``with SyncLockManager() as locks: with locks.hold(task, agent, {...}) as grant: ...``"""

    def __init__(self, settings: Settings | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ade-locks", daemon=True
        )
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()
        try:
            self._runtime: Runtime = self._call(
                self._stack.enter_async_context(Runtime.open(settings))
            )
        except BaseException:
            self._stop_loop()
            raise

    @property
    def locks(self) -> LockManager:
        return self._runtime.locks

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def acquire(
        self,
        task: str,
        agent: str,
        resources: ResourceSpec,
        *,
        timeout: float | None = None,
        domain: str | None = None,
    ) -> Grant:
        """Block until granted; see ``LockManager.acquire``. ``grant.lost.is_set()``
        tells, from any thread, whether the grant has been lost."""
        return self._call(
            self.locks.acquire(task, agent, resources, timeout=timeout, domain=domain)
        )

    def release(self, grant: Grant) -> bool:
        return self._call(self.locks.release(grant))

    @contextlib.contextmanager
    def hold(
        self,
        task: str,
        agent: str,
        resources: ResourceSpec,
        *,
        timeout: float | None = None,
        domain: str | None = None,
    ) -> Iterator[Grant]:
        grant = self.acquire(task, agent, resources, timeout=timeout, domain=domain)
        try:
            yield grant
        finally:
            self.release(grant)

    def set_capacity(self, agent: str, capacity: int | None, *, domain: str | None = None) -> int:
        return self._call(self.locks.set_capacity(agent, capacity, domain=domain))

    def force_release(
        self, resource: str, reason: str, *, actor: str = "operator", domain: str | None = None
    ) -> list[str]:
        return self._call(self.locks.force_release(resource, reason, actor=actor, domain=domain))

    def inspect_resource(self, resource: str, *, domain: str | None = None) -> ResourceState:
        return self._call(self.locks.inspect_resource(resource, domain=domain))

    def inspect_agent(self, agent: str, *, domain: str | None = None) -> AgentState:
        return self._call(self.locks.inspect_agent(agent, domain=domain))

    def inspect_domain(self, *, domain: str | None = None) -> DomainState:
        return self._call(self.locks.inspect_domain(domain=domain))

    def close(self) -> None:
        """Stop heartbeats, close the Runtime and the loop thread."""
        if self._loop.is_running():
            try:
                self._call(self._stack.aclose())
            finally:
                self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> SyncLockManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
