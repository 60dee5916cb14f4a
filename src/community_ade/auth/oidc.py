"""People who sign in through the organisation's OpenID Connect provider (docs/auth.md).

The protocol (authorization code + PKCE, state, nonce, the ID token's signature, issuer,
audience and expiry) is authlib's, in ``dashboard/views/oidc.py``. This module starts
from the *validated* claims:

- ``identity_from_claims`` (pure) turns them into an ``Identity``: the issuer and
  ``sub`` that identify the person for good, the name they get here, their role and
  reviewer groups through the configured ``ClaimMapping``;
- ``sign_in`` finds the user linked to that issuer and ``sub`` or creates it (named and
  checked like every user: ``service.create_user``), then sets its role and its groups
  to exactly what the provider says now (groups added *and* removed), with an audit
  event for each change and for the login.

A user is linked by issuer and ``sub`` only, never by name: an existing local user with
the same name is refused (``Conflict``), so whoever controls a name at the provider
cannot take over an account here.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from community_ade.audit import log as audit
from community_ade.audit.chain import Actor
from community_ade.auth import names, service
from community_ade.auth.principal import Principal, Role
from community_ade.errors import Conflict, InvalidInput, Unauthenticated
from community_ade.settings import Settings
from community_ade.storage.models import Group, GroupMember, User

logger = logging.getLogger(__name__)

MAX_GROUPS = 200
MAX_CLAIM_TEXT = 255
# Least to most privileged: the highest role any of the person's groups maps to wins.
ROLE_RANK = (Role.VIEWER, Role.SUBMITTER, Role.REVIEWER, Role.ADMIN)


@dataclass(frozen=True)
class ClaimMapping:
    """How claims become a name, a role and groups here (``ADE_OIDC_*`` settings)."""

    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    group_map: Mapping[str, str] = field(default_factory=dict)  # empty: names as they are
    role_map: Mapping[str, str] = field(default_factory=dict)
    default_role: Role = Role.VIEWER

    def __post_init__(self) -> None:
        for target in self.group_map.values():
            if not service.GROUP_NAME.fullmatch(names.normal(target)):
                raise InvalidInput(f"the OIDC group map names an invalid group {target!r}")
        for value in self.role_map.values():
            if value not in {r.value for r in Role}:
                raise InvalidInput(f"the OIDC role map names an unknown role {value!r}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ClaimMapping:
        return cls(
            username_claim=settings.oidc_username_claim,
            groups_claim=settings.oidc_groups_claim,
            group_map=settings.oidc_group_map,
            role_map=settings.oidc_role_map,
            default_role=Role(settings.oidc_default_role),
        )


@dataclass(frozen=True)
class Identity:
    """A person as the provider vouches for them, mapped to this deployment."""

    issuer: str
    subject: str
    username: str
    display_name: str
    role: Role
    groups: frozenset[str]


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if isinstance(value, str) and value.strip() and len(value) <= MAX_CLAIM_TEXT:
        return value.strip()
    return None


def _username(claims: Mapping[str, Any], mapping: ClaimMapping) -> str:
    """The configured claim, else the e-mail's local part, else ``sub``; NFKC and
    case-folded, an e-mail-like value cut at its ``@``."""
    raw = _text(claims, mapping.username_claim) or _text(claims, "email") or claims["sub"]
    name = unicodedata.normalize("NFKC", raw).casefold()
    return name.split("@", 1)[0] if "@" in name else name


def _provider_groups(claims: Mapping[str, Any], claim: str) -> list[str]:
    value = claims.get(claim, [])
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_GROUPS:
        raise InvalidInput(f"the {claim!r} claim must be a list of at most {MAX_GROUPS} names")
    return [g for g in items if isinstance(g, str) and 0 < len(g) <= MAX_CLAIM_TEXT]


def identity_from_claims(claims: Mapping[str, Any], mapping: ClaimMapping) -> Identity:
    """The identity validated claims describe. ``InvalidInput`` when ``iss`` or ``sub``
    is missing or the groups claim is not a list of names."""
    issuer, subject = _text(claims, "iss"), _text(claims, "sub")
    if issuer is None or subject is None:
        raise InvalidInput("the ID token lacks its 'iss' or 'sub' claim")
    provider_groups = _provider_groups(claims, mapping.groups_claim)
    groups: set[str] = set()
    for value in provider_groups:
        if mapping.group_map:
            target = mapping.group_map.get(value)
            if target is not None:
                groups.add(names.normal(target))
            continue
        name = names.normal(value).casefold()
        if service.GROUP_NAME.fullmatch(name):
            groups.add(name)
        else:
            logger.info("OIDC group %r is not a valid group name here: ignored", value)
    roles = [Role(mapping.role_map[v]) for v in provider_groups if v in mapping.role_map]
    role = max([mapping.default_role, *roles], key=ROLE_RANK.index)
    return Identity(
        issuer=issuer,
        subject=subject,
        username=_username(claims, mapping),
        display_name=(_text(claims, "name") or "")[: service.DISPLAY_NAME_MAX],
        role=role,
        groups=frozenset(groups),
    )


async def sign_in(session: AsyncSession, identity: Identity) -> Principal:
    """The principal of the user linked to ``identity`` (created on first sign-in), with
    role and groups brought in line with the provider's. ``Unauthenticated`` for a
    disabled user; ``Conflict`` when the name belongs to another user here."""
    user = await session.scalar(
        select(User).where(
            User.oidc_issuer == identity.issuer, User.oidc_subject == identity.subject
        )
    )
    if user is None:
        user = await _create(session, identity)
    if user.disabled_at is not None:
        logger.info("OIDC sign-in refused for %r: user disabled", user.username)
        raise Unauthenticated(f"user {user.username!r} is disabled here")
    actor = Actor(kind="human", id=str(user.id))
    if user.role != identity.role.value:
        await audit.append(
            session,
            type="auth:role_changed",
            actor=actor,
            subject=f"user:{user.id}",
            data={"from": user.role, "to": identity.role.value, "source": identity.issuer},
        )
        user.role = identity.role.value
    await _sync_groups(session, user, identity.groups, actor, identity.issuer)
    await audit.append(
        session,
        type="auth:login",
        actor=actor,
        subject=f"user:{user.id}",
        data={"method": "oidc", "issuer": identity.issuer},
    )
    await session.flush()
    return await service.human_principal(session, user)


async def _create(session: AsyncSession, identity: Identity) -> User:
    try:
        user = await service.create_user(
            session,
            identity.username,
            identity.role.value,
            display_name=identity.display_name,
        )
    except Conflict as exc:
        raise Conflict(
            f"{exc.message}. An account here is linked to the identity provider only when "
            "created by it: ask an administrator to rename or disable the local user",
            **exc.details,
        ) from None
    user.oidc_issuer, user.oidc_subject = identity.issuer, identity.subject
    await session.flush()
    await audit.append(
        session,
        type="auth:user_created",
        actor=Actor(kind="human", id=str(user.id)),
        subject=f"user:{user.id}",
        data={
            "username": user.username,
            "role": user.role,
            "issuer": identity.issuer,
            "subject": identity.subject,
        },
    )
    return user


async def _sync_groups(
    session: AsyncSession, user: User, wanted: frozenset[str], actor: Actor, issuer: str
) -> None:
    """Memberships become exactly ``wanted``: missing groups are created, memberships
    the provider no longer lists are removed."""
    current = await service.groups_of(session, user.id)
    added, removed = sorted(wanted - current), sorted(current - wanted)
    if not added and not removed:
        return
    for name in added:
        group = await session.scalar(select(Group).where(Group.name == name))
        if group is None:
            group = await service.create_group(session, name, f"from {issuer}")
        await service.add_member(session, group.id, user.id)
    if removed:
        gone = select(Group.id).where(Group.name.in_(removed))
        await session.execute(
            delete(GroupMember).where(
                GroupMember.user_id == user.id, GroupMember.group_id.in_(gone)
            )
        )
    await audit.append(
        session,
        type="auth:groups_changed",
        actor=actor,
        subject=f"user:{user.id}",
        data={"added": added, "removed": removed, "source": issuer},
    )
