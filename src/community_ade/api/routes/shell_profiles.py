"""Shell profiles: the commands shell tasks may run, defined by admins, read by anyone
who may read tasks (so submitters know what exists and which parameters to fill in)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from community_ade.api.deps import PrincipalDep, SessionDep
from community_ade.api.schemas import ShellProfileOut
from community_ade.execution.executors.shell_profile import PROFILE_NAME, ShellProfile
from community_ade.execution.shell_profiles import ShellProfileService

router = APIRouter(tags=["shell profiles"])


async def get_profiles(session: SessionDep) -> ShellProfileService:
    return ShellProfileService(session)


ProfilesDep = Annotated[ShellProfileService, Depends(get_profiles)]
ProfileName = Annotated[str, Path(min_length=1, max_length=64, pattern=PROFILE_NAME)]


@router.get("/shell-profiles", response_model=list[ShellProfileOut])
async def list_profiles(principal: PrincipalDep, profiles: ProfilesDep) -> list[ShellProfileOut]:
    """Every profile, by name."""
    return [ShellProfileOut.of(row) for row in await profiles.list_profiles(principal)]


@router.get("/shell-profiles/{name}", response_model=ShellProfileOut)
async def get_profile(
    name: ProfileName, principal: PrincipalDep, profiles: ProfilesDep
) -> ShellProfileOut:
    return ShellProfileOut.of(await profiles.get(principal, name))


@router.put("/shell-profiles/{name}", response_model=ShellProfileOut)
async def put_profile(
    name: ProfileName,
    body: ShellProfile,
    principal: PrincipalDep,
    profiles: ProfilesDep,
    expected_version: Annotated[
        int | None,
        Query(ge=0, le=2**31, description="Save only over this version (0: only if new)."),
    ] = None,
) -> ShellProfileOut:
    """Create or replace a profile (admins). Tasks naming it are planned with the new
    version from now on; approved ones whose preview changes go back to review."""
    row = await profiles.put(principal, name, body, expected_version=expected_version)
    return ShellProfileOut.of(row)


@router.delete("/shell-profiles/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_profile(
    name: ProfileName, principal: PrincipalDep, profiles: ProfilesDep
) -> Response:
    """Remove a profile (admins); tasks naming it can no longer be submitted or applied."""
    await profiles.delete(principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
