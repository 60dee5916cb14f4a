"""Stored secrets: name → sealed value in the ``secrets`` table (IO).

Writes are audited (``secret:stored``, ``secret:deleted``) with the name and the actor,
never the value; reads return the row whose ``ciphertext`` no route or page shows. Only
``SecretVault.reveal``, used by the worker at apply, opens values. Callers check
permissions (``secret_read`` / ``secret_write``); the functions trust them, as the
operator's CLI does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.audit import log as audit
from community_ade.audit.chain import Actor
from community_ade.errors import InvalidInput, NotFound
from community_ade.secrets.keys import SecretCipher
from community_ade.secrets.references import NAME_PATTERN
from community_ade.settings import Settings
from community_ade.storage.db import flush_unique
from community_ade.storage.models import Secret, utcnow

# Shorter values would make scrubbing them from recorded output meaningless (and are
# rarely credentials); longer ones are not a header, a token or a password.
MIN_VALUE_CHARS = 8
MAX_VALUE_CHARS = 16 * 1024
MAX_DESCRIPTION_CHARS = 500
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"secret name {name!r} must be 1-64 characters a-z 0-9 . _ -, starting with a "
            "letter or digit"
        )


def _check_value(value: str) -> None:
    if not MIN_VALUE_CHARS <= len(value) <= MAX_VALUE_CHARS:
        raise InvalidInput(f"a secret value must be {MIN_VALUE_CHARS}-{MAX_VALUE_CHARS} characters")
    if "\x00" in value:
        raise InvalidInput("a secret value must not contain NUL characters")


@dataclass(frozen=True)
class Stored:
    secret: Secret
    created: bool


async def put_secret(
    session: AsyncSession,
    cipher: SecretCipher,
    name: str,
    value: str,
    *,
    description: str | None,
    actor: Actor,
    user_id: uuid.UUID | None,
) -> Stored:
    """Create or replace ``name``; ``description`` None keeps the current one."""
    check_name(name)
    _check_value(value)
    if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(f"description must be at most {MAX_DESCRIPTION_CHARS} characters")
    row = await session.get(Secret, name, with_for_update=True)
    now = utcnow()
    created = row is None
    if row is None:
        row = Secret(name=name, created_by=user_id, created_at=now, description="")
        session.add(row)
    row.ciphertext = cipher.seal(name, value)
    if description is not None:
        row.description = description
    row.updated_by, row.updated_at = user_id, now
    await flush_unique(session, f"secret {name!r}")  # created by another request meanwhile
    await audit.append(
        session,
        type="secret:stored",
        actor=actor,
        subject=f"secret:{name}",
        data={"name": name, "created": created},
    )
    return Stored(row, created)


async def get_secret(session: AsyncSession, name: str) -> Secret:
    row = await session.get(Secret, name)
    if row is None:
        raise NotFound(f"no secret {name!r}")
    return row


async def list_secrets(session: AsyncSession) -> list[Secret]:
    return list(await session.scalars(select(Secret).order_by(Secret.name)))


async def delete_secret(session: AsyncSession, name: str, *, actor: Actor) -> None:
    """Delete ``name``. Tasks that refer to it fail at apply (their previews keep the
    reference); new tasks cannot refer to it."""
    row = await get_secret(session, name)
    await session.delete(row)
    await session.flush()
    await audit.append(
        session, type="secret:deleted", actor=actor, subject=f"secret:{name}", data={"name": name}
    )


async def known_names(session: AsyncSession, names: Iterable[str]) -> frozenset[str]:
    wanted = sorted(set(names))
    if not wanted:
        return frozenset()
    found = await session.scalars(select(Secret.name).where(Secret.name.in_(wanted)))
    return frozenset(found)


async def rekey(session: AsyncSession, cipher: SecretCipher, *, actor: Actor) -> int:
    """Seal every value again with the first key (after a rotation); the count."""
    rows = list(await session.scalars(select(Secret).with_for_update()))
    for row in rows:
        row.ciphertext = cipher.seal(row.name, cipher.open(row.name, row.ciphertext))
    await session.flush()
    await audit.append(
        session, type="secret:rekeyed", actor=actor, subject="secrets", data={"count": len(rows)}
    )
    return len(rows)


class SecretVault:
    """The ``SecretSource`` of applies: opens values in a short transaction of its own
    and notes when each secret was last used. The key is read at the first use, so a
    worker that never sends a secret needs none."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._cipher: SecretCipher | None = None

    async def reveal(self, names: Collection[str]) -> Mapping[str, str]:
        wanted = sorted(set(names))
        async with self.sessions.begin() as session:
            rows = list(await session.scalars(select(Secret).where(Secret.name.in_(wanted))))
            if rows:
                await session.execute(
                    update(Secret)
                    .where(Secret.name.in_([r.name for r in rows]))
                    .values(last_used_at=utcnow())
                )
        if self._cipher is None:
            self._cipher = SecretCipher.from_settings(self.settings)
        return {row.name: self._cipher.open(row.name, row.ciphertext) for row in rows}
