"""Shell profiles over storage: admins define them (audited), everyone reads them, and
the shell executor looks them up at plan and apply (``StoredShellProfiles``).

Saving or deleting a profile changes what its tasks would run: a task approved under the
old profile is re-planned by the worker before it applies, its preview differs, and it
goes back to review (or, its profile gone, is refused).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.service import actor_of
from community_ade.audit import log as audit
from community_ade.auth.principal import Permission, Principal, require
from community_ade.errors import Conflict, InvalidInput, NotFound
from community_ade.execution.executors.shell_profile import PROFILE_NAME, ShellProfile
from community_ade.storage.models import ShellProfileRow, utcnow


def profile_of(row: ShellProfileRow) -> ShellProfile:
    """The stored document as a profile (``InvalidInput`` if it no longer validates)."""
    try:
        return ShellProfile.model_validate(row.document)
    except ValidationError as exc:
        raise InvalidInput(f"stored shell profile {row.name!r} is not valid: {exc}") from None


def _digest(profile: ShellProfile) -> str:
    encoded = json.dumps(profile.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


class ShellProfileService:
    def __init__(self, session: AsyncSession, *, now: Callable[[], datetime] = utcnow) -> None:
        self.session = session
        self.now = now

    async def list_profiles(self, principal: Principal) -> list[ShellProfileRow]:
        require(principal, Permission.TASK_READ)
        rows = await self.session.scalars(select(ShellProfileRow).order_by(ShellProfileRow.name))
        return list(rows.all())

    async def get(self, principal: Principal, name: str) -> ShellProfileRow:
        require(principal, Permission.TASK_READ)
        row = await self.session.get(ShellProfileRow, name)
        if row is None:
            raise NotFound(f"there is no shell profile {name!r}")
        return row

    async def put(
        self,
        principal: Principal,
        name: str,
        profile: ShellProfile,
        *,
        expected_version: int | None = None,
    ) -> ShellProfileRow:
        """Create or replace ``name``; with ``expected_version``, only if the stored
        version is that one (0: only if it does not exist yet), else ``Conflict``."""
        require(principal, Permission.SHELL_PROFILE_WRITE)
        if re.fullmatch(PROFILE_NAME, name) is None:
            raise InvalidInput(f"{name!r} is not a profile name: 1-64 of a-z 0-9 . _ -")
        row = await self.session.get(ShellProfileRow, name, with_for_update=True)
        current = 0 if row is None else row.version
        if expected_version is not None and expected_version != current:
            raise Conflict(
                f"shell profile {name!r} is at version {current}, not {expected_version}",
                version=current,
            )
        document = profile.model_dump(mode="json", exclude_defaults=False)
        if row is None:
            row = ShellProfileRow(name=name, document=document, version=1)
            self.session.add(row)
        else:
            row.document = document
            row.version = current + 1
            row.updated_at = self.now()
        row.updated_by = principal.user_id
        try:
            await self.session.flush()
        except IntegrityError:  # created by a concurrent request since we looked
            raise Conflict(f"shell profile {name!r} was created meanwhile; try again") from None
        await self._audit("saved", principal, name, version=row.version, digest=_digest(profile))
        return row

    async def delete(self, principal: Principal, name: str) -> None:
        require(principal, Permission.SHELL_PROFILE_WRITE)
        row = await self.session.get(ShellProfileRow, name)
        if row is None:
            raise NotFound(f"there is no shell profile {name!r}")
        version = row.version
        await self.session.delete(row)
        await self.session.flush()
        await self._audit("deleted", principal, name, version=version)

    async def _audit(self, what: str, principal: Principal, name: str, **data: object) -> None:
        await audit.append(
            self.session,
            type=f"policy:shell_profile_{what}",
            actor=actor_of(principal),
            subject=f"shell_profile:{name}",
            data=data,
        )


@dataclass(frozen=True)
class StoredShellProfiles:
    """The executor's view of the stored profiles (a ``ShellProfileSource``): each
    lookup reads the current row, through a session ``open_session`` gives."""

    open_session: Callable[[], AbstractAsyncContextManager[AsyncSession]]

    @classmethod
    def in_session(cls, session: AsyncSession) -> StoredShellProfiles:
        """Lookups inside an open transaction (a submit: on SQLite a second connection
        would wait for the write lock this one holds)."""
        return cls(lambda: contextlib.nullcontext(session))

    @classmethod
    def of(cls, sessions: async_sessionmaker[AsyncSession]) -> StoredShellProfiles:
        """Lookups each in a short session of their own (the worker)."""
        return cls(sessions)

    async def get(self, name: str) -> ShellProfile | None:
        async with self.open_session() as session:
            row = await session.get(ShellProfileRow, name, populate_existing=True)
            return None if row is None else profile_of(row)
