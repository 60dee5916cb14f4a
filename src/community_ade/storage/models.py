"""The system of record (architecture §2): SQLAlchemy 2 models, one module for every table so
that migrations and the schema stay easy to compare.

Portable across PostgreSQL and SQLite: UUIDs via ``Uuid``, JSON via ``JSON`` (JSONB on
PostgreSQL), timestamps timezone-aware. Services flush; the caller of a unit of work
commits (one transaction per state transition, with its audit row).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware values")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


Timestamp = UtcDateTime()

ROLES = ("admin", "reviewer", "submitter", "viewer")
DECISIONS = ("approve", "reject", "request_changes", "delegate")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: Json, list[Any]: Json}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES}", name="role"),
        UniqueConstraint("oidc_issuer", "oidc_subject"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # Where notifications reach the user, and how a chat account (Slack) is matched to
    # them; stored lower-case, so unique regardless of how it was typed.
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Signed in through OpenID Connect: the identity provider's issuer and the user's
    # ``sub`` there (the name may change at the provider; this pair never does).
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Agent(Base):
    """An agent: its identity, its owner and its current configuration (architecture §9).

    The configuration columns hold the newest version; ``agent_versions`` keeps every
    version. A deleted agent keeps its row (``deleted_at``), its name and its history."""

    __tablename__ = "agents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    tags: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    model: Mapped[str] = mapped_column(String(100), default="", server_default="")
    system_prompt: Mapped[str] = mapped_column(Text, default="", server_default="")
    tools: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    capacity: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    allowed_task_types: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    config_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class AgentVersion(Base):
    """One version of an agent's configuration, whole (``config``), as it was saved."""

    __tablename__ = "agent_versions"

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    config: Mapped[dict[str, Any]] = mapped_column()
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class CatalogueModel(Base):
    """A model the wizard offers; ``context_window`` bounds an agent's token parameters."""

    __tablename__ = "catalogue_models"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(100))
    context_window: Mapped[int] = mapped_column(Integer)


class CatalogueTool(Base):
    """A tool the wizard offers, grouped by ``category``; base tools are on by default."""

    __tablename__ = "catalogue_tools"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    base: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiToken(Base):
    """A bearer token, shown once and stored as a hash; it belongs to a user or an agent."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("(user_id IS NULL) <> (agent_id IS NULL)", name="one_owner"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Space-separated ``TokenScope`` values; NULL: every right of the holder.
    scopes: Mapped[str | None] = mapped_column(String(100))
    # Dashboard sessions: when the person authenticated (step-up checks its age).
    auth_time: Mapped[datetime | None] = mapped_column(Timestamp)


class ShellProfileRow(Base):
    """An admin's shell profile: the commands a shell task may run, as argv templates
    with typed parameters (``execution.executors.shell_profile.ShellProfile``, stored as
    its JSON ``document``). ``version`` counts saves."""

    __tablename__ = "shell_profiles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column()
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_state_created_at", "state", "created_at"),
        Index("ix_tasks_state_risk_score", "state", "risk_score"),
        Index("ix_tasks_state_submitted_at", "state", "submitted_at"),
        # The review queue walks only open tasks, in submission order.
        Index(
            "ix_tasks_open_by_submitted_at",
            "submitted_at",
            "id",
            postgresql_include=["review_any", "submitter_id", "agent_id"],
            postgresql_where=text("state IN ('SUBMITTED', 'REVIEWING')"),
            sqlite_where=text("state IN ('SUBMITTED', 'REVIEWING')"),
        ),
        # Risk's failure rate reads the newest finished applies of one type.
        Index(
            "ix_tasks_finished_by_type",
            "type",
            "decided_at",
            postgresql_where=text("state IN ('COMPLETED', 'FAILED')"),
            sqlite_where=text("state IN ('COMPLETED', 'FAILED')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(100), index=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    resources: Mapped[list[Any]] = mapped_column(default=list)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    state: Mapped[str] = mapped_column(String(16), default="DRAFT")
    # Optimistic concurrency: every transition checks and bumps it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    submitter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"), index=True)
    preview_digest: Mapped[str | None] = mapped_column(String(64))
    precondition_fingerprint: Mapped[str | None] = mapped_column(String(256))
    risk_score: Mapped[float | None] = mapped_column(Float)
    risk_inputs: Mapped[dict[str, Any] | None] = mapped_column(Json)
    requirements: Mapped[dict[str, Any] | None] = mapped_column(Json)
    policy_version: Mapped[int | None] = mapped_column(Integer)
    # Who may review, denormalised from ``requirements`` for the review queue's query:
    # members of the task's review groups (task_review_groups) and, when general slots
    # exist, any reviewer or admin.
    review_any: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    review_deadline: Mapped[datetime | None] = mapped_column(Timestamp)
    approval_deadline: Mapped[datetime | None] = mapped_column(Timestamp)
    # The review clocks (approvals/timeouts.py): when the current review window opened, how
    # many of its reminders were sent and when the next falls (the sweep's index), and
    # whether the once-only escalation and re-review happened.
    review_opened_at: Mapped[datetime | None] = mapped_column(Timestamp)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_reminder_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    escalated_at: Mapped[datetime | None] = mapped_column(Timestamp)
    re_reviewed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    fence: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Execution record (architecture §6): what the apply overwrote (so a rollback can run after
    # the worker that applied died), how it ended, and when.
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(Json)
    rollback_outcome: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    apply_requested_at: Mapped[datetime | None] = mapped_column(Timestamp)
    apply_started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    decided_at: Mapped[datetime | None] = mapped_column(Timestamp)

    # Every UPDATE checks and bumps ``version``; a lost race raises StaleDataError.
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class TaskReviewGroup(Base):
    """A group whose members may review a task (see ``Task.review_any``)."""

    __tablename__ = "task_review_groups"

    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    group_name: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Preview(Base):
    """The stash: the exact change set held between submit and apply, content-addressed."""

    __tablename__ = "previews"
    __table_args__ = (UniqueConstraint("task_id", "digest"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32), default="diff")
    content: Mapped[str] = mapped_column(Text)
    precondition_fingerprint: Mapped[str] = mapped_column(String(256))
    lines_changed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(f"decision IN {DECISIONS}", name="decision"),
        Index("ix_reviews_task_id_created_at", "task_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    actor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    # Set when this vote was recorded for a delegator because its delegate voted.
    via_delegation_for: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    delegate_to: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    # Votes on an older digest, or dismissed by request_changes, no longer count.
    stale: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class PolicyVersion(Base):
    """Every policy edit is a new version; the newest is in force."""

    __tablename__ = "policy_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column()
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Delegation(Base):
    __tablename__ = "delegations"
    __table_args__ = (
        CheckConstraint("delegator_id <> delegate_id", name="not_self"),
        CheckConstraint("valid_until > valid_from", name="window"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    delegator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    delegate_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    task_types: Mapped[list[Any]] = mapped_column(default=list)
    resource_types: Mapped[list[Any]] = mapped_column(default=list)
    max_risk: Mapped[float] = mapped_column(Float, default=100.0)
    valid_from: Mapped[datetime] = mapped_column(Timestamp)
    valid_until: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class IdempotencyKey(Base):
    """A repeated request with the same key returns the first answer."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    actor: Mapped[str] = mapped_column(String(80), primary_key=True)
    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class Secret(Base):
    """A named secret (docs/secrets.md): its value sealed with the secrets key, bound to
    its name. No route or page reads ``ciphertext``; only an apply opens it."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # None: set by an operator with `ade secrets set` (the audit log names them).
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)


class AuditEvent(Base):
    """The tamper-evident log: each row's hash covers its content and the previous hash.
    A hash has at most one successor (unique ``prev_hash``), so concurrent appends can
    never fork the chain: the loser's insert fails and is retried."""

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("prev_hash"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    type: Mapped[str] = mapped_column(String(64), index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(80))
    via_delegation: Mapped[bool] = mapped_column(Boolean, default=False)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    data: Mapped[dict[str, Any]] = mapped_column()
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditTreeNode(Base):
    """A complete perfect subtree of the audit log's Merkle tree (``audit.merkle``): the
    root of leaves ``[idx·2^level, (idx+1)·2^level)``, leaf index = seq - 1. Written in
    the transaction of the audit row that completes it, never changed."""

    __tablename__ = "audit_tree_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed checkpoint of the audit log (C2SP tlog-checkpoint in a signed note)."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


# -- Slack approvals (docs/notifications.md#slack) ----------------------------------------


class SlackSettings(Base):
    """The one Slack app configuration (row id 1). The bot token and signing secret are
    sealed with the secrets key (``SecretCipher``); no route or page returns them."""

    __tablename__ = "slack_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bot_token: Mapped[bytes] = mapped_column(LargeBinary)
    signing_secret: Mapped[bytes] = mapped_column(LargeBinary)
    default_channel: Mapped[str | None] = mapped_column(String(80))
    dm_reviewers: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class SlackChannel(Base):
    """Where a task's review request is posted: per policy rule or per reviewer group."""

    __tablename__ = "slack_channels"
    __table_args__ = (CheckConstraint("kind IN ('rule', 'group')", name="kind"),)

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    channel: Mapped[str] = mapped_column(String(80))


class SlackUserLink(Base):
    """A Slack account ↔ an ADE user: set by an admin, or found by e-mail."""

    __tablename__ = "slack_user_links"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    slack_user_id: Mapped[str] = mapped_column(String(32), unique=True)
    source: Mapped[str] = mapped_column(String(8))  # "admin" or "email"
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class SlackMessage(Base):
    """A message posted about a task (channel, ts), updated as the task moves."""

    __tablename__ = "slack_messages"
    __table_args__ = (UniqueConstraint("task_id", "channel"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(80))
    ts: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # the reviewer of a DM
    posted_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class SlackJob(Base):
    """A task whose Slack messages are to be brought up to date (the outbox). The audit
    scan bumps ``generation``; the poster deletes the row only if it is unchanged."""

    __tablename__ = "slack_jobs"

    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    generation: Mapped[int] = mapped_column(Integer, default=1)
    remind: Mapped[bool] = mapped_column(Boolean, default=False)
    due_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str] = mapped_column(Text, default="")


class SlackAction(Base):
    """A decision taken through a Slack button or modal, keyed by the interaction, so a
    retried delivery is answered as before and never decides twice."""

    __tablename__ = "slack_actions"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(16))
    result: Mapped[str] = mapped_column(String(40))  # "ok" or the refusal's code
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class WebhookSubscription(Base):
    """An outbound webhook endpoint (docs/notifications.md): which event types it gets,
    and its signing secret sealed with the secrets key (``previous_secret`` signs too
    until ``previous_secret_until``, after a rotation)."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[Any]] = mapped_column()
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why it was disabled by the system (410 Gone, failing for days); None otherwise.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_until: Mapped[datetime | None] = mapped_column(Timestamp)
    # Events from this time on are delivered: its creation, or when it was last enabled
    # (events while it was disabled are not, even if the outbox takes them later).
    receives_since: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    # Since when every attempt failed (None: the last one succeeded, or none yet).
    failing_since: Mapped[datetime | None] = mapped_column(Timestamp)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: the outbox row. ``id`` is the ``webhook-id`` (the
    same on every attempt); ``payload`` the exact bytes sent each time. A pending row is
    due at ``next_attempt_at``; a sender claims it by moving that time past its lease."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    event_type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    claim: Mapped[str | None] = mapped_column(String(32))
    last_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: the delivery log (bounded response excerpt)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)


class WebhookCursor(Base):
    """How far the outbox has taken the events stream: the last seq turned into
    deliveries, within the stream's epoch (a new epoch starts at seq 0 again)."""

    __tablename__ = "webhook_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


class NotificationPreference(Base):
    """A person's notification preferences (``notifications.preferences``, stored as
    its JSON ``document``); no row: the defaults."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    document: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class NotificationCursor(Base):
    """How far a notifier has read the audit log (its events become outbox rows): one row
    per notifier, by name ("email", "slack")."""

    __tablename__ = "notification_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


EMAIL_STATES = ("pending", "sent", "skipped", "failed")


class EmailOutbox(Base):
    """One e-mail to send: a reviewer told that a task waits on them (docs/notifications.md).
    Written by the dispatcher from the audit event (``event_seq``) that asked for it, at
    most once per event and recipient; sent by whichever server claims it first."""

    __tablename__ = "email_outbox"
    __table_args__ = (
        UniqueConstraint("event_seq", "user_id"),
        CheckConstraint(f"state IN {EMAIL_STATES}", name="state"),
        Index("ix_email_outbox_due", "state", "not_before"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    not_before: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)


class EmailLinkUse(Base):
    """A decision link that was used (its nonce): a link decides once."""

    __tablename__ = "email_link_uses"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    used_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
