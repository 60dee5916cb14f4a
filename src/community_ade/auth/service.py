"""Users, groups, agent identities and API tokens over the database.

Every function takes the caller's ``AsyncSession``, flushes, and never commits: the caller
owns the transaction. Password hashing runs in a thread so the event loop keeps serving.

Authentication failures say as little as possible: an unknown user, a wrong password and a
disabled account give the same ``Unauthenticated`` message (and cost the same argon2
verification, so timing does not tell them apart either); so do unknown, revoked and
expired tokens and tokens of disabled owners. The reason goes to the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from community_ade.auth import names, passwords, tokens
from community_ade.auth.principal import (
    AGENT_ROLE,
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    Role,
    TokenScope,
    parse_scopes,
)
from community_ade.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from community_ade.storage.commit_signal import CommitSignal
from community_ade.storage.db import flush_unique
from community_ade.storage.models import Agent, ApiToken, Group, GroupMember, User, utcnow

logger = logging.getLogger(__name__)

USERNAME = re.compile(r"[a-z0-9._-]{3,64}")
GROUP_NAME = re.compile(r"[a-z0-9._-]{2,64}")
AGENT_NAME_LENGTH = (3, 100)
TOKEN_NAME_LENGTH = (1, 100)
DISPLAY_NAME_MAX = 200
EMAIL_MAX = 254
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
LAST_USED_RESOLUTION = timedelta(minutes=1)
_OWNER = aliased(User)  # an agent token's agent's owner

INVALID_LOGIN = "invalid username or password"

ACCESS_REVOKED = CommitSignal("ade.access_revoked")
"""Marks a transaction that revoked a token or disabled a user: after its commit, this
process re-checks the tokens of its open WebSockets at once (``events.access``)."""


# -- users ----------------------------------------------------------------------------------


def _check_username(username: str) -> None:
    if not USERNAME.fullmatch(username):
        raise InvalidInput(
            f"invalid username {username!r}: 3 to 64 characters of a-z, 0-9, '.', '_', '-'"
        )


def _check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {role!r}: choose one of {choices}") from None


async def create_user(
    session: AsyncSession,
    username: str,
    role: str,
    *,
    password: str | None = None,
    display_name: str = "",
    email: str | None = None,
) -> User:
    """A new user; without a password it can only authenticate with API tokens. The
    name is stored NFKC-normalised; one that looks like an existing user's is refused."""
    username = names.normal(username)
    _check_username(username)
    email = normal_email(email) if email is not None else None
    checked_role = _check_role(role)
    if len(display_name) > DISPLAY_NAME_MAX:
        raise InvalidInput(f"a display name has at most {DISPLAY_NAME_MAX} characters")
    password_hash = None
    if password is not None:
        password_hash = await asyncio.to_thread(passwords.hash_password, password)
    if await _find_user(session, username) is not None:
        raise Conflict(f"user {username!r} already exists", username=username)
    await _refuse_lookalike(session, User.username, username, "user")
    user = User(
        username=username,
        display_name=display_name,
        role=checked_role.value,
        password_hash=password_hash,
        email=email,
    )
    session.add(user)
    what = f"user {username!r}" if email is None else f"user {username!r} or e-mail {email!r}"
    await flush_unique(session, what)
    return user


def normal_email(email: str) -> str:
    """An e-mail address as stored: trimmed and lower-cased (the match key for Slack's
    ``users.lookupByEmail``), or ``InvalidInput``."""
    email = email.strip().lower()
    if len(email) > EMAIL_MAX or not _EMAIL.fullmatch(email):
        raise InvalidInput(f"{email!r} is not an e-mail address (name@domain, at most {EMAIL_MAX})")
    return email


async def set_email(session: AsyncSession, user_id: uuid.UUID, email: str | None) -> User:
    """Set (or with None clear) a user's e-mail address; taken by another user: ``Conflict``."""
    user = await get_user(session, user_id)
    user.email = normal_email(email) if email is not None else None
    await flush_unique(session, f"e-mail {user.email!r}")
    return user


async def _refuse_lookalike(
    session: AsyncSession, column: InstrumentedAttribute[str], name: str, what: str
) -> None:
    """``Conflict`` when ``name`` could be mistaken for an existing ``what``'s name."""
    other = names.lookalike(name, await session.scalars(select(column)))
    if other is not None:
        raise Conflict(
            f"{what} name {name!r} looks like the existing {what} {other!r} (confusable "
            "characters, Unicode TS #39): choose a name that cannot be mistaken for it",
            name=name,
            lookalike=other,
        )


async def _find_user(session: AsyncSession, username: str) -> User | None:
    username = names.normal(username)
    result = await session.execute(select(User).where(User.username == username))
    return result.scalar_one_or_none()


async def get_user_by_name(session: AsyncSession, username: str) -> User:
    user = await _find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}", username=username)
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}", user_id=str(user_id))
    return user


async def list_users(session: AsyncSession) -> list[User]:
    result = await session.execute(select(User).order_by(User.username))
    return list(result.scalars())


async def set_password(session: AsyncSession, user_id: uuid.UUID, password: str) -> None:
    user = await get_user(session, user_id)
    user.password_hash = await asyncio.to_thread(passwords.hash_password, password)
    await session.flush()


async def disable_user(
    session: AsyncSession, user_id: uuid.UUID, *, now: datetime | None = None
) -> User:
    """Disable a user: its password, its tokens and its agents' tokens stop working.
    Disabling twice keeps the first time."""
    user = await get_user(session, user_id)
    if user.disabled_at is None:
        user.disabled_at = now or utcnow()
        await session.flush()
        ACCESS_REVOKED.mark(session)
    return user


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when there is no user, so that costs the same time."""
    return passwords.hash_password("not-a-password-" + uuid.uuid4().hex)


async def authenticate_password(session: AsyncSession, username: str, password: str) -> Principal:
    """The user's principal, or ``Unauthenticated`` (one message for an unknown user, a
    wrong password, a user without a password and a disabled user)."""
    user = await _find_user(session, username) if USERNAME.fullmatch(username) else None
    stored = user.password_hash if user is not None else None
    # Verify even when there is nothing to verify against: every refusal costs the same.
    candidate = stored if stored is not None else await asyncio.to_thread(_dummy_hash)
    matches = await asyncio.to_thread(passwords.verify_password, candidate, password)
    reason = _login_refusal(user, stored, matches=matches)
    if reason is not None or user is None or stored is None:
        logger.info("password login refused for %r: %s", username, reason)
        raise Unauthenticated(INVALID_LOGIN)
    if passwords.needs_rehash(stored):
        try:
            user.password_hash = await asyncio.to_thread(passwords.hash_password, password)
        except InvalidInput:  # set before today's policy: keep the old hash, let them in
            logger.warning("user %r has a password below today's policy", username)
        else:
            await session.flush()
    return await human_principal(session, user)


def _login_refusal(user: User | None, stored: str | None, *, matches: bool) -> str | None:
    if user is None:
        return "unknown user"
    if stored is None:
        return "no password set"
    if not matches:
        return "wrong password"
    if user.disabled_at is not None:
        return "user disabled"
    return None


async def human_principal(session: AsyncSession, user: User) -> Principal:
    """The principal a user acts as: their role and their groups."""
    return Principal(
        id=user.id,
        kind="human",
        name=user.username,
        role=user.role,
        groups=await groups_of(session, user.id),
    )


# -- groups ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupInfo:
    id: uuid.UUID
    name: str
    description: str
    members: tuple[str, ...]


async def create_group(session: AsyncSession, name: str, description: str = "") -> Group:
    """A new group; its name is stored NFKC-normalised, and one that looks like an
    existing group's is refused."""
    name = names.normal(name)
    if not GROUP_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid group name {name!r}: 2 to 64 characters of a-z, 0-9, '.', '_', '-'"
        )
    if await _find_group(session, name) is not None:
        raise Conflict(f"group {name!r} already exists", group=name)
    await _refuse_lookalike(session, Group.name, name, "group")
    group = Group(name=name, description=description)
    session.add(group)
    await flush_unique(session, f"group {name!r}")
    return group


async def _find_group(session: AsyncSession, name: str) -> Group | None:
    name = names.normal(name)
    result = await session.execute(select(Group).where(Group.name == name))
    return result.scalar_one_or_none()


async def get_group_by_name(session: AsyncSession, name: str) -> Group:
    group = await _find_group(session, name)
    if group is None:
        raise NotFound(f"no group {name!r}", group=name)
    return group


async def add_member(session: AsyncSession, group_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Add a user to a group; False if it already was a member."""
    if await session.get(Group, group_id) is None:
        raise NotFound(f"no group {group_id}", group_id=str(group_id))
    await get_user(session, user_id)
    if await session.get(GroupMember, (group_id, user_id)) is not None:
        return False
    session.add(GroupMember(group_id=group_id, user_id=user_id))
    await flush_unique(session, "this membership")
    return True


async def groups_of(session: AsyncSession, user_id: uuid.UUID) -> frozenset[str]:
    result = await session.execute(
        select(Group.name)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user_id)
    )
    return frozenset(result.scalars())


async def list_groups(session: AsyncSession) -> list[GroupInfo]:
    groups = (await session.execute(select(Group).order_by(Group.name))).scalars().all()
    rows = await session.execute(
        select(GroupMember.group_id, User.username)
        .join(User, User.id == GroupMember.user_id)
        .order_by(User.username)
    )
    members: dict[uuid.UUID, list[str]] = {}
    for group_id, username in rows:
        members.setdefault(group_id, []).append(username)
    return [GroupInfo(g.id, g.name, g.description, tuple(members.get(g.id, ()))) for g in groups]


# -- agents ---------------------------------------------------------------------------------


async def create_agent_identity(session: AsyncSession, name: str, owner_id: uuid.UUID) -> Agent:
    """An agent's identity row (the agents issue adds its configuration).

    Its owner must be an enabled user allowed to submit tasks: the agent acts for it and
    never holds more than it does."""
    name = names.normal(name)
    low, high = AGENT_NAME_LENGTH
    if not low <= len(name) <= high or name != name.strip() or not name.isprintable():
        raise InvalidInput(
            f"invalid agent name {name!r}: {low} to {high} printable characters, "
            "no leading or trailing space"
        )
    owner = await get_user(session, owner_id)
    if owner.disabled_at is not None:
        raise Conflict(f"user {owner.username!r} is disabled and cannot own agents")
    if Permission.TASK_WRITE not in ROLE_PERMISSIONS[Role(owner.role)]:
        raise InvalidInput(
            f"user {owner.username!r} has role {owner.role!r}, which cannot submit tasks, "
            "so it cannot own an agent"
        )
    if await _find_agent(session, name) is not None:
        raise Conflict(f"agent {name!r} already exists", agent=name)
    await _refuse_lookalike(session, Agent.name, name, "agent")
    agent = Agent(name=name, owner_id=owner_id)
    session.add(agent)
    await flush_unique(session, f"agent {name!r}")
    return agent


async def _find_agent(session: AsyncSession, name: str) -> Agent | None:
    name = names.normal(name)
    result = await session.execute(select(Agent).where(Agent.name == name))
    return result.scalar_one_or_none()


async def get_agent(session: AsyncSession, agent_id: uuid.UUID) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"no agent {agent_id}", agent_id=str(agent_id))
    return agent


async def get_agent_by_name(session: AsyncSession, name: str) -> Agent:
    agent = await _find_agent(session, name)
    if agent is None:
        raise NotFound(f"no agent {name!r}", agent=name)
    return agent


def _agent_role(owner: User) -> Role:
    """``submitter``, unless the owner may not submit: then the agent reads only."""
    if Permission.TASK_WRITE in ROLE_PERMISSIONS[Role(owner.role)]:
        return AGENT_ROLE
    return Role.VIEWER


# -- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown about a token: everything but its hash."""

    id: uuid.UUID
    name: str
    prefix: str
    owner_kind: Literal["user", "agent"]
    user_id: uuid.UUID | None
    agent_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    scopes: tuple[str, ...] | None  # None: every right of the holder

    @classmethod
    def of(cls, token: ApiToken) -> TokenInfo:
        return cls(
            id=token.id,
            name=token.name,
            prefix=token.prefix,
            owner_kind="user" if token.user_id is not None else "agent",
            user_id=token.user_id,
            agent_id=token.agent_id,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
            scopes=tuple(sorted(stored_scopes(token))) if token.scopes is not None else None,
        )

    def status(self, now: datetime) -> Literal["active", "revoked", "expired"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def _one_owner(
    user_id: uuid.UUID | None, agent_id: uuid.UUID | None
) -> tuple[tokens.TokenKind, uuid.UUID]:
    if user_id is not None and agent_id is None:
        return "user", user_id
    if agent_id is not None and user_id is None:
        return "agent", agent_id
    raise InvalidInput("a token belongs to exactly one owner: give a user or an agent")


async def create_token(
    session: AsyncSession,
    *,
    name: str,
    user_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
    expires_at: datetime | None = None,
    scopes: Collection[str] | None = None,
    auth_time: datetime | None = None,
) -> tuple[str, ApiToken]:
    """A new token for a user or an agent: its plaintext (show it once, it is not kept)
    and its row (which holds only the hash). ``scopes`` limits it (None: every right of
    its holder); ``auth_time`` is when a dashboard session's person authenticated."""
    checked_scopes = parse_scopes(scopes) if scopes is not None else None
    kind, owner_ref = _one_owner(user_id, agent_id)
    low, high = TOKEN_NAME_LENGTH
    if not low <= len(name.strip()) <= high or len(name) > high:
        raise InvalidInput(f"a token name has {low} to {high} characters")
    now = utcnow()
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("expires_at must be timezone-aware")
        if expires_at <= now:
            raise InvalidInput("expires_at is in the past")
    if kind == "agent":
        owner_ref = (await get_agent(session, owner_ref)).owner_id
    owner = await get_user(session, owner_ref)
    if owner.disabled_at is not None:
        raise Conflict(f"user {owner.username!r} is disabled: no new tokens")
    issued = tokens.new_token(kind)
    row = ApiToken(
        name=name,
        token_hash=issued.token_hash,
        prefix=issued.prefix,
        user_id=user_id,
        agent_id=agent_id,
        created_at=now,
        expires_at=expires_at,
        scopes=" ".join(sorted(checked_scopes)) if checked_scopes is not None else None,
        auth_time=auth_time,
    )
    session.add(row)
    await session.flush()
    return issued.plaintext, row


def _refuse(token: ApiToken | None, reason: str) -> Unauthenticated:
    logger.info("API token %s refused: %s", token.prefix if token else "?", reason)
    return Unauthenticated(tokens.INVALID_TOKEN)


async def authenticate_token(session: AsyncSession, plaintext: str, *, now: datetime) -> Principal:
    """The principal a bearer token stands for, or ``Unauthenticated`` (one message for a
    malformed, unknown, revoked or expired token and a disabled owner).

    Records ``last_used_at``, at most once a minute per token (so busy tokens do not turn
    every request into a write)."""
    parsed = tokens.parse_token(plaintext)
    # One round trip for the token and whoever it stands for: it is every request's first
    # query, and under load each round trip to the database costs a context switch.
    found = (
        await session.execute(
            select(ApiToken, User, Agent, _OWNER)
            .outerjoin(User, User.id == ApiToken.user_id)
            .outerjoin(Agent, Agent.id == ApiToken.agent_id)
            .outerjoin(_OWNER, _OWNER.id == Agent.owner_id)
            .where(ApiToken.token_hash == parsed.token_hash)
        )
    ).one_or_none()
    if found is None:
        raise _refuse(None, "unknown token")
    token, user, agent, owner = found
    if token.revoked_at is not None:
        raise _refuse(token, "revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise _refuse(token, "expired")
    if parsed.kind != ("user" if token.user_id is not None else "agent"):
        raise _refuse(token, "kind mark does not match the owner")
    principal = await _token_principal(session, user, agent, owner)
    if principal is None:
        raise _refuse(token, "owner disabled or gone")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
        await session.flush()
    scopes = stored_scopes(token) if token.scopes is not None else None
    return dataclasses.replace(principal, scopes=scopes, auth_time=token.auth_time)


def stored_scopes(token: ApiToken) -> frozenset[TokenScope]:
    """A token's scopes as stored (space-separated); a value this version does not know
    grants nothing."""
    known = {s.value for s in TokenScope}
    return frozenset(TokenScope(v) for v in (token.scopes or "").split() if v in known)


async def _token_principal(
    session: AsyncSession, user: User | None, agent: Agent | None, owner: User | None
) -> Principal | None:
    """The principal of a token's user, or of its agent on behalf of the agent's owner;
    None when that user or owner is disabled or gone."""
    if user is not None:
        return None if user.disabled_at is not None else await human_principal(session, user)
    if agent is None or owner is None or owner.disabled_at is not None:
        return None
    return Principal(
        id=agent.id,
        kind="agent",
        name=agent.name,
        role=_agent_role(owner).value,
        groups=frozenset(),
        owner_id=owner.id,
    )


async def live_token_hashes(
    session: AsyncSession, token_hashes: Sequence[str], *, now: datetime
) -> set[str]:
    """Which of these token hashes still authenticate: not revoked, not expired, and the
    owner (an agent's owner for an agent token) not disabled. One query, for re-checking
    the tokens long-lived connections were opened with."""
    if not token_hashes:
        return set()
    owner_id = func.coalesce(ApiToken.user_id, Agent.owner_id)
    query = (
        select(ApiToken.token_hash)
        .outerjoin(Agent, Agent.id == ApiToken.agent_id)
        .join(User, User.id == owner_id)
        .where(
            ApiToken.token_hash.in_(token_hashes),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
            User.disabled_at.is_(None),
        )
    )
    return set((await session.scalars(query)).all())


async def revoke_token(
    session: AsyncSession, token_id: uuid.UUID, *, now: datetime | None = None
) -> TokenInfo:
    """Revoke a token; revoking twice keeps the first time."""
    token = await session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no token {token_id}", token_id=str(token_id))
    if token.revoked_at is None:
        token.revoked_at = now or utcnow()
        await session.flush()
        ACCESS_REVOKED.mark(session)
    return TokenInfo.of(token)


async def list_tokens(
    session: AsyncSession, *, user_id: uuid.UUID | None = None, agent_id: uuid.UUID | None = None
) -> list[TokenInfo]:
    """The tokens of one user or one agent, newest first; never their hashes."""
    kind, owner_ref = _one_owner(user_id, agent_id)
    owner = ApiToken.user_id == owner_ref if kind == "user" else ApiToken.agent_id == owner_ref
    result = await session.execute(
        select(ApiToken).where(owner).order_by(ApiToken.created_at.desc(), ApiToken.id)
    )
    rows: Sequence[ApiToken] = result.scalars().all()
    return [TokenInfo.of(row) for row in rows]
