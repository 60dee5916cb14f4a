"""Policies and delegations over storage (the sweep of the clocks is in ``sweep.py``).

Policies are versioned: every edit stores a new version (audited as ``policy:updated``)
and tasks record the version that routed them. ``evaluate`` answers "who would have to
approve this?" without creating anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.approvals.delegation import Delegation as DelegationRule
from community_ade.approvals.policy_document import (
    EscalateOnTimeout,
    PolicyDocument,
    builtin_policy_document,
)
from community_ade.approvals.reviews import reviewer_named
from community_ade.approvals.risk import ResourceRef, ResourceType
from community_ade.approvals.service import (
    Routing,
    TaskService,
    actor_of,
    flush_or_conflict,
)
from community_ade.audit import log as audit
from community_ade.auth.principal import Permission, Principal, require
from community_ade.errors import Forbidden, InvalidInput, NotFound
from community_ade.execution.executors import get_executor
from community_ade.storage.models import (
    Delegation,
    Group,
    PolicyVersion,
    utcnow,
)


class Governance:
    def __init__(
        self, session: AsyncSession, tasks: TaskService, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.session = session
        self.tasks = tasks
        self.now = now

    # -- policies ---------------------------------------------------------------------

    async def current_policy(self, principal: Principal) -> tuple[int, PolicyDocument]:
        require(principal, Permission.POLICY_READ)
        row = await self.session.scalar(
            select(PolicyVersion).order_by(PolicyVersion.version.desc()).limit(1)
        )
        if row is None:
            return 0, builtin_policy_document()
        return row.version, PolicyDocument.model_validate(row.document)

    async def put_policy(self, principal: Principal, document: PolicyDocument) -> int:
        """Store a new version; its rules are validated by building the policy first."""
        require(principal, Permission.POLICY_WRITE)
        latest = await self.session.scalar(select(func.max(PolicyVersion.version))) or 0
        version = latest + 1
        document.to_policy(version)  # refuses an invalid document before anything is stored
        await self._check_escalation_groups(document)
        self.session.add(
            PolicyVersion(
                version=version,
                document=document.model_dump(mode="json"),
                created_by=principal.id if principal.kind == "human" else None,
            )
        )
        await flush_or_conflict(self.session)
        await audit.append(
            self.session,
            type="policy:updated",
            actor=actor_of(principal),
            subject=f"policy:{version}",
            data={"version": version, "rules": [r.name for r in document.rules]},
        )
        return version

    async def _check_escalation_groups(self, document: PolicyDocument) -> None:
        """An escalation names a group that exists: one that does not would leave the
        escalated slots to no one."""
        wanted = {
            i: rule.on_review_timeout.group
            for i, rule in enumerate(document.rules)
            if isinstance(rule.on_review_timeout, EscalateOnTimeout)
        }
        if not wanted:
            return
        known = set(
            await self.session.scalars(select(Group.name).where(Group.name.in_(wanted.values())))
        )
        for i, group in wanted.items():
            if group not in known:
                raise InvalidInput(
                    f"rule {document.rules[i].name!r} escalates to group {group!r}, which does "
                    "not exist: create it first",
                    field=f"rules[{i}].on_review_timeout.group",
                )

    async def evaluate(
        self,
        principal: Principal,
        task_type: str,
        resources: Sequence[ResourceRef],
        *,
        lines_changed: int = 0,
        call: str | None = None,
    ) -> Routing:
        """The requirement set and the eligible reviewers a task like this would get."""
        require(principal, Permission.POLICY_READ)
        get_executor(task_type)
        if lines_changed < 0:
            raise InvalidInput("lines_changed must not be negative")
        return await self.tasks.route(
            task_type, resources, lines_changed, submitter=str(principal.user_id), call=call
        )

    # -- delegations ------------------------------------------------------------------

    async def create_delegation(
        self,
        principal: Principal,
        *,
        delegate: uuid.UUID,
        valid_from: datetime,
        valid_until: datetime,
        task_types: Sequence[str] = ("*",),
        resource_types: Sequence[ResourceType] = (),
        max_risk: float = 100.0,
    ) -> Delegation:
        """``principal`` consents that ``delegate``'s approvals count as theirs."""
        require(principal, Permission.DELEGATION_WRITE)
        await reviewer_named(self.session, delegate, field="delegate")
        # The pure rule validates scope, window and parties.
        DelegationRule(
            id="new",
            delegator=str(principal.id),
            delegate=str(delegate),
            task_types=tuple(task_types),
            resource_types=frozenset(resource_types),
            max_risk=max_risk,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        row = Delegation(
            delegator_id=principal.id,
            delegate_id=delegate,
            task_types=list(task_types),
            resource_types=[ResourceType(t).value for t in resource_types],
            max_risk=max_risk,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        self.session.add(row)
        await flush_or_conflict(self.session)
        await audit.append(
            self.session,
            type="delegation:created",
            actor=actor_of(principal),
            subject=f"delegation:{row.id}",
            data={
                "delegate": str(delegate),
                "task_types": row.task_types,
                "resource_types": row.resource_types,
                "max_risk": max_risk,
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_until.isoformat(),
            },
        )
        return row

    async def list_delegations(self, principal: Principal) -> list[Delegation]:
        """The delegations the principal gave or received (admins see all)."""
        require(principal, Permission.DELEGATION_READ)
        query = select(Delegation).order_by(Delegation.created_at.desc())
        if principal.role != "admin":
            query = query.where(
                or_(Delegation.delegator_id == principal.id, Delegation.delegate_id == principal.id)
            )
        return list(await self.session.scalars(query))

    async def revoke_delegation(self, principal: Principal, delegation_id: uuid.UUID) -> Delegation:
        require(principal, Permission.DELEGATION_WRITE)
        row = await self.session.get(Delegation, delegation_id)
        if row is None:
            raise NotFound(f"no delegation {delegation_id}")
        if row.delegator_id != principal.id and principal.role != "admin":
            raise Forbidden("only the delegator (or an admin) may revoke a delegation")
        if row.revoked_at is None:
            row.revoked_at = self.now()
            await flush_or_conflict(self.session)
            await audit.append(
                self.session,
                type="delegation:revoked",
                actor=actor_of(principal),
                subject=f"delegation:{row.id}",
                data={},
            )
        return row
