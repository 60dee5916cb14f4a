"""Who is acting and what they may do: the principal, the permissions and the role matrix.

Pure: no database, no HTTP. The API layer turns a bearer token into a ``Principal``
(``auth.service.authenticate_token``) and calls ``require`` before every use case.

Roles and permissions (``x`` = granted)::

    permission        viewer  submitter  reviewer  admin   what it allows
    task_read           x        x          x        x     read tasks, previews, approvals
    agent_read          x        x          x        x     read agents and their health
    delegation_read     x        x          x        x     read delegations
    policy_read         x        x          x        x     read policies, evaluate a task
    audit_read          x        x          x        x     read and verify the audit log
    lock_read           x        x          x        x     inspect apply locks
    task_write                   x          x        x     create, edit, submit, cancel own tasks
    lock_lease                   x          x        x     hold apply-lock leases over HTTP
    secret_read                  x          x        x     list secrets' names (never values)
    agent_write                  x*         x*       x     register and configure own agents
    review                                  x*       x*    approve, reject, ask changes, delegate
    delegation_write                        x*       x*    create and revoke own delegations
    policy_write                                     x*    edit policies
    lock_admin                                       x*    force-release locks
    catalogue_write                                  x*    edit the catalogue of models and tools
    shell_profile_write                              x*    define the shell profiles tasks run
    user_admin                                       x*    users, groups, tokens
    secret_write                                     x*    store and delete secrets
    webhook_admin                                    x*    outbound webhook subscriptions

Each role holds everything of the role to its left (viewer ⊂ submitter ⊂ reviewer ⊂
admin); ``admin`` holds every permission.

Agents authenticate with their own tokens and act with role ``submitter``: they may
create and submit tasks and read, never review. The permissions marked ``*`` are
*human only*: an agent principal never holds them, whatever its role says. An agent never
holds more than its owner either (``auth.service`` gives the agent of a ``viewer`` the
role ``viewer``).

A token may also be limited to *scopes* (``read``, ``submit``, ``review``, ``admin``,
``SCOPE_OF`` below): its principal then holds only the permissions of its role that one
of its scopes covers. A token without scopes (every token made before scopes existed)
holds all its holder's permissions.

Ownership ("own tasks", "own agents") and separation of duties (no approving one's own
task, architecture §4) are not permissions: the services check them against the principal.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from community_ade.errors import Forbidden, InvalidInput

PrincipalKind = Literal["human", "agent"]


class Role(StrEnum):
    ADMIN = "admin"
    REVIEWER = "reviewer"
    SUBMITTER = "submitter"
    VIEWER = "viewer"


class Permission(StrEnum):
    TASK_READ = "task_read"
    AGENT_READ = "agent_read"
    DELEGATION_READ = "delegation_read"
    POLICY_READ = "policy_read"
    AUDIT_READ = "audit_read"
    LOCK_READ = "lock_read"
    TASK_WRITE = "task_write"
    LOCK_LEASE = "lock_lease"
    AGENT_WRITE = "agent_write"
    REVIEW = "review"
    DELEGATION_WRITE = "delegation_write"
    POLICY_WRITE = "policy_write"
    LOCK_ADMIN = "lock_admin"
    CATALOGUE_WRITE = "catalogue_write"
    SHELL_PROFILE_WRITE = "shell_profile_write"
    USER_ADMIN = "user_admin"
    SECRET_READ = "secret_read"
    SECRET_WRITE = "secret_write"
    WEBHOOK_ADMIN = "webhook_admin"


_VIEWER = frozenset(
    {
        Permission.TASK_READ,
        Permission.AGENT_READ,
        Permission.DELEGATION_READ,
        Permission.POLICY_READ,
        Permission.AUDIT_READ,
        Permission.LOCK_READ,
    }
)
# Submitters see which secrets exist to refer to them; no role ever reads a value.
_SUBMITTER = _VIEWER | {
    Permission.TASK_WRITE,
    Permission.LOCK_LEASE,
    Permission.AGENT_WRITE,
    Permission.SECRET_READ,
}
_REVIEWER = _SUBMITTER | {Permission.REVIEW, Permission.DELEGATION_WRITE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.SUBMITTER: _SUBMITTER,
    Role.REVIEWER: _REVIEWER,
    Role.ADMIN: frozenset(Permission),
}

# Never held by an agent principal, whatever its role.
HUMAN_ONLY: frozenset[Permission] = frozenset(
    {
        Permission.AGENT_WRITE,
        Permission.REVIEW,
        Permission.DELEGATION_WRITE,
        Permission.POLICY_WRITE,
        Permission.LOCK_ADMIN,
        Permission.CATALOGUE_WRITE,
        Permission.SHELL_PROFILE_WRITE,
        Permission.USER_ADMIN,
        Permission.SECRET_WRITE,
        Permission.WEBHOOK_ADMIN,
    }
)


class TokenScope(StrEnum):
    """What a scope-limited API token may be used for (``ade tokens create --scope``)."""

    READ = "read"
    SUBMIT = "submit"
    REVIEW = "review"
    ADMIN = "admin"


SCOPE_OF: dict[Permission, TokenScope] = {
    Permission.TASK_READ: TokenScope.READ,
    Permission.AGENT_READ: TokenScope.READ,
    Permission.DELEGATION_READ: TokenScope.READ,
    Permission.POLICY_READ: TokenScope.READ,
    Permission.AUDIT_READ: TokenScope.READ,
    Permission.LOCK_READ: TokenScope.READ,
    Permission.SECRET_READ: TokenScope.READ,
    Permission.TASK_WRITE: TokenScope.SUBMIT,
    Permission.LOCK_LEASE: TokenScope.SUBMIT,
    Permission.AGENT_WRITE: TokenScope.SUBMIT,
    Permission.REVIEW: TokenScope.REVIEW,
    Permission.DELEGATION_WRITE: TokenScope.REVIEW,
    Permission.POLICY_WRITE: TokenScope.ADMIN,
    Permission.LOCK_ADMIN: TokenScope.ADMIN,
    Permission.CATALOGUE_WRITE: TokenScope.ADMIN,
    Permission.SHELL_PROFILE_WRITE: TokenScope.ADMIN,
    Permission.USER_ADMIN: TokenScope.ADMIN,
    Permission.SECRET_WRITE: TokenScope.ADMIN,
    Permission.WEBHOOK_ADMIN: TokenScope.ADMIN,
}
"""The one scope that covers each permission (a scope adds nothing its holder's role lacks)."""


def parse_scopes(values: Iterable[str]) -> frozenset[TokenScope]:
    """Scopes as given (CLI, API, stored text); ``InvalidInput`` naming the unknown one.
    An empty list is refused: a token that may do nothing is a mistake."""
    scopes = set()
    for value in values:
        try:
            scopes.add(TokenScope(value.strip()))
        except ValueError:
            choices = ", ".join(s.value for s in TokenScope)
            raise InvalidInput(f"unknown token scope {value!r}: choose from {choices}") from None
    if not scopes:
        raise InvalidInput("a scope-limited token needs at least one scope")
    return frozenset(scopes)


def scopes_for_new_token(
    principal: Principal, asked: frozenset[TokenScope] | None
) -> frozenset[TokenScope] | None:
    """The scopes of a token ``principal`` makes for itself: never wider than the
    principal's own token (a scope-limited caller gets its own scopes by default, and
    ``Forbidden`` naming the scope it asks beyond them)."""
    held = principal.scopes
    if held is None:
        return asked
    if asked is None:
        return held
    beyond = sorted(asked - held)
    if beyond:
        raise Forbidden(
            f"a token limited to {', '.join(sorted(held))} cannot make one with "
            f"{', '.join(beyond)}",
            missing_scope=beyond[0],
            scopes=sorted(held),
        )
    return asked


# The role an agent acts with (lowered to its owner's role when that is weaker).
AGENT_ROLE = Role.SUBMITTER


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated actor: a human user, or an agent acting for its owner."""

    id: uuid.UUID
    kind: PrincipalKind
    name: str
    role: str
    groups: frozenset[str]
    owner_id: uuid.UUID | None = None
    # None: every permission of the role; else only those these scopes cover.
    scopes: frozenset[TokenScope] | None = None
    # When the person last proved who they are (a login; the ID token's ``auth_time``),
    # for decisions a policy wants freshly authenticated; None: unknown (API tokens).
    auth_time: datetime | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLE_PERMISSIONS:
            raise ValueError(f"unknown role {self.role!r}")
        if self.kind == "agent" and self.owner_id is None:
            raise ValueError("an agent principal needs its owner")
        if self.kind == "human" and self.owner_id is not None:
            raise ValueError("a human principal has no owner")

    @property
    def user_id(self) -> uuid.UUID:
        """The human accountable for this principal's acts: itself, or an agent's owner
        (the task's ``submitter_id`` when an agent submits)."""
        if self.owner_id is not None:
            return self.owner_id
        return self.id

    @property
    def permissions(self) -> frozenset[Permission]:
        granted = ROLE_PERMISSIONS[Role(self.role)]
        if self.kind == "agent":
            granted -= HUMAN_ONLY
        if self.scopes is not None:
            granted = frozenset(p for p in granted if SCOPE_OF[p] in self.scopes)
        return granted

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def can_without_scopes(self, permission: Permission) -> bool:
        """Whether the role (and kind) grants it, whatever the token's scopes."""
        granted = ROLE_PERMISSIONS[Role(self.role)]
        return permission in granted and not (self.kind == "agent" and permission in HUMAN_ONLY)


def require(principal: Principal, permission: Permission) -> None:
    """Raise ``Forbidden`` naming the missing permission and the role unless granted."""
    if principal.can(permission):
        return
    if principal.kind == "agent" and permission in HUMAN_ONLY:
        why = f"agents never hold {permission.value!r}"
    elif principal.can_without_scopes(permission):
        scope = SCOPE_OF[permission]
        held = ", ".join(sorted(principal.scopes or ())) or "none"
        raise Forbidden(
            f"this API token lacks the scope {scope.value!r} (it holds: {held}); "
            f"{permission.value!r} needs it",
            permission=permission.value,
            missing_scope=scope.value,
            scopes=sorted(principal.scopes or ()),
        )
    else:
        why = f"role {principal.role!r} lacks the permission {permission.value!r}"
    raise Forbidden(
        f"{principal.kind} {principal.name!r} (role {principal.role}) may not do this: {why}",
        permission=permission.value,
        role=principal.role,
        kind=principal.kind,
    )
