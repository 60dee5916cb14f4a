"""The lock manager client: acquire, wait, heartbeat, release (asyncio).

One ``LockManager`` per process and Redis client. It keeps one heartbeat per agent (not
per grant), one pub/sub subscription for wake-ups, and the local validity deadline that
makes a holder give up *before* the server frees its grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import NoPermissionError, NoScriptError

from community_ade.errors import (
    DeadlockDetected,
    FenceRejected,
    InvalidInput,
    LockLost,
    LockTimeout,
    ServiceUnavailable,
)
from community_ade.infra.aio import Incident, wait_event
from community_ade.infra.redis_client import AnyRedis
from community_ade.locks import deadlock, keys
from community_ade.locks.introspection import AgentState, DomainState, ResourceState, parse
from community_ade.locks.model import (
    LockConfig,
    LockRequest,
    Mode,
    ResourceSpec,
    check_domain,
    check_name,
)
from community_ade.locks.scripts import LockScripts

log = logging.getLogger(__name__)

# Local safety margin on the lease: clock drift (1 %) plus a fixed 2 ms, as Redlock does.
_DRIFT = 0.01
_DRIFT_FIXED_S = 0.002
_GRAPH_LIMIT = 512
_REDIS_ERRORS = (redis.RedisError, OSError, ServiceUnavailable)


@functools.lru_cache(maxsize=1024)
def _resources_json(resources: tuple[tuple[str, Mode], ...]) -> bytes:
    # Bytes, as the script argument: redis-py sends bytes without encoding them again.
    return json.dumps([[name, mode.code] for name, mode in resources]).encode()


@dataclass(eq=False)
class Grant:
    """A held set of resources. ``fence`` orders it against every other grant of its
    domain; ``lost`` is set when the grant ended while held (lease, force release)."""

    request_id: str
    domain: str
    task: str
    agent: str
    resources: tuple[tuple[str, Mode], ...]
    fence: int
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    lost_reason: str | None = None
    released: bool = False

    def check(self) -> None:
        """Raise ``LockLost`` if the grant is no longer held."""
        if self.lost.is_set():
            raise LockLost(
                f"lock for task {self.task} lost: {self.lost_reason}",
                request=self.request_id,
                fence=self.fence,
            )

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the block, cancelling it as soon as the grant is lost (then ``LockLost``).

        ``async with grant.guard(): await apply(...)`` stops the work under a lost lock
        at its next await instead of letting it run on unprotected.
        """
        self.check()
        current = asyncio.current_task()
        assert current is not None, "guard() must run inside a task"

        async def watch() -> None:
            await self.lost.wait()
            current.cancel()

        watcher = asyncio.create_task(watch(), name=f"ade-lock-guard-{self.request_id}")
        try:
            yield
        except asyncio.CancelledError:
            if self.lost.is_set() and current.uncancel() == 0:
                self.check()
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def _mark_lost(self, reason: str) -> None:
        if not self.lost.is_set() and not self.released:
            self.lost_reason = reason
            self.lost.set()
            log.warning("grant %s (task %s) lost: %s", self.request_id, self.task, reason)


@dataclass(eq=False)
class _Session:
    """The local side of one agent's session in one domain."""

    domain: str
    agent: str
    grants: dict[str, Grant] = field(default_factory=dict)
    waiting: int = 0
    valid_until: float = 0.0  # monotonic
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def busy(self) -> bool:
        return bool(self.grants) or self.waiting > 0


class LockManager:
    """Clean apply locks on Redis: FIFO, all-or-nothing, fenced, deadlock-detecting.

    Args:
        redis: a client made with ``decode_responses=True`` (standalone or Cluster).
        config: timings and limits.
        domain: the default lock domain (the Cluster hash tag of its keys).
    """

    def __init__(self, redis: AnyRedis, config: LockConfig, *, domain: str = "default") -> None:
        self.redis = redis
        self.config = config
        self.domain = domain
        self.client_id = uuid.uuid4().hex
        # Request ids: unique across clients by the random prefix, cheap by the counter.
        self._request_prefix = self.client_id[:16] + "-"
        self._request_numbers = itertools.count(1)
        self._client_arg = self.client_id.encode()
        self._scripts = LockScripts(redis)
        # Whether the server runs the scripts as Redis Functions; None until first asked.
        self._functions: bool | None = None
        self._library_lock = asyncio.Lock()
        self._library_loads = 0
        self._common = tuple(
            str(v).encode()
            for v in (config.events_maxlen, config.lock_delay_ms, config.default_capacity)
        )
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._waiters: dict[str, asyncio.Event] = {}
        # Fences that hand-off messages delivered to waiting requests.
        self._handed_off: dict[str, int] = {}
        self._held: dict[str, Grant] = {}
        self._known_domains: set[str] = set()
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribe_lock = asyncio.Lock()
        self._pending: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- public API -----------------------------------------------------------------

    async def acquire(
        self,
        task: str,
        agent: str,
        resources: ResourceSpec,
        *,
        timeout: float | None = None,
        domain: str | None = None,
    ) -> Grant:
        """Wait until every resource is granted in its mode, plus one permit of the agent.

        Args:
            timeout: seconds to wait; None waits without limit, 0 tries once.

        Raises:
            InvalidInput: bad resources, modes or timeout (before any Redis call).
            LockTimeout: not granted in time; the request left every queue.
            DeadlockDetected: this request was the victim of a waits-for cycle.
            LockLost: the request ended while waiting (its agent's session expired).
        """
        request = LockRequest.build(task, agent, resources)
        if timeout is not None and timeout < 0:
            raise InvalidInput(f"timeout must be >= 0 seconds or None, not {timeout}")
        domain = domain or self.domain
        if domain not in self._known_domains:
            await self._register_domain(check_domain(domain))
        if self._reader is None or self._reader.done():
            await self._ensure_subscribed()
        req_id = f"{self._request_prefix}{next(self._request_numbers):x}"
        session = self._session(domain, request.agent)
        session.waiting += 1
        self._ensure_heartbeat(session)
        wake = self._waiters[req_id] = asyncio.Event()
        try:
            return await self._wait(domain, request, req_id, timeout, wake, session)
        except BaseException as exc:
            if not (isinstance(exc, LockTimeout) and exc.details.get("queued") is False):
                reason = "timeout" if isinstance(exc, LockTimeout) else "cancelled"
                # Shielded: a cancelled acquire must still leave every queue.
                await asyncio.shield(self._withdraw(domain, req_id, reason))
            raise
        finally:
            session.waiting -= 1
            self._waiters.pop(req_id, None)
            self._handed_off.pop(req_id, None)

    @contextlib.asynccontextmanager
    async def hold(
        self,
        task: str,
        agent: str,
        resources: ResourceSpec,
        *,
        timeout: float | None = None,
        domain: str | None = None,
    ) -> AsyncIterator[Grant]:
        """``async with locks.hold(...) as grant:`` acquires, and releases on exit."""
        grant = await self.acquire(task, agent, resources, timeout=timeout, domain=domain)
        try:
            yield grant
        finally:
            await self.release(grant)

    async def release(self, grant: Grant) -> bool:
        """Release the grant (idempotent). Returns whether it was still held.

        Raises:
            ServiceUnavailable: Redis did not answer. The release goes on in the
                background until Redis does (or the grant is found lost): the grant may
                well outlive the outage (a restart on its files brings it back), and this
                agent's heartbeat, renewing the session for its other grants, would keep
                it alive for as long as this process runs.
        """
        if grant.released:
            return False
        args = (grant.request_id, str(grant.fence), *(name for name, _ in grant.resources))
        try:
            done = await self._run("release", grant.domain, *args)
        except (asyncio.CancelledError, *_REDIS_ERRORS):
            # Release is idempotent; the grant stays ours locally until the server has
            # answered.
            self._background(self._release_until_answered(grant, args))
            raise
        grant.released = True
        self._forget(grant)
        return bool(done)

    async def _release_until_answered(self, grant: Grant, args: tuple[str, ...]) -> None:
        incident = Incident(f"release of grant {grant.request_id}", log, base=0.2, cap=2.0)
        while not (grant.released or grant.lost.is_set()):
            try:
                await self._run("release", grant.domain, *args)
            except _REDIS_ERRORS as exc:
                if self._closed:
                    return  # left to expire with the session
                await asyncio.sleep(incident.failed(exc))
                continue
            incident.cleared()
            grant.released = True
            self._forget(grant)

    def lease_deadline(self, grant: Grant) -> float:
        """Until when (``time.monotonic``) ``grant`` is known to be held: its agent
        session's local validity, which every heartbeat moves on; 0 once it is lost or
        released. What a process that must not outlive the lease watches (the command
        watchdog): the server frees the grant no earlier than this."""
        if grant.lost.is_set() or grant.released:
            return 0.0
        session = self._sessions.get((grant.domain, grant.agent))
        return 0.0 if session is None else session.valid_until

    async def set_capacity(
        self, agent: str, capacity: int | None, *, domain: str | None = None
    ) -> int:
        """Set how many grants ``agent`` may hold at once (None: back to the default)."""
        check_name("agent", agent)
        if capacity is not None and capacity < 1:
            raise InvalidInput(f"capacity must be at least 1, not {capacity}")
        value = "default" if capacity is None else str(capacity)
        domain = self._domain(domain)
        await self._register_domain(domain)
        return int(await self._run("set_capacity", domain, agent, value))

    async def force_release(
        self, resource: str, reason: str, *, actor: str = "operator", domain: str | None = None
    ) -> list[str]:
        """End every grant on ``resource``; their holders see ``lost``. Needs a reason."""
        check_name("resource", resource)
        if not reason or not reason.strip():
            raise InvalidInput("a force release needs a reason")
        ended = await self._run(
            "force_release", self._domain(domain), resource, reason.strip(), actor
        )
        return list(ended)

    async def inspect_resource(self, resource: str, *, domain: str | None = None) -> ResourceState:
        check_name("resource", resource)
        raw = await self._run("inspect", self._domain(domain), "resource", resource, 0)
        return ResourceState.model_validate(parse(raw))

    async def inspect_agent(self, agent: str, *, domain: str | None = None) -> AgentState:
        check_name("agent", agent)
        raw = await self._run("inspect", self._domain(domain), "agent", agent, 0)
        return AgentState.model_validate(parse(raw))

    async def inspect_domain(self, *, domain: str | None = None, limit: int = 100) -> DomainState:
        domain = self._domain(domain)
        raw = await self._run("inspect", domain, "all", "", limit)
        return DomainState.model_validate(parse(raw, domain=domain))

    async def domains(self) -> list[str]:
        """Every lock domain used on this Redis (from a small registry set, not SCAN)."""
        members = await self.redis.smembers(keys.DOMAINS)
        return sorted(str(m) for m in members)

    async def events(self, *, domain: str | None = None, count: int = 50) -> list[dict[str, Any]]:
        """The newest lock events of a domain, newest first."""
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(  # type: ignore[assignment]
            keys.events(self._domain(domain)), count=count
        )
        out: list[dict[str, Any]] = []
        for entry_id, fields in entries:
            event: dict[str, Any] = dict(fields)
            event["id"] = entry_id
            event["data"] = json.loads(event.get("data") or "{}")
            event["ts"] = int(entry_id.split("-", 1)[0])
            out.append(event)
        return out

    async def fenced_write(self, key: str, grant: Grant, field_name: str, value: str) -> None:
        """Write ``field_name`` of the Redis hash ``key`` only if no newer fence has written it.

        Raises:
            LockLost: the grant is known lost locally.
            FenceRejected: a newer grant already wrote there.
        """
        grant.check()
        ok, newest = await self._scripts.fenced_write(
            keys=[key], args=[str(grant.fence), field_name, value]
        )
        if not int(ok):
            raise FenceRejected(
                f"fence {grant.fence} is older than {newest}, already written to {key}",
                fence=grant.fence,
                newest=int(newest),
            )

    async def close(self) -> None:
        """Stop heartbeats and the wake-up listener. Grants still held are left to expire."""
        self._closed = True
        tasks = [s.task for s in self._sessions.values() if s.task]
        if self._reader:
            tasks.append(self._reader)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, *self._pending, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._pubsub.aclose()

    # -- waiting --------------------------------------------------------------------

    async def _wait(
        self,
        domain: str,
        request: LockRequest,
        req_id: str,
        timeout: float | None,
        wake: asyncio.Event,
        session: _Session,
    ) -> Grant:
        cfg = self.config
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        wait_ms = -1 if timeout is None else round(timeout * 1000)
        resources_json = _resources_json(request.resources)
        next_deadlock_check = started + cfg.deadlock_timeout_ms / 1000
        first = "1"
        while True:
            sent = time.monotonic()
            # Renew the session only when the heartbeat has not done so lately.
            renew = session.valid_until - sent < cfg.lease_ms / 2000
            reply = await self._run(
                "acquire",
                domain,
                req_id,
                request.task,
                request.agent,
                self._client_arg,
                cfg.lease_ms if renew else 0,
                wait_ms,
                resources_json,
                first,
            )
            first = "0"
            if renew:
                session.valid_until = max(session.valid_until, self._validity(sent))
            if type(reply) is int:  # granted: the reply is the fence
                return self._granted(domain, request, req_id, reply, session)
            state = reply[0]
            if state == "busy":
                raise LockTimeout(
                    f"resources busy for task {request.task} (timeout 0)", queued=False
                )
            if state != "waiting":
                self._raise_ended(request, state, reply)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise LockTimeout(
                    f"task {request.task} not granted within {timeout}s", request=req_id
                )
            if now >= next_deadlock_check:
                await self._detect_deadlock(domain, req_id)
                next_deadlock_check = now + cfg.deadlock_timeout_ms / 1000
                if wake.is_set():
                    wake.clear()
                    continue
            hint_ms = int(reply[2])
            pause = min(cfg.backstop_ms / 1000, max(0.0, next_deadlock_check - now))
            if hint_ms >= 0:
                pause = min(pause, hint_ms / 1000 + 0.001)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - now))
            # asyncio.timeout, not wait_for: no extra task on the hand-off path.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await wake.wait()
            wake.clear()
            fence = self._handed_off.pop(req_id, None)
            if fence is not None:
                # Granted by a release's hand-off; the message carried the fence.
                return self._granted(domain, request, req_id, fence, session)

    def _raise_ended(self, request: LockRequest, state: str, reply: list[Any]) -> None:
        reason = reply[1] if len(reply) > 1 else ""
        if state == "aborted":
            cycle = json.loads(reply[2]) if len(reply) > 2 and reply[2] else []
            raise DeadlockDetected(
                f"task {request.task} aborted to break a deadlock of {len(cycle)} waits",
                cycle=cycle,
            )
        if reason == "wait timed out":
            raise LockTimeout(f"task {request.task} not granted in time")
        raise LockLost(f"lock request of task {request.task} ended while waiting: {state} {reason}")

    def _granted(
        self,
        domain: str,
        request: LockRequest,
        req_id: str,
        fence: int,
        session: _Session,
    ) -> Grant:
        grant = Grant(
            request_id=req_id,
            domain=domain,
            task=request.task,
            agent=request.agent,
            resources=request.resources,
            fence=fence,
        )
        session.grants[req_id] = grant
        self._held[req_id] = grant
        return grant

    async def _withdraw(self, domain: str, req_id: str, reason: str) -> None:
        try:
            await self._run("cancel", domain, req_id, reason)
        except _REDIS_ERRORS as exc:
            # The agent session's expiry (or the wait deadline) removes it later.
            log.warning("could not withdraw lock request %s: %s", req_id, exc)

    async def _detect_deadlock(self, domain: str, req_id: str) -> None:
        raw = await self._run("waits_for", domain, req_id, _GRAPH_LIMIT)
        graph = deadlock.WaitsForGraph.from_snapshot(json.loads(raw))
        cycle = deadlock.find_cycle(graph, req_id)
        if cycle is None:
            return
        victim = deadlock.choose_victim(graph, cycle)
        edges = json.dumps([[e.source, e.target, e.kind.value] for e in cycle])
        described = json.dumps(deadlock.describe(graph, cycle))
        aborted = await self._run("abort", domain, victim, edges, described)
        if aborted:
            log.info("deadlock of %d waits broken by aborting %s", len(cycle), victim)

    # -- sessions and heartbeats ----------------------------------------------------

    def _validity(self, sent: float) -> float:
        lease = self.config.lease_ms / 1000
        return sent + lease - lease * _DRIFT - _DRIFT_FIXED_S

    def _session(self, domain: str, agent: str) -> _Session:
        key = (domain, agent)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session(domain, agent)
        return session

    def _ensure_heartbeat(self, session: _Session) -> None:
        if session.task is None or session.task.done():
            session.task = asyncio.create_task(
                self._heartbeat_loop(session), name=f"ade-lock-heartbeat-{session.agent}"
            )

    async def _heartbeat_loop(self, session: _Session) -> None:
        renew = self.config.renew_ms / 1000
        pause = renew
        while session.busy() and not self._closed:
            if session.grants:
                # Wake no later than the local validity deadline, whatever else happens.
                pause = min(pause, max(0.0, session.valid_until - time.monotonic()))
            await wait_event(session.kick, pause * random.uniform(0.9, 1.0))
            session.kick.clear()
            if not session.busy():
                break
            self._expire_locally(session)
            sent = time.monotonic()
            try:
                # A hung connection must not outlast the lease: bound the call by it.
                limit = max(
                    0.05, min(renew, session.valid_until - sent) if session.grants else renew
                )
                async with asyncio.timeout(limit):
                    lost = await self._run(
                        "heartbeat",
                        session.domain,
                        session.agent,
                        self.client_id,
                        self.config.lease_ms,
                        *session.grants.keys(),
                    )
            except (*_REDIS_ERRORS, TimeoutError) as exc:
                log.warning("heartbeat of agent %s failed: %s", session.agent, exc or "timed out")
                pause = min(renew, max(0.05, renew / 5))
                continue
            session.valid_until = self._validity(sent)
            pause = renew
            for i in range(0, len(lost), 3):
                gone = session.grants.get(lost[i])
                if gone is not None:
                    gone._mark_lost(f"{lost[i + 1]}: {lost[i + 2]}".rstrip(": "))
                    self._forget(gone)
        session.task = None

    def _expire_locally(self, session: _Session) -> None:
        """Past the local validity deadline the server may have given the grants away."""
        if session.grants and time.monotonic() > session.valid_until:
            for grant in list(session.grants.values()):
                grant._mark_lost("lease expired before it could be renewed")
                self._forget(grant)

    def _forget(self, grant: Grant) -> None:
        self._held.pop(grant.request_id, None)
        session = self._sessions.get((grant.domain, grant.agent))
        if session is not None:
            session.grants.pop(grant.request_id, None)

    # -- wake-ups -------------------------------------------------------------------

    async def _ensure_subscribed(self) -> None:
        if self._reader is not None and not self._reader.done():
            return
        async with self._subscribe_lock:
            if self._reader is not None and not self._reader.done():
                return
            pubsub = self.redis.pubsub()
            await pubsub.subscribe(keys.wake_channel(self.client_id))
            self._pubsub = pubsub
            self._reader = asyncio.create_task(self._read_wakeups(pubsub), name="ade-lock-wakeups")

    async def _read_wakeups(self, pubsub: Any) -> None:
        incident = Incident("lock wake-up listener", log, base=0.1, cap=2.0)
        while not self._closed:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except _REDIS_ERRORS as exc:
                # Waiters fall back on their backstop; redis-py resubscribes on reconnect.
                await asyncio.sleep(incident.failed(exc))
                continue
            incident.cleared()
            if not message or message.get("type") != "message":
                continue
            req_id, _, fence = str(message["data"]).partition(" ")
            event = self._waiters.get(req_id)
            if event is not None:
                if fence:
                    self._handed_off[req_id] = int(fence)
                event.set()
                continue
            held = self._held.get(req_id)
            if held is not None:
                # A held grant was ended by someone else: learn how at once.
                self._session(held.domain, held.agent).kick.set()

    # -- plumbing -------------------------------------------------------------------

    def _domain(self, domain: str | None) -> str:
        return check_domain(domain or self.domain)

    async def _register_domain(self, domain: str) -> None:
        if domain not in self._known_domains:
            await self.redis.sadd(keys.DOMAINS, domain)
            self._known_domains.add(domain)

    async def _run(self, script: str, domain: str, *args: Any) -> Any:
        prefix = keys.domain_prefix(domain)
        try:
            if self._functions is None:
                await self._load_functions(self._library_loads)
            if self._functions:
                function = self._scripts.functions[script]
                loads = self._library_loads
                try:
                    return await self.redis.fcall(function, 1, prefix, *self._common, *args)
                except redis.ResponseError as exc:
                    if "function not found" not in str(exc).lower():
                        raise
                    # A restart without persistence, a failover or FUNCTION FLUSH lost it.
                    self._forget_server_state()
                    await self._load_functions(loads)
                    return await self.redis.fcall(function, 1, prefix, *self._common, *args)
            evalsha = self._scripts.evalsha[script]
            try:
                return await self.redis.evalsha(evalsha.sha, 1, prefix, *self._common, *args)
            except NoScriptError:
                # The server restarted or failed over: the script object loads itself again.
                self._forget_server_state()
                return await evalsha(keys=[prefix], args=[*self._common, *args])
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise ServiceUnavailable(f"Redis unreachable: {exc}") from exc

    def _forget_server_state(self) -> None:
        """The server lost its data (the scripts were gone): register the domains again
        as they are next used, or ``domains()`` and the event relay would miss them."""
        self._known_domains.clear()

    async def _load_functions(self, seen: int) -> None:
        """Load the scripts as a Functions library, or settle for EVALSHA where the
        server has no Functions (Redis 6.2) or the user may not load them.

        ``seen``: the number of loads the caller saw before its call. Loading compiles
        the whole library on the server, so a burst of calls that all found it missing
        loads it once: the first to get here does, the others see the count moved on.
        """
        async with self._library_lock:
            if self._library_loads != seen:
                return
            try:
                await self.redis.function_load(self._scripts.library, replace=True)
            except redis.ResponseError as exc:
                text = str(exc).lower()
                if not isinstance(exc, NoPermissionError) and "unknown command" not in text:
                    raise
                # Redis 6.2 (the embedded one) or no FUNCTION permission; the error
                # quotes the whole library, so only its start is worth a log line.
                reason = str(exc).split(",", 1)[0]
                log.info("lock scripts run with EVALSHA (no Redis Functions: %s)", reason)
                self._functions = False
            else:
                self._functions = True
            self._library_loads += 1

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
