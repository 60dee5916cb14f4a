"""Task use cases over storage: create, edit, read, list, submit, cancel.

Every state change goes through ``_move``: the pure table decides whether the edge exists,
the row's version is checked and bumped by the UPDATE (optimistic concurrency, with the
row locked on PostgreSQL), and the audit event is appended in the same transaction. The
worker's two hot transitions use ``move_if``, the same edge as one compare-and-set
``UPDATE … RETURNING`` without reading the row first. The service flushes; the caller
(one request, one CLI command) commits or rolls back.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from community_ade.approvals.accounting import EligibleReviewers, eligible_reviewers
from community_ade.approvals.policy import (
    GroupRequirement,
    Policy,
    Requirements,
    compute_requirements,
)
from community_ade.approvals.policy_document import PolicyDocument, builtin_policy_document
from community_ade.approvals.risk import ResourceRef, RiskScore, score_task
from community_ade.approvals.states import TaskState, Trigger, next_state
from community_ade.approvals.timeouts import (
    clocks_document,
    clocks_from_document,
    first_reminder_at,
)
from community_ade.audit import log as audit
from community_ade.audit.chain import SYSTEM, Actor
from community_ade.auth.principal import Permission, Principal, require
from community_ade.errors import Conflict, Forbidden, InvalidInput, InvalidTransition, NotFound
from community_ade.execution.dispatch import enqueue_after_commit
from community_ade.execution.executors import get_executor
from community_ade.execution.executors.agent_call import TASK_TYPE as AGENT_CALL
from community_ade.execution.executors.base import FieldError, Plan, PlanContext, invalid
from community_ade.execution.rules import check_lockable
from community_ade.secrets.references import UsesSecrets
from community_ade.secrets.store import known_names
from community_ade.storage.models import (
    Agent,
    Group,
    GroupMember,
    PolicyVersion,
    Preview,
    Review,
    Task,
    TaskReviewGroup,
    User,
    utcnow,
)

SortField = Literal["created_at", "updated_at", "risk_score", "state"]
FAILURE_WINDOW = 50


@dataclass(frozen=True)
class TaskDraft:
    type: str
    title: str
    description: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    resources: Sequence[ResourceRef] = ()
    priority: int = 100


@dataclass(frozen=True)
class TaskChanges:
    """Fields to change on a DRAFT task; None leaves a field as it is."""

    title: str | None = None
    description: str | None = None
    payload: Mapping[str, Any] | None = None
    resources: Sequence[ResourceRef] | None = None
    priority: int | None = None


@dataclass(frozen=True)
class Routing:
    """Where a task goes: its risk, the requirements the policy in force sets for it,
    and who may fill them."""

    risk: RiskScore
    requirements: Requirements
    reviewers: EligibleReviewers


@dataclass(frozen=True)
class Submission:
    task: Task
    plan: Plan
    risk: RiskScore
    requirements: Requirements
    reviewers: EligibleReviewers

    @property
    def auto_approved(self) -> bool:
        return self.task.state == TaskState.APPROVED


def resource_document(ref: ResourceRef) -> dict[str, Any]:
    return {
        "type": ref.type.value,
        "id": ref.id,
        "name": ref.name,
        "scope": ref.scope.value,
        "namespace": ref.namespace,
        "actions": [a.value for a in ref.actions],
    }


def requirements_document(req: Requirements) -> dict[str, Any]:
    """What submit answers and stores: which rules matched and what is needed."""
    return {
        "policy_version": req.policy_version,
        "risk": req.risk,
        "auto_approve_threshold": req.auto_approve_threshold,
        "matched_rules": list(req.matched_rules),
        "groups": [{"group": g.group, "count": g.count} for g in req.groups],
        "quorum": req.quorum,
        "min_total": req.min_total,
        "approvals_needed": req.approvals_needed,
        "review_ttl_seconds": int(req.review_ttl.total_seconds()),
        "approval_ttl_seconds": int(req.approval_ttl.total_seconds()),
        "auto_approve": req.auto_approve,
        "auto_apply": req.auto_apply,
        "fresh_auth_seconds": _seconds(req.fresh_auth),
        **clocks_document(req.clocks),
        "escalated_to": req.escalated_to,
    }


def _seconds(duration: timedelta | None) -> int | None:
    return None if duration is None else int(duration.total_seconds())


def requirements_from_document(doc: Mapping[str, Any], task_type: str) -> Requirements:
    """The inverse of ``requirements_document``: a task's stored requirements."""
    return Requirements(
        policy_version=int(doc["policy_version"]),
        task_type=task_type,
        risk=float(doc["risk"]),
        matched_rules=tuple(doc["matched_rules"]),
        groups=tuple(GroupRequirement(g["group"], int(g["count"])) for g in doc["groups"]),
        quorum=int(doc["quorum"]),
        min_total=int(doc["min_total"]),
        review_ttl=timedelta(seconds=int(doc["review_ttl_seconds"])),
        approval_ttl=timedelta(seconds=int(doc["approval_ttl_seconds"])),
        auto_approve_threshold=doc.get("auto_approve_threshold"),
        auto_approve=bool(doc["auto_approve"]),
        auto_apply=bool(doc["auto_apply"]),
        fresh_auth=_duration(doc.get("fresh_auth_seconds")),
        clocks=clocks_from_document(doc),
        escalated_to=doc.get("escalated_to"),
    )


def _duration(seconds: int | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=int(seconds))


def _auto_reason(requirements: Requirements) -> dict[str, Any]:
    return {
        "policy_version": requirements.policy_version,
        "reason": f"risk {requirements.risk} below the auto-approve threshold "
        f"{requirements.auto_approve_threshold}",
    }


def _check_text(name: str, value: str, limit: int) -> None:
    if not value.strip() or len(value) > limit:
        raise InvalidInput(f"{name} must be 1-{limit} characters")


def _check_priority(priority: int) -> None:
    if not 0 <= priority <= 1000:
        raise InvalidInput("priority must be between 0 and 1000 (lower runs first)")


class TaskService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        plan_context: PlanContext,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = session
        self.plan_context = plan_context
        self.now = now

    # -- reading ----------------------------------------------------------------------

    async def get(self, principal: Principal, task_id: uuid.UUID) -> Task:
        require(principal, Permission.TASK_READ)
        task = await self.session.get(Task, task_id)
        if task is None:
            raise NotFound(f"no task {task_id}")
        return task

    async def list_tasks(
        self,
        principal: Principal,
        *,
        state: TaskState | None = None,
        task_type: str | None = None,
        page: int = 1,
        limit: int = 20,
        sort_by: SortField = "created_at",
        sort_order: Literal["asc", "desc"] = "desc",
    ) -> tuple[list[Task], int]:
        """One page of tasks and the total that match."""
        require(principal, Permission.TASK_READ)
        if page < 1 or not 1 <= limit <= 100:
            raise InvalidInput("page must be >= 1 and limit between 1 and 100")
        query = select(Task)
        if state is not None:
            query = query.where(Task.state == state.value)
        if task_type is not None:
            query = query.where(Task.type == task_type)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        column = getattr(Task, sort_by)
        order = column.asc() if sort_order == "asc" else column.desc()
        rows = await self.session.scalars(
            query.order_by(order, Task.id).offset((page - 1) * limit).limit(limit)
        )
        return list(rows), int(total or 0)

    # -- drafting ---------------------------------------------------------------------

    async def create(self, principal: Principal, draft: TaskDraft) -> Task:
        require(principal, Permission.TASK_WRITE)
        executor = get_executor(draft.type)  # an unknown type is refused now, not at submit
        _check_text("title", draft.title, 300)
        await self._check_secrets(draft.type, draft.payload)
        _check_priority(draft.priority)
        is_agent = principal.kind == "agent"
        if is_agent:
            await self._check_agent_may_create(principal, draft.type)
        executor.validate(draft.payload).raise_if_invalid(draft.type)
        resources = [resource_document(r) for r in draft.resources]
        check_lockable(resources)
        task = Task(
            type=draft.type,
            title=draft.title.strip(),
            description=draft.description,
            payload=dict(draft.payload),
            resources=resources,
            priority=draft.priority,
            submitter_id=principal.owner_id if is_agent else principal.id,
            agent_id=principal.id if is_agent else None,
        )
        self.session.add(task)
        await self.session.flush()
        await self._audit("task:created", principal, task, {"type": task.type, "title": task.title})
        return task

    async def _check_secrets(self, task_type: str, payload: Mapping[str, Any]) -> None:
        """A payload stores no credential inline and refers only to secrets that exist
        (``validation_failed`` naming each field); before anything is stored, because a
        draft is readable by every viewer."""
        executor = get_executor(task_type)
        if not isinstance(executor, UsesSecrets):
            return
        use = executor.secret_use(payload)
        known = await known_names(self.session, use.names)
        errors = list(use.problems) + [
            FieldError(
                where,
                f"refers to the secret {ref.name!r}, which does not exist: an admin stores it "
                f"with `ade secrets set {ref.name}` (GET /api/v1/secrets lists them)",
            )
            for where, ref in use.references
            if ref.name not in known
        ]
        if errors:
            raise invalid(task_type, errors)

    async def _check_agent_may_create(self, principal: Principal, task_type: str) -> None:
        """An agent configured with allowed task types creates only those (none: any)."""
        allowed = await self.session.scalar(
            select(Agent.allowed_task_types).where(Agent.id == principal.id)
        )
        if allowed and task_type not in allowed:
            raise Forbidden(
                f"agent {principal.name} may not create {task_type} tasks; its allowed task "
                f"types are {', '.join(allowed)}",
                task_type=task_type,
                allowed_task_types=list(allowed),
            )

    async def update(self, principal: Principal, task_id: uuid.UUID, changes: TaskChanges) -> Task:
        task = await self._owned(principal, task_id)
        if task.state != TaskState.DRAFT:
            raise Conflict(f"only a DRAFT task can be edited; this one is {task.state}")
        if changes.title is not None:
            _check_text("title", changes.title, 300)
            task.title = changes.title.strip()
        if changes.description is not None:
            task.description = changes.description
        if changes.payload is not None:
            get_executor(task.type).validate(changes.payload).raise_if_invalid(task.type)
            await self._check_secrets(task.type, changes.payload)
            task.payload = dict(changes.payload)
        if changes.resources is not None:
            resources = [resource_document(r) for r in changes.resources]
            check_lockable(resources)
            task.resources = resources
        if changes.priority is not None:
            _check_priority(changes.priority)
            task.priority = changes.priority
        await self._flush()
        await self._audit("task:updated", principal, task, {"version": task.version})
        return task

    # -- transitions ------------------------------------------------------------------

    async def submit(self, principal: Principal, task_id: uuid.UUID) -> Submission:
        """Validate, preview (no side effects), score, route; or auto-approve by policy.

        A task that fails validation or whose preview cannot be computed stays DRAFT and
        the error (``validation_failed``) carries the report.
        """
        task = await self._owned(principal, task_id, lock=True)
        next_state(TaskState(task.state), Trigger.SUBMIT)  # refuse early, before planning
        executor = get_executor(task.type)
        executor.validate(task.payload).raise_if_invalid(task.type)
        check_lockable(task.resources)  # a draft written before this check existed
        await self._check_secrets(task.type, task.payload)
        plan = await executor.plan(task.payload, self.plan_context)
        routing = await self._take_preview(task, plan, principal.owner_id)
        risk, requirements = routing.risk, routing.requirements
        now = self.now()
        submitted = {"digest": plan.digest, "risk": risk.total, "summary": plan.summary}
        if requirements.auto_approve:
            task.approval_deadline = requirements.approval_deadline(now)
            task.decided_at = now
            await self._move(
                task, Trigger.AUTO_APPROVE, actor_of(principal), "task:submitted", submitted
            )
            await self._auto_approved(task, requirements)
        else:
            await self._request_review(
                task, Trigger.SUBMIT, actor_of(principal), "task:submitted", submitted
            )
        return Submission(task, plan, risk, requirements, routing.reviewers)

    async def request_apply(self, principal: Principal, task_id: uuid.UUID) -> Task:
        """Ask for an APPROVED task to be applied (needed when its type's policy says
        ``apply: manual``; harmless otherwise). Its submitter or an admin may ask."""
        task = await self._owned(principal, task_id, lock=True)
        if task.state != TaskState.APPROVED:
            raise InvalidTransition(
                f"only an APPROVED task can be applied; this one is {task.state}",
                state=task.state,
            )
        first = task.apply_requested_at is None
        if first:
            task.apply_requested_at = self.now()
            await self._flush()
            await self._audit("task:apply_requested", principal, task, {})
        enqueue_after_commit(self.session, task)  # again on a repeat: the queue dedupes
        return task

    async def preconditions_moved(self, task: Task, plan: Plan) -> Routing:
        """At apply, the world no longer matches the approved preview: store the new
        ``plan`` as the task's preview and route it again, APPROVED → SUBMITTED. Votes on
        the old digest go stale. When the policy auto-approves the new preview, the system
        approves it at once (as submit would have), and it is queued again."""
        old_digest = task.preview_digest
        agent_owner = None
        if task.agent_id is not None:
            agent = await self.session.get(Agent, task.agent_id)
            agent_owner = agent.owner_id if agent is not None else None
        routing = await self._take_preview(task, plan, agent_owner)
        await self.session.execute(
            update(Review).where(Review.task_id == task.id).values(stale=True)
        )
        data = {"old_digest": old_digest, "digest": plan.digest, "summary": plan.summary}
        requirements = routing.requirements
        if not requirements.auto_approve:
            await self._request_review(
                task, Trigger.PRECONDITIONS_MOVED, SYSTEM, "task:preconditions_moved", data
            )
            return routing
        await self._move(
            task, Trigger.PRECONDITIONS_MOVED, SYSTEM, "task:preconditions_moved", data
        )
        now = self.now()
        task.approval_deadline = requirements.approval_deadline(now)
        task.decided_at = now
        await self._move(
            task, Trigger.REQUIREMENTS_MET, SYSTEM, "approval:approved", _auto_reason(requirements)
        )
        if requirements.auto_apply:
            enqueue_after_commit(self.session, task)
        return routing

    async def _take_preview(self, task: Task, plan: Plan, agent_owner: uuid.UUID | None) -> Routing:
        """Store ``plan`` as the task's preview and score and route it by the policy in
        force (submit, and again when preconditions moved)."""
        routing = await self.route(
            task.type,
            [ResourceRef(**r) for r in task.resources],
            plan.lines_changed,
            submitter=str(task.submitter_id),
            agent_owner=str(agent_owner) if agent_owner else None,
            call=called_function(task.type, task.payload),
        )
        risk, requirements = routing.risk, routing.requirements
        # A new preview is a new round: routed afresh (any escalation is gone from the
        # requirements), so the once-only timeout outcomes are available again.
        task.escalated_at = task.re_reviewed_at = None
        # Never previewed before: no preview row or reviewer groups to look for.
        first = task.submitted_at is None
        await self._store_preview(task, plan, first=first)
        task.preview_digest = plan.digest
        task.precondition_fingerprint = plan.precondition_fingerprint
        task.risk_score = risk.total
        task.risk_inputs = dataclasses.asdict(risk.inputs) | {"level": risk.level.value}
        task.requirements = requirements_document(requirements)
        task.policy_version = requirements.policy_version
        await self._set_reviewers(task, requirements, first=first)
        task.submitted_at = self.now()
        return routing

    async def _request_review(
        self, task: Task, trigger: Trigger, actor: Actor, event: str, data: Mapping[str, Any]
    ) -> None:
        requirements = requirements_from_document(task.requirements or {}, task.type)
        opened = task.submitted_at or self.now()
        deadline = requirements.review_deadline(opened)
        open_review_window(task, requirements, opened, deadline)
        await self._move(task, trigger, actor, event, data)
        await audit.append(
            self.session,
            type="approval:requested",
            actor=SYSTEM,
            subject=f"task:{task.id}",
            data={"requirements": task.requirements, "deadline": deadline.isoformat()},
        )

    async def _auto_approved(self, task: Task, requirements: Requirements) -> None:
        await audit.append(
            self.session,
            type="approval:approved",
            actor=SYSTEM,
            subject=f"task:{task.id}",
            data=_auto_reason(requirements),
        )
        if requirements.auto_apply:
            enqueue_after_commit(self.session, task)

    async def cancel(self, principal: Principal, task_id: uuid.UUID, reason: str) -> Task:
        task = await self._owned(principal, task_id, lock=True)
        _check_text("reason", reason, 1000)
        await self._move(
            task, Trigger.CANCEL, actor_of(principal), "task:cancelled", {"reason": reason}
        )
        return task

    async def route(
        self,
        task_type: str,
        resources: Sequence[ResourceRef],
        lines_changed: int,
        *,
        submitter: str,
        agent_owner: str | None = None,
        call: str | None = None,
    ) -> Routing:
        """Score a task and route it by the policy in force (submit and evaluate)."""
        risk = score_task(resources, lines_changed, await self.recent_failures(task_type))
        requirements = compute_requirements(await self.policy(), task_type, resources, risk, call)
        groups, roles = await directory(self.session)
        reviewers = eligible_reviewers(
            requirements, groups, roles, submitter=submitter, agent_owner=agent_owner
        )
        return Routing(risk, requirements, reviewers)

    async def policy(self) -> Policy:
        """The policy in force: the newest stored version, else the built-in version 0."""
        row = (
            await self.session.execute(
                select(PolicyVersion.version, PolicyVersion.document)
                .order_by(PolicyVersion.version.desc())
                .limit(1)
            )
        ).first()
        if row is None:
            return _builtin_policy()
        return _parsed_policy(row.version, row.document)

    # -- plumbing ---------------------------------------------------------------------

    async def _owned(self, principal: Principal, task_id: uuid.UUID, *, lock: bool = False) -> Task:
        require(principal, Permission.TASK_WRITE)
        query = select(Task).where(Task.id == task_id)
        task = await self.session.scalar(query.with_for_update() if lock else query)
        if task is None:
            raise NotFound(f"no task {task_id}")
        mine = principal.id in (task.submitter_id, task.agent_id)
        if not mine and principal.role != "admin":
            raise Forbidden("only the task's submitter (or an admin) may change it")
        return task

    async def _move(
        self, task: Task, trigger: Trigger, actor: Actor, event: str, data: Mapping[str, Any]
    ) -> None:
        await move(self.session, task, trigger, actor, event, data)

    async def _flush(self) -> None:
        await flush_or_conflict(self.session)

    async def _audit(
        self, event: str, principal: Principal, task: Task, data: Mapping[str, Any]
    ) -> None:
        await audit.append(
            self.session,
            type=event,
            actor=actor_of(principal),
            subject=f"task:{task.id}",
            data=data,
        )

    async def _store_preview(self, task: Task, plan: Plan, *, first: bool) -> None:
        existing = None
        if not first:
            existing = await self.session.scalar(
                select(Preview.id).where(Preview.task_id == task.id, Preview.digest == plan.digest)
            )
        if existing is None:
            self.session.add(
                Preview(
                    task_id=task.id,
                    digest=plan.digest,
                    format=plan.format,
                    content=plan.preview,
                    precondition_fingerprint=plan.precondition_fingerprint,
                    lines_changed=plan.lines_changed,
                )
            )

    async def _set_reviewers(self, task: Task, requirements: Requirements, *, first: bool) -> None:
        """Denormalise who may review (see ``Task.review_any``) for the review queue."""
        task.review_any = requirements.general_slots > 0
        if not first:
            await self.session.execute(
                delete(TaskReviewGroup).where(TaskReviewGroup.task_id == task.id)
            )
        self.session.add_all(
            TaskReviewGroup(task_id=task.id, group_name=g.group) for g in requirements.groups
        )

    async def recent_failures(self, task_type: str) -> list[bool]:
        """Outcomes of the last applies of this type, oldest first (True = failed)."""
        states = await self.session.scalars(
            select(Task.state)
            .where(Task.type == task_type, Task.state.in_(("COMPLETED", "FAILED")))
            .order_by(Task.decided_at.desc())
            .limit(FAILURE_WINDOW)
        )
        return [state == "FAILED" for state in reversed(list(states))]


# The policy last parsed, by version and document: every submit reads the policy in force,
# and validating its document again each time cost more than the rest of the routing.
# Compared by value, so another database with the same version number is not confused.
_last_policy: tuple[int, dict[str, Any], Policy] | None = None


def called_function(task_type: str, payload: Mapping[str, Any]) -> str | None:
    """The function an ``agent.call`` task calls, which policy rules' ``calls`` match."""
    function = payload.get("function") if task_type == AGENT_CALL else None
    return function if isinstance(function, str) else None


@functools.cache
def _builtin_policy() -> Policy:
    return builtin_policy_document().to_policy(0)


def _parsed_policy(version: int, document: dict[str, Any]) -> Policy:
    global _last_policy
    if _last_policy is not None and _last_policy[:2] == (version, document):
        return _last_policy[2]
    policy = PolicyDocument.model_validate(document).to_policy(version)
    _last_policy = (version, copy.deepcopy(document), policy)
    return policy


async def directory(
    session: AsyncSession, users: Iterable[str] | None = None
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Groups and roles as the pure policy code expects them: of ``users`` (ids), or of
    every enabled user when None. A disabled user keeps their groups but has no role."""
    ids = None if users is None else [uuid.UUID(u) for u in set(users)]
    if ids == []:
        return {}, {}
    # One query (users, outer-joined to their groups): routing reads it at every submit.
    query = (
        select(User.id, User.role, User.disabled_at, Group.name)
        .outerjoin(GroupMember, GroupMember.user_id == User.id)
        .outerjoin(Group, Group.id == GroupMember.group_id)
    )
    if ids is None:
        query = query.where(User.disabled_at.is_(None))
    else:
        query = query.where(User.id.in_(ids))
    roles: dict[str, set[str]] = {}
    groups: dict[str, set[str]] = {} if ids is None else {str(i): set() for i in ids}
    for uid, role, disabled_at, group in await session.execute(query):
        if disabled_at is None:
            roles[str(uid)] = {role}
        names = groups.setdefault(str(uid), set())
        if group is not None:
            names.add(group)
    return groups, roles


def open_review_window(
    task: Task, requirements: Requirements, opened: datetime, deadline: datetime
) -> None:
    """Start a review window: its deadline, and its reminders from the first."""
    task.review_opened_at = opened
    task.review_deadline = deadline
    task.reminders_sent = 0
    task.next_reminder_at = first_reminder_at(opened, deadline, requirements.clocks.reminders)


async def move(
    session: AsyncSession,
    task: Task,
    trigger: Trigger,
    actor: Actor,
    event: str,
    data: Mapping[str, Any],
) -> None:
    """Take the table's edge for ``trigger`` (or refuse it), bump the row's version and
    append the audit event, all in the caller's transaction: every state change of a task
    goes through here."""
    before = TaskState(task.state)
    after = next_state(before, trigger)
    task.state = after.value
    await flush_or_conflict(session)
    await _audit_move(session, task.id, before, after, trigger, actor, event, data)


async def move_if(
    session: AsyncSession,
    task_id: uuid.UUID,
    expected: TaskState,
    trigger: Trigger,
    actor: Actor,
    event: str,
    data: Mapping[str, Any],
    *,
    where: Iterable[ColumnElement[bool]] = (),
    values: Mapping[str, Any],
) -> Task | None:
    """The compare-and-set form of ``move``, for the worker's hot path: one
    ``UPDATE … WHERE state = expected AND <where> … RETURNING`` takes the table's edge
    for ``trigger`` and sets ``values`` only while the row is still as the caller saw it
    (no read and row lock first); None, changing nothing, when it is not. The audit event
    is appended as ``move`` does, in the caller's transaction."""
    after = next_state(expected, trigger)
    task: Task | None = await session.scalar(
        update(Task)
        .where(Task.id == task_id, Task.state == expected.value, *where)
        .values(**values, state=after.value, version=Task.version + 1)
        .returning(Task)
        # The row comes back by RETURNING: nothing in the session to synchronise.
        .execution_options(synchronize_session=False)
    )
    if task is None:
        return None
    await _audit_move(session, task.id, expected, after, trigger, actor, event, data)
    return task


async def _audit_move(
    session: AsyncSession,
    task_id: uuid.UUID,
    before: TaskState,
    after: TaskState,
    trigger: Trigger,
    actor: Actor,
    event: str,
    data: Mapping[str, Any],
) -> None:
    """The audit event of one state change: the caller's data plus from, to, trigger."""
    await audit.append(
        session,
        type=event,
        actor=actor,
        subject=f"task:{task_id}",
        data={**data, "from": before.value, "to": after.value, "trigger": trigger.value},
    )


async def flush_or_conflict(session: AsyncSession) -> None:
    """Flush; a task row changed by someone else since it was read is a ``Conflict``."""
    try:
        await session.flush()
    except StaleDataError:
        raise Conflict("the task changed meanwhile; reload it and try again") from None


def actor_of(principal: Principal) -> Actor:
    """The audit actor for a principal."""
    return Actor(kind="agent" if principal.kind == "agent" else "human", id=str(principal.id))
