"""The stored (and, later, HTTP) form of a policy: a JSON document with TTLs in seconds.

``PolicyDocument.to_policy`` turns it into the pure ``Policy`` and so runs every rule's
validation; a document that cannot become a policy is refused with ``InvalidInput``.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from community_ade.approvals.policy import ApplyMode, GroupRequirement, Policy, PolicyRule
from community_ade.approvals.risk import ResourceType
from community_ade.approvals.timeouts import (
    MAX_REMINDERS,
    ApprovalTimeout,
    ReviewTimeout,
    ReviewTimeoutRule,
)

# Ten years: longer review or approval windows are mistakes, and far longer ones would
# overflow date arithmetic when a deadline is computed.
MAX_TTL_SECONDS = 10 * 365 * 86_400
# A "fresh" login older than a month is no step-up.
MAX_FRESH_AUTH_SECONDS = 30 * 86_400


class GroupRequirementDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, max_length=64)
    count: int = Field(default=1, ge=1, le=20)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExpireOnTimeout(_Strict):
    action: Literal["expire"]


class RejectOnTimeout(_Strict):
    action: Literal["reject"]


class EscalateOnTimeout(_Strict):
    action: Literal["escalate"]
    group: str = Field(min_length=1, max_length=64, description="An existing group's name.")
    review_ttl_seconds: int = Field(
        gt=0, le=MAX_TTL_SECONDS, description="The escalated review window, from the timeout."
    )


class AutoApproveOnTimeout(_Strict):
    action: Literal["auto_approve"]
    risk_below: float = Field(ge=0, le=100, description="Approve only when risk < this.")


ReviewTimeoutDocument = Annotated[
    ExpireOnTimeout | RejectOnTimeout | EscalateOnTimeout | AutoApproveOnTimeout,
    Field(discriminator="action"),
]


def _review_timeout(doc: ReviewTimeoutDocument | None) -> ReviewTimeoutRule | None:
    if doc is None:
        return None
    if isinstance(doc, EscalateOnTimeout):
        return ReviewTimeoutRule(
            ReviewTimeout.ESCALATE, group=doc.group, ttl=timedelta(seconds=doc.review_ttl_seconds)
        )
    if isinstance(doc, AutoApproveOnTimeout):
        return ReviewTimeoutRule(ReviewTimeout.AUTO_APPROVE, risk_below=doc.risk_below)
    return ReviewTimeoutRule(ReviewTimeout(doc.action))


class RuleDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    task_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    resource_types: list[ResourceType] = Field(default_factory=list)
    risk_min: float = Field(default=0.0, ge=0, le=100)
    risk_max: float = Field(default=100.0, ge=0, le=100)
    groups: list[GroupRequirementDocument] = Field(default_factory=list)
    min_total: int = Field(default=0, ge=0, le=20)
    review_ttl_seconds: int | None = Field(default=None, gt=0, le=MAX_TTL_SECONDS)
    approval_ttl_seconds: int | None = Field(default=None, gt=0, le=MAX_TTL_SECONDS)
    auto_approve_below: float | None = Field(default=None, ge=0, le=100)
    fresh_auth_seconds: int | None = Field(
        default=None,
        gt=0,
        le=MAX_FRESH_AUTH_SECONDS,
        description="Step-up: deciding on a matched task needs a login at most this old.",
    )
    reminders: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=list,
        max_length=MAX_REMINDERS,
        description="Fractions of the review window, strictly increasing, e.g. [0.5, 0.9].",
    )
    on_review_timeout: ReviewTimeoutDocument | None = None
    on_approval_timeout: ApprovalTimeout | None = None

    @field_validator("reminders")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("reminders must be strictly increasing fractions of review_ttl")
        return value

    calls: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=100,
        description="Globs on the function an `agent.call` task calls (a coding agent's "
        "tool: `Read`, `Bash`, `mcp__*`); empty: any task.",
    )

    def to_rule(self) -> PolicyRule:
        return PolicyRule(
            name=self.name,
            task_types=tuple(self.task_types),
            resource_types=frozenset(self.resource_types),
            risk_min=self.risk_min,
            risk_max=self.risk_max,
            groups=tuple(GroupRequirement(g.group, g.count) for g in self.groups),
            min_total=self.min_total,
            review_ttl=_ttl(self.review_ttl_seconds),
            approval_ttl=_ttl(self.approval_ttl_seconds),
            auto_approve_below=self.auto_approve_below,
            fresh_auth=_ttl(self.fresh_auth_seconds),
            reminders=tuple(self.reminders),
            on_review_timeout=_review_timeout(self.on_review_timeout),
            on_approval_timeout=self.on_approval_timeout,
            calls=tuple(self.calls),
        )


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[RuleDocument] = Field(default_factory=list, max_length=500)
    default_review_ttl_seconds: int = Field(default=86_400, gt=0, le=MAX_TTL_SECONDS)
    default_approval_ttl_seconds: int = Field(default=86_400, gt=0, le=MAX_TTL_SECONDS)
    apply: dict[Annotated[str, Field(min_length=1, max_length=100)], ApplyMode] = Field(
        default_factory=dict,
        max_length=500,
        description="Task type (or glob) -> apply mode. `manual`: an approved task waits for "
        "POST /tasks/{id}/apply. Types not named apply automatically.",
    )

    def to_policy(self, version: int) -> Policy:
        return Policy(
            version=version,
            rules=tuple(rule.to_rule() for rule in self.rules),
            default_review_ttl=timedelta(seconds=self.default_review_ttl_seconds),
            default_approval_ttl=timedelta(seconds=self.default_approval_ttl_seconds),
            apply_modes=self.apply,
        )


def _ttl(seconds: int | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


# The coding agents' tools that only read (Claude Code's, Cursor's file reads): the
# built-in policy lets them through at once, so a hook answers "allow" without a reviewer.
# Everything else a coding agent asks (Bash, Write, Edit, MCP tools …) matches no rule and
# goes to the reviewers by the risk quorum. An admin's stored policy replaces this one.
READ_ONLY_AGENT_TOOLS = (
    "Read",
    "Grep",
    "Glob",
    "LS",
    "NotebookRead",
    "TodoWrite",
    "TodoRead",
    "BashOutput",
    "ReadFile",
)


def builtin_policy_document() -> PolicyDocument:
    """Version 0, in force until an admin stores a policy."""
    return PolicyDocument(
        rules=[
            RuleDocument(
                name="coding agents: read-only tools",
                task_types=["agent.call"],
                calls=list(READ_ONLY_AGENT_TOOLS),
                auto_approve_below=100,
            )
        ]
    )
