"""Pydantic models for every body the API reads or writes (architecture §8, docs/api.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

from community_ade.approvals.accounting import Accounting, EligibleReviewers
from community_ade.approvals.risk import Action, ResourceRef, ResourceType, RiskScore, Scope
from community_ade.approvals.service import TaskDraft
from community_ade.execution.executors.shell_profile import ShellProfile
from community_ade.execution.shell_profiles import profile_of
from community_ade.storage.models import ShellProfileRow

T = TypeVar("T")

MAX_PAGE = 100_000  # 10 million rows deep at 100 a page: further is a query, not paging
MAX_SEQ = 2**63 - 1  # audit sequence numbers are 64-bit


def _representable_in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_representable_in_utc)]


class Problem(BaseModel):
    """An error (RFC 9457), served as ``application/problem+json``; ``type`` is stable."""

    type: str
    title: str
    status: int
    detail: str


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    limit: int
    total: int
    total_is_capped: bool = Field(
        default=False, description="True when there are more than ``total`` items."
    )


class ResourceRefModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ResourceType
    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    scope: Scope = Scope.NAMESPACE
    namespace: str | None = Field(default=None, max_length=200)
    actions: list[Action] = Field(default_factory=lambda: [Action.READ], min_length=1)

    def to_domain(self) -> ResourceRef:
        return ResourceRef(
            type=self.type,
            id=self.id,
            name=self.name,
            scope=self.scope,
            namespace=self.namespace,
            actions=tuple(self.actions),
        )


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100, examples=["files.write"])
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=20_000)
    payload: dict[str, Any] = Field(default_factory=dict)
    resources: list[ResourceRefModel] = Field(default_factory=list, max_length=100)
    priority: int = Field(default=100, ge=0, le=1000, description="Lower runs first.")

    def draft(self) -> TaskDraft:
        """The service's draft of this body (the REST API and the MCP server share it)."""
        return TaskDraft(
            type=self.type,
            title=self.title,
            description=self.description,
            payload=self.payload,
            resources=[r.to_domain() for r in self.resources],
            priority=self.priority,
        )


class TaskUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=20_000)
    payload: dict[str, Any] | None = None
    resources: list[ResourceRefModel] | None = Field(default=None, max_length=100)
    priority: int | None = Field(default=None, ge=0, le=1000)


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    type: str
    title: str
    description: str
    payload: dict[str, Any]
    resources: list[dict[str, Any]]
    priority: int
    state: str
    version: int
    submitter_id: uuid.UUID
    agent_id: uuid.UUID | None
    preview_digest: str | None
    risk_score: float | None
    risk_inputs: dict[str, Any] | None
    requirements: dict[str, Any] | None
    policy_version: int | None
    review_deadline: datetime | None
    approval_deadline: datetime | None
    # The review clocks (docs/policies.md §6).
    next_reminder_at: datetime | None = Field(
        default=None, description="When the next reminder falls, while under review."
    )
    reminders_sent: int = Field(default=0, description="Reminders sent in this review window.")
    escalated_at: datetime | None = Field(
        default=None, description="When the review timed out and escalated (once per round)."
    )
    re_reviewed_at: datetime | None = Field(
        default=None, description="When the approval timed out and went back to review (once)."
    )
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    decided_at: datetime | None
    # The execution record (docs/execution.md).
    fence: int | None = Field(description="Fencing token of the lock grant of the last apply.")
    attempts: int = Field(description="Applies begun so far (retries included).")
    result: dict[str, Any] | None = Field(description="What the apply did, or its error.")
    rollback_outcome: str | None = Field(
        description="rolled_back, rollback_failed, nothing_to_roll_back or unknown, after a "
        "failure."
    )
    last_error: str | None
    worker_id: str | None
    apply_requested_at: datetime | None
    apply_started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


class TaskTypeOut(BaseModel):
    type: str
    description: str
    applied_by: Literal["worker", "agent"] = Field(
        description="worker: `ade worker` applies an approved task; agent: the agent that "
        "proposed it claims and applies it (POST /tasks/{id}/claim)."
    )
    payload_schema: dict[str, Any] | None = Field(
        description="JSON Schema of the payload; null when the executor publishes none."
    )


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


class PreviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    digest: str
    format: str
    content: str
    precondition_fingerprint: str
    lines_changed: int


class RiskOut(BaseModel):
    total: float
    level: str
    criticality: float
    magnitude: float
    blast_radius: float
    failure_rate: float

    @classmethod
    def of(cls, risk: RiskScore) -> RiskOut:
        i = risk.inputs
        return cls(
            total=risk.total,
            level=risk.level.value,
            criticality=i.criticality,
            magnitude=i.magnitude,
            blast_radius=i.blast_radius,
            failure_rate=i.failure_rate,
        )


class ReviewersOut(BaseModel):
    """Who may fill the slots: by required group, the general slots, and what no one can."""

    by_group: dict[str, list[str]]
    any_slot: list[str]
    shortfalls: list[str]

    @classmethod
    def of(cls, reviewers: EligibleReviewers) -> ReviewersOut:
        return cls(
            by_group={g: list(users) for g, users in reviewers.by_group},
            any_slot=list(reviewers.any_slot),
            shortfalls=list(reviewers.shortfalls),
        )


class SubmitOut(BaseModel):
    task: TaskOut
    preview_digest: str
    summary: str
    risk: RiskOut
    requirements: dict[str, Any]
    eligible_reviewers: ReviewersOut
    auto_approved: bool


class SlotFillOut(BaseModel):
    slot: str
    actor: str
    counted_as: str
    via_delegation: bool


class AccountingOut(BaseModel):
    satisfied: bool
    vetoed: bool
    approvals: int
    needed: int
    fills: list[SlotFillOut]
    open_slots: list[str]
    blocked_by: list[str]
    ignored: list[dict[str, str]]

    @classmethod
    def of(cls, accounting: Accounting) -> AccountingOut:
        return cls(
            satisfied=accounting.satisfied,
            vetoed=accounting.vetoed,
            approvals=accounting.approvals,
            needed=accounting.needed,
            fills=[
                SlotFillOut(
                    slot=f.slot.label,
                    actor=f.vote.actor,
                    counted_as=f.counted_as,
                    via_delegation=f.via_delegation,
                )
                for f in accounting.fills
            ],
            open_slots=[s.label for s in accounting.open_slots],
            blocked_by=list(accounting.blocked_by),
            ignored=[{"actor": i.vote.actor, "reason": i.reason} for i in accounting.ignored],
        )


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    actor_id: uuid.UUID
    decision: str
    digest: str
    via_delegation_for: uuid.UUID | None
    delegate_to: uuid.UUID | None
    comment: str
    stale: bool
    created_at: datetime
    surface: str | None = Field(
        default=None,
        description="Where it was decided (api, dashboard, email, slack, demo), as the "
        "decision's audit event records it; null for decisions logged before surfaces "
        "were recorded, and where not looked up (a decision's own answer).",
    )


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digest: str = Field(
        min_length=64, max_length=64, description="The preview digest the reviewer saw."
    )
    comment: str = Field(default="", max_length=5000)


class DelegateBody(DecisionBody):
    delegate_to: uuid.UUID


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID
    action: Literal["approve", "reject"]
    digest: str = Field(min_length=64, max_length=64)
    comment: str = Field(default="", max_length=5000)


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(min_length=1, max_length=100)


class BatchResult(BaseModel):
    task_id: uuid.UUID
    result: str = Field(description="ok, or the problem type that refused this item")
    state: str | None = None
    detail: str | None = None


class BatchOut(BaseModel):
    results: list[BatchResult]


class DecisionOut(BaseModel):
    task: TaskOut
    review: ReviewOut
    delegated_for: list[str]
    accounting: AccountingOut | None
    repeated: bool


class ClockDecisionOut(BaseModel):
    """The latest decision the sweep took on a timeout, by actor ``system``."""

    event: str = Field(description="The audit event, e.g. approval:rejected.")
    outcome: str = Field(description="expire, reject, escalate, auto_approve or re_review.")
    reason: str
    rule: str | None = Field(description="The policy rule that set the outcome; null: default.")
    policy_version: int | None
    at: datetime


class ApprovalOut(BaseModel):
    task: TaskOut
    accounting: AccountingOut | None
    reviews: list[ReviewOut]
    timeout_decision: ClockDecisionOut | None = None


class EvaluateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100)
    resources: list[ResourceRefModel] = Field(default_factory=list, max_length=100)
    lines_changed: int = Field(default=0, ge=0, le=10_000_000)
    call: str | None = Field(
        default=None,
        max_length=200,
        description="For an `agent.call`: the function it calls (rules' `calls` match it).",
    )


class EvaluateOut(BaseModel):
    risk: RiskOut
    requirements: dict[str, Any]
    eligible_reviewers: ReviewersOut


class PolicyOut(BaseModel):
    version: int
    document: dict[str, Any]


class DelegationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delegate: uuid.UUID
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    task_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=50)
    resource_types: list[ResourceType] = Field(default_factory=list)
    max_risk: float = Field(default=100.0, ge=0, le=100)


class DelegationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    delegator_id: uuid.UUID
    delegate_id: uuid.UUID
    task_types: list[str]
    resource_types: list[str]
    max_risk: float
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None
    created_at: datetime


class AuditEventOut(BaseModel):
    seq: int
    ts: datetime
    type: str
    actor: dict[str, Any]
    subject: str
    data: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_before_seq: int | None


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str | None


SortBy = Literal["created_at", "updated_at", "risk_score", "state"]
SortOrder = Literal["asc", "desc"]


class SecretPut(BaseModel):
    """A secret's value (never returned by any route) and what it is for."""

    model_config = ConfigDict(extra="forbid")

    value: SecretStr = Field(description="The value, 8 to 16384 characters; write-only.")
    description: str | None = Field(
        default=None, max_length=500, description="What it is for; omitted: kept as it is."
    )


class SecretOut(BaseModel):
    """What anyone may know about a secret: never its value."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    created_by: uuid.UUID | None = Field(description="None: stored with `ade secrets set`.")
    updated_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None = Field(description="When an apply last sent it.")


class ShellProfileOut(BaseModel):
    """A stored shell profile: its name, how often it was saved, and the profile."""

    name: str
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: uuid.UUID | None
    profile: ShellProfile

    @classmethod
    def of(cls, row: ShellProfileRow) -> ShellProfileOut:
        return cls(
            name=row.name,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
            profile=profile_of(row),
        )
