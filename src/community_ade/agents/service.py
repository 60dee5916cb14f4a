"""Agent use cases over storage: the registry, versions, catalogue, tokens, leases, health.

Every configuration change (create, update, revert) writes a whole new version and its
audit event (``agent:created``, ``agent:updated``, ``agent:deleted``) in the caller's
transaction; the service flushes, the caller commits. A capacity change reaches the lock
manager at once (``set_capacity``), so the next lock request already sees it.

Who may do what: everyone with ``agent_read`` reads; an agent is managed (changed,
deleted, given tokens) by its owner or an admin, never by an agent; the catalogue is
edited by admins. Leases are opened by the agent itself, its owner or an admin.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.agents import config as cfg
from community_ade.agents import health as hl
from community_ade.agents.lease_locks import LeaseLocks
from community_ade.agents.leases import HeldLocks, Lease, LeaseStore, from_ms
from community_ade.approvals.service import actor_of, flush_or_conflict
from community_ade.audit import log as audit
from community_ade.auth import names
from community_ade.auth import service as auth
from community_ade.auth.principal import Permission, Principal, Role, require
from community_ade.errors import Conflict, Forbidden, InvalidInput, LockLost, NotFound
from community_ade.locks import LockManager
from community_ade.locks.model import ResourceSpec
from community_ade.runtime import Runtime
from community_ade.storage.models import (
    Agent,
    AgentVersion,
    ApiToken,
    CatalogueModel,
    CatalogueTool,
    Task,
    utcnow,
)

CatalogueKind = Literal["models", "tools"]
CatalogueRow = CatalogueModel | CatalogueTool
_CATALOGUE_ROWS: dict[CatalogueKind, type[CatalogueRow]] = {
    "models": CatalogueModel,
    "tools": CatalogueTool,
}


@dataclass(frozen=True)
class AgentChanges:
    """Fields to change; None leaves a field as it is. ``parameters`` merges key by key."""

    name: str | None = None
    description: str | None = None
    tags: Sequence[str] | None = None
    model: str | None = None
    system_prompt: str | None = None
    tools: Sequence[str] | None = None
    parameters: Mapping[str, Any] | None = None
    capacity: int | None = None
    allowed_task_types: Sequence[str] | None = None

    def apply_to(self, current: cfg.AgentConfig) -> cfg.AgentConfig:
        doc = current.document()
        for key in ("name", "description", "model", "system_prompt", "capacity"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = value
        for key in ("tags", "tools", "allowed_task_types"):
            values = getattr(self, key)
            if values is not None:
                doc[key] = list(values)
        if self.parameters is not None:
            doc["parameters"] = {**doc["parameters"], **self.parameters}
        return cfg.AgentConfig.from_document(doc)


def config_of(agent: Agent) -> cfg.AgentConfig:
    return cfg.AgentConfig(
        name=agent.name,
        model=agent.model,
        description=agent.description,
        tags=tuple(agent.tags),
        system_prompt=agent.system_prompt,
        tools=tuple(agent.tools),
        parameters=cfg.Parameters.from_document(agent.parameters),
        capacity=agent.capacity,
        allowed_task_types=tuple(agent.allowed_task_types),
    )


def _store(agent: Agent, config: cfg.AgentConfig) -> None:
    agent.name = config.name
    agent.description = config.description
    agent.tags = list(config.tags)
    agent.model = config.model
    agent.system_prompt = config.system_prompt
    agent.tools = list(config.tools)
    agent.parameters = config.parameters.document()
    agent.capacity = config.capacity
    agent.allowed_task_types = list(config.allowed_task_types)


class AgentService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        locks: LockManager,
        leases: LeaseStore,
        lock_lease: timedelta,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = session
        self.locks = locks
        self.leases = leases
        self.lock_lease = lock_lease
        self.now = now

    @classmethod
    def of(cls, runtime: Runtime, session: AsyncSession) -> AgentService:
        """The service over ``session`` with the runtime's lock manager and Redis."""
        return cls(
            session,
            locks=runtime.locks,
            leases=LeaseStore(runtime.redis),
            lock_lease=timedelta(seconds=runtime.settings.lock_lease_seconds),
        )

    # -- reading ----------------------------------------------------------------------

    async def get(self, principal: Principal, agent_id: uuid.UUID) -> Agent:
        require(principal, Permission.AGENT_READ)
        agent = await self.session.get(Agent, agent_id)
        if agent is None or agent.deleted_at is not None:
            raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
        return agent

    async def list_agents(
        self,
        principal: Principal,
        *,
        tag: str | None = None,
        model: str | None = None,
        health: hl.Status | None = None,
        q: str | None = None,
        page: int = 1,
        limit: int = 20,
    ) -> tuple[list[Agent], int]:
        """One page of live agents, by name, and how many match.

        Tags and health are filtered here rather than in SQL (tags are a JSON list on two
        databases; health lives in Redis): fine for the hundreds of agents a deployment
        has, not for millions."""
        require(principal, Permission.AGENT_READ)
        if page < 1 or not 1 <= limit <= 100:
            raise InvalidInput("page must be >= 1 and limit between 1 and 100")
        query = select(Agent).where(Agent.deleted_at.is_(None)).order_by(Agent.name, Agent.id)
        if model is not None:
            query = query.where(Agent.model == model)
        if q:
            pattern = (
                "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            query = query.where(
                or_(
                    func.lower(Agent.name).like(pattern, escape="\\"),
                    func.lower(Agent.description).like(pattern, escape="\\"),
                )
            )
        agents = list((await self.session.scalars(query)).all())
        if tag is not None:
            agents = [a for a in agents if tag in a.tags]
        if health is not None:
            agents = [a for a in agents if (await self.assess(a)).status == health]
        start = (page - 1) * limit
        return agents[start : start + limit], len(agents)

    # -- configuration ----------------------------------------------------------------

    async def catalogue(self) -> cfg.Catalogue:
        models = (
            await self.session.execute(select(CatalogueModel.id, CatalogueModel.context_window))
        ).all()
        tools = (await self.session.scalars(select(CatalogueTool.id))).all()
        return cfg.Catalogue(context_windows=dict(models), tools=frozenset(tools))

    async def _checked(self, config: cfg.AgentConfig, *, agent_id: uuid.UUID | None) -> None:
        query = select(Agent.deleted_at).where(Agent.name == config.name)
        if agent_id is not None:
            query = query.where(Agent.id != agent_id)
        holder = (await self.session.execute(query)).first()
        taken = None
        if holder is not None:
            taken = cfg.NameTaken.LIVE if holder.deleted_at is None else cfg.NameTaken.DELETED
        others = select(Agent.name)
        if agent_id is not None:
            others = others.where(Agent.id != agent_id)
        similar = names.lookalike(config.name, await self.session.scalars(others))
        report = cfg.validate(config, await self.catalogue(), name_taken=taken, lookalike=similar)
        if not report.ok:
            raise cfg.refuse(report)

    async def create(
        self,
        principal: Principal,
        config: cfg.AgentConfig,
        *,
        owner_id: uuid.UUID | None = None,
        comment: str = "",
    ) -> Agent:
        """A new agent at version 1, owned by the caller (an admin may name the owner)."""
        require(principal, Permission.AGENT_WRITE)
        if owner_id is not None and owner_id != principal.id and principal.role != Role.ADMIN:
            raise Forbidden("only an admin may create an agent for somebody else")
        await self._checked(config, agent_id=None)
        agent = await auth.create_agent_identity(
            self.session, config.name, owner_id or principal.id
        )
        _store(agent, config)
        agent.config_version = 1
        await self._record(principal, agent, comment or "created")
        await audit.append(
            self.session,
            type="agent:created",
            actor=actor_of(principal),
            subject=f"agent:{agent.id}",
            data={
                "name": agent.name,
                "version": 1,
                "model": agent.model,
                "owner": str(agent.owner_id),
            },
        )
        await self.locks.set_capacity(str(agent.id), agent.capacity)
        return agent

    async def update(
        self,
        principal: Principal,
        agent_id: uuid.UUID,
        changes: AgentChanges,
        *,
        comment: str = "",
        expected_version: int | None = None,
    ) -> Agent:
        """Save a new version with ``changes`` applied (nothing, when nothing changes)."""
        agent = await self._managed(principal, agent_id)
        return await self._save(
            principal, agent, changes.apply_to(config_of(agent)), comment, expected_version, {}
        )

    async def revert(
        self, principal: Principal, agent_id: uuid.UUID, version: int, *, comment: str = ""
    ) -> Agent:
        """A new version whose configuration is that of ``version`` (checked against
        today's catalogue: a model since removed is refused)."""
        agent = await self._managed(principal, agent_id)
        old = await self._version(agent.id, version)
        config = cfg.AgentConfig.from_document(old.config)
        return await self._save(
            principal,
            agent,
            config,
            comment or f"revert to version {version}",
            None,
            {"reverted_to": version},
        )

    async def _save(
        self,
        principal: Principal,
        agent: Agent,
        config: cfg.AgentConfig,
        comment: str,
        expected_version: int | None,
        extra: dict[str, Any],
    ) -> Agent:
        if expected_version is not None and expected_version != agent.config_version:
            raise Conflict(
                f"agent {agent.name!r} is at version {agent.config_version}, not "
                f"{expected_version}: reload it and apply your changes again",
                version=agent.config_version,
            )
        before = config_of(agent)
        changes = cfg.diff(before.document(), config.document())
        if not changes:
            return agent
        await self._checked(config, agent_id=agent.id)
        await self._ensure_baseline(agent, before)
        _store(agent, config)
        agent.config_version += 1
        agent.updated_at = self.now()
        await flush_or_conflict(self.session)
        await self._record(principal, agent, comment)
        await audit.append(
            self.session,
            type="agent:updated",
            actor=actor_of(principal),
            subject=f"agent:{agent.id}",
            data={
                "name": agent.name,
                "version": agent.config_version,
                "changed": [c.field for c in changes],
                **extra,
            },
        )
        if before.capacity != config.capacity:
            await self.locks.set_capacity(str(agent.id), config.capacity)
        return agent

    async def delete(self, principal: Principal, agent_id: uuid.UUID) -> Agent:
        """Retire an agent: its tokens are revoked and its leases closed; its row, name
        and history stay (the audit log refers to them)."""
        agent = await self._managed(principal, agent_id)
        now = self.now()
        agent.deleted_at = now
        tokens = await self.session.scalars(
            select(ApiToken).where(ApiToken.agent_id == agent.id, ApiToken.revoked_at.is_(None))
        )
        for token in tokens:
            token.revoked_at = now
        await flush_or_conflict(self.session)
        await audit.append(
            self.session,
            type="agent:deleted",
            actor=actor_of(principal),
            subject=f"agent:{agent.id}",
            data={"name": agent.name, "version": agent.config_version},
        )
        await self.leases.close_all(agent.id)
        return agent

    async def versions(self, principal: Principal, agent_id: uuid.UUID) -> list[AgentVersion]:
        """Every version, newest first."""
        agent = await self.get(principal, agent_id)
        rows = await self.session.scalars(
            select(AgentVersion)
            .where(AgentVersion.agent_id == agent.id)
            .order_by(AgentVersion.version.desc())
        )
        return list(rows.all())

    async def diff(
        self, principal: Principal, agent_id: uuid.UUID, from_version: int, to_version: int
    ) -> list[cfg.FieldChange]:
        agent = await self.get(principal, agent_id)
        before = await self._version(agent.id, from_version)
        after = await self._version(agent.id, to_version)
        return cfg.diff(before.config, after.config)

    async def _version(self, agent_id: uuid.UUID, version: int) -> AgentVersion:
        row = await self.session.get(AgentVersion, (agent_id, version))
        if row is None:
            raise NotFound(f"agent {agent_id} has no version {version}", version=version)
        return row

    async def _record(self, principal: Principal, agent: Agent, comment: str) -> None:
        self.session.add(
            AgentVersion(
                agent_id=agent.id,
                version=agent.config_version,
                config=config_of(agent).document(),
                author_id=principal.user_id,
                comment=comment,
                created_at=self.now(),
            )
        )
        try:
            await self.session.flush()
        except IntegrityError:  # the same version saved by a concurrent request
            raise Conflict("the agent changed meanwhile; reload it and try again") from None

    async def _ensure_baseline(self, agent: Agent, current: cfg.AgentConfig) -> None:
        """An agent registered before configurations existed (``auth`` identities) has no
        version row yet: keep what it had as its current version before changing it."""
        if await self.session.get(AgentVersion, (agent.id, agent.config_version)) is None:
            self.session.add(
                AgentVersion(
                    agent_id=agent.id,
                    version=agent.config_version,
                    config=current.document(),
                    author_id=None,
                    comment="configuration before versioning",
                    created_at=agent.created_at,
                )
            )
            await self.session.flush()

    async def _managed(self, principal: Principal, agent_id: uuid.UUID) -> Agent:
        require(principal, Permission.AGENT_WRITE)
        agent = await self.get(principal, agent_id)
        if principal.role != Role.ADMIN and agent.owner_id != principal.id:
            raise Forbidden(
                f"agent {agent.name!r} is managed by its owner or an admin",
                permission=Permission.AGENT_WRITE.value,
            )
        return agent

    # -- tokens -----------------------------------------------------------------------

    async def create_token(
        self,
        principal: Principal,
        agent_id: uuid.UUID,
        name: str,
        expires_at: datetime | None,
        scopes: Collection[str] | None = None,
    ) -> tuple[str, ApiToken]:
        agent = await self._managed(principal, agent_id)
        return await auth.create_token(
            self.session, name=name, agent_id=agent.id, expires_at=expires_at, scopes=scopes
        )

    async def list_tokens(self, principal: Principal, agent_id: uuid.UUID) -> list[auth.TokenInfo]:
        agent = await self._managed(principal, agent_id)
        return await auth.list_tokens(self.session, agent_id=agent.id)

    async def revoke_token(
        self, principal: Principal, agent_id: uuid.UUID, token_id: uuid.UUID
    ) -> auth.TokenInfo:
        agent = await self._managed(principal, agent_id)
        token = await self.session.get(ApiToken, token_id)
        if token is None or token.agent_id != agent.id:
            raise NotFound(f"agent {agent.name!r} has no token {token_id}")
        return await auth.revoke_token(self.session, token_id, now=self.now())

    # -- catalogue --------------------------------------------------------------------

    async def list_catalogue(self, principal: Principal, kind: CatalogueKind) -> list[CatalogueRow]:
        require(principal, Permission.AGENT_READ)
        row_type = _CATALOGUE_ROWS[kind]
        order = (row_type.id,) if kind == "models" else (CatalogueTool.category, CatalogueTool.id)
        rows = await self.session.scalars(select(row_type).order_by(*order))
        return cast(list[CatalogueRow], list(rows.all()))

    async def put_catalogue(
        self,
        principal: Principal,
        kind: CatalogueKind,
        entry_id: str,
        fields: Mapping[str, Any],
        *,
        create_only: bool,
    ) -> CatalogueRow:
        """Create (``create_only``: 409 if it exists) or replace one catalogue entry."""
        require(principal, Permission.CATALOGUE_WRITE)
        row_type = _CATALOGUE_ROWS[kind]
        row: CatalogueRow | None = await self.session.get(row_type, entry_id)
        if row is not None and create_only:
            raise Conflict(f"the catalogue already has {kind[:-1]} {entry_id!r}")
        if row is None:
            row = row_type(id=entry_id, **fields)
            self.session.add(row)
        else:
            for key, value in fields.items():
                setattr(row, key, value)
        await self.session.flush()
        await self._audit_catalogue(principal, kind, entry_id, "put")
        return row

    async def delete_catalogue(
        self, principal: Principal, kind: CatalogueKind, entry_id: str
    ) -> None:
        """Remove an entry no live agent uses (else 409 naming the agents)."""
        require(principal, Permission.CATALOGUE_WRITE)
        row = await self.session.get(_CATALOGUE_ROWS[kind], entry_id)
        if row is None:
            raise NotFound(f"the catalogue has no {kind[:-1]} {entry_id!r}")
        live = (await self.session.scalars(select(Agent).where(Agent.deleted_at.is_(None)))).all()
        users = sorted(
            a.name
            for a in live
            if (a.model == entry_id if kind == "models" else entry_id in a.tools)
        )
        if users:
            raise Conflict(f"{kind[:-1]} {entry_id!r} is used by: {', '.join(users)}", agents=users)
        await self.session.delete(row)
        await self.session.flush()
        await self._audit_catalogue(principal, kind, entry_id, "delete")

    async def _audit_catalogue(
        self, principal: Principal, kind: CatalogueKind, entry_id: str, action: str
    ) -> None:
        await audit.append(
            self.session,
            type="catalogue:updated",
            actor=actor_of(principal),
            subject=f"catalogue:{kind}:{entry_id}"[:200],
            data={"kind": kind, "id": entry_id, "action": action},
        )

    # -- leases -----------------------------------------------------------------------

    async def lease_target(self, principal: Principal, agent_id: uuid.UUID | None) -> Agent:
        """The agent a new lease of ``principal`` is for: an agent leases for itself
        (``agent_id`` may be left out); its owner or an admin names the agent."""
        require(principal, Permission.LOCK_LEASE)
        if principal.kind == "agent":
            if agent_id not in (None, principal.id):
                raise Forbidden("an agent opens leases for itself only")
            agent_id = principal.id
        elif agent_id is None:
            raise InvalidInput(
                "name the agent the lease is for",
                errors=[{"path": "agent_id", "message": "required unless an agent asks"}],
            )
        agent = await self.get(principal, agent_id)
        self._may_lease(principal, agent)
        return agent

    async def open_lease(
        self,
        principal: Principal,
        agent: Agent,
        lease_seconds: float,
        *,
        task: str | None = None,
        resources: ResourceSpec | None = None,
        wait_seconds: float = 0.0,
    ) -> Lease:
        """A lease for ``agent`` (checked by ``lease_target``); Redis only, so the caller
        may end its database transaction first rather than hold it while locks are
        awaited. With ``resources`` the lease also holds apply locks for the agent (one
        permit of its capacity) while it lives; if they are not granted within
        ``wait_seconds`` no lease is opened (``lock_timeout``)."""
        lease = await self.leases.open(
            agent.id, lease_seconds, opened_by=f"{principal.kind}:{principal.id}"
        )
        if not resources:
            return lease
        try:
            grant = await LeaseLocks.of(self.locks, self.leases).take(
                lease, task or f"lease-{lease.id}", resources, wait_seconds=wait_seconds
            )
        except BaseException:
            await self.leases.close(lease)
            raise
        held = HeldLocks(
            task=grant.task,
            resources={name: mode.value for name, mode in grant.resources},
            fence=grant.fence,
        )
        return await self.leases.record_locks(lease, held)

    async def lease(self, principal: Principal, lease_id: uuid.UUID) -> Lease:
        """A live lease the caller may renew or close (or ``NotFound``)."""
        require(principal, Permission.LOCK_LEASE)
        lease = await self.leases.get(lease_id)
        agent = await self.session.get(Agent, lease.agent_id)
        if agent is None:
            raise NotFound(f"no live lease {lease_id}")
        self._may_lease(principal, agent)
        return lease

    async def heartbeat_lease(self, principal: Principal, lease_id: uuid.UUID) -> Lease:
        """Renew for another full lease; ``lock_lost`` (and the lease closes) if its
        locks ended while held."""
        lease = await self.lease(principal, lease_id)
        if lease.lost is not None:
            await self.end_lease(lease)
            raise LockLost(
                f"the locks of lease {lease.id} ended: {lease.lost}; stop the work they "
                "guarded and open a new lease",
                lease_id=str(lease.id),
            )
        return await self.leases.heartbeat(lease)

    async def close_lease(self, principal: Principal, lease_id: uuid.UUID) -> None:
        await self.end_lease(await self.lease(principal, lease_id))

    async def end_lease(self, lease: Lease) -> None:
        """Close ``lease`` and release the locks it held (no permission check: the
        caller checked it)."""
        await self.leases.close(lease)
        await LeaseLocks.of(self.locks, self.leases).release(lease.id)

    @staticmethod
    def _may_lease(principal: Principal, agent: Agent) -> None:
        if principal.kind == "agent":
            allowed = principal.id == agent.id
        else:
            allowed = principal.role == Role.ADMIN or principal.id == agent.owner_id
        if not allowed:
            raise Forbidden(
                f"leases of agent {agent.name!r} belong to the agent, its owner or an admin",
                permission=Permission.LOCK_LEASE.value,
            )

    # -- health -----------------------------------------------------------------------

    async def health(self, principal: Principal, agent_id: uuid.UUID) -> hl.Health:
        return await self.assess(await self.get(principal, agent_id))

    async def assess(self, agent: Agent) -> hl.Health:
        """The agent's health. Redis is read before the database, so a session that has
        not begun its transaction yet holds none while waiting for Redis."""
        presence = await self.leases.presence(agent.id)
        state = await self.locks.inspect_agent(str(agent.id))
        session_deadline = None if state.lease_deadline is None else from_ms(state.lease_deadline)
        rows = await self.session.execute(
            select(Task.state, Task.duration_ms, Task.last_error)
            .where(Task.agent_id == agent.id, Task.state.in_(("COMPLETED", "FAILED")))
            .order_by(func.coalesce(Task.finished_at, Task.updated_at).desc())
            .limit(hl.WINDOW)
        )
        finished = [
            hl.FinishedTask(succeeded=s == "COMPLETED", duration_ms=d, error=e) for s, d, e in rows
        ]
        last_task, last_run = (
            await self.session.execute(
                select(func.max(Task.updated_at), func.max(Task.finished_at)).where(
                    Task.agent_id == agent.id
                )
            )
        ).one()
        token_used = await self.session.scalar(
            select(func.max(ApiToken.last_used_at)).where(ApiToken.agent_id == agent.id)
        )
        session_renewed = None if session_deadline is None else session_deadline - self.lock_lease
        return hl.assess(
            hl.Evidence(
                now=self.now(),
                lease_deadlines=presence.deadlines,
                lock_session_deadline=session_deadline,
                in_use=state.in_use,
                waiting=len(state.waiting),
                capacity=agent.capacity,
                finished=finished,
                seen=(presence.last_heartbeat, session_renewed, token_used, last_task),
                last_run=last_run,
            )
        )
