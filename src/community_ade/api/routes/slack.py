"""Slack approvals: the admin's configuration, and the interactivity endpoint Slack calls
when a reviewer clicks a decision button (docs/notifications.md#slack)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Request, Response, status
from fastapi.responses import JSONResponse
from slack_sdk.web.async_client import AsyncWebClient

from community_ade.api.deps import PrincipalDep, RuntimeDep, SessionDep
from community_ade.api.slack_schemas import (
    SlackChannelPut,
    SlackConfigOut,
    SlackConfigPut,
    SlackUserPut,
)
from community_ade.approvals.service import actor_of
from community_ade.auth import service as auth
from community_ade.auth.principal import Permission, require
from community_ade.errors import NotFound
from community_ade.integrations.slack import config, interactions
from community_ade.secrets.keys import SecretCipher

router = APIRouter(prefix="/integrations/slack", tags=["slack"])
# Slack gives an interaction 3 s; a Web API call made while answering must fit in it.
ANSWER_SECONDS = 2
# Follow-ups (ephemeral messages) run after the answer; kept here so they are not
# garbage-collected while they run.
_follow_ups: set[asyncio.Task[None]] = set()


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


@router.get("", response_model=SlackConfigOut)
async def get_config(principal: PrincipalDep, session: SessionDep) -> SlackConfigOut:
    """The Slack configuration, without the bot token and signing secret."""
    require(principal, Permission.SECRET_WRITE)
    return SlackConfigOut.model_validate(await config.describe(session))


@router.put("", response_model=SlackConfigOut)
async def put_config(
    body: SlackConfigPut, principal: PrincipalDep, session: SessionDep, runtime: RuntimeDep
) -> SlackConfigOut:
    """Set the Slack app's bot token and signing secret (sealed, never returned), the
    default channel and whether eligible reviewers get a DM."""
    require(principal, Permission.SECRET_WRITE)
    await config.configure(
        session,
        SecretCipher.from_settings(runtime.settings),
        bot_token=_secret(body.bot_token),
        signing_secret=_secret(body.signing_secret),
        default_channel=body.default_channel,
        dm_reviewers=body.dm_reviewers,
        actor=actor_of(principal),
        user_id=principal.id,
    )
    return SlackConfigOut.model_validate(await config.describe(session))


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def delete_config(principal: PrincipalDep, session: SessionDep) -> Response:
    """Forget the Slack configuration: nothing is posted any more."""
    require(principal, Permission.SECRET_WRITE)
    await config.remove(session, actor=actor_of(principal))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/channels/{kind}/{name}", response_model=SlackConfigOut)
async def put_channel(
    kind: Literal["rule", "group"],
    name: Annotated[str, Path(min_length=1, max_length=200)],
    body: SlackChannelPut,
    principal: PrincipalDep,
    session: SessionDep,
) -> SlackConfigOut:
    """Post the review requests of tasks that matched policy rule (or need reviewer group)
    ``name`` to ``channel``; ``null`` removes the route."""
    require(principal, Permission.SECRET_WRITE)
    await config.set_channel(session, kind, name, body.channel, actor=actor_of(principal))
    return SlackConfigOut.model_validate(await config.describe(session))


@router.put("/users/{username}", response_model=SlackConfigOut)
async def put_user_link(
    username: Annotated[str, Path(min_length=1, max_length=64)],
    body: SlackUserPut,
    principal: PrincipalDep,
    session: SessionDep,
) -> SlackConfigOut:
    """Link a Slack member id to an ADE user (``null`` unlinks). Without a link, a Slack
    account is matched by the e-mail address of its profile."""
    require(principal, Permission.USER_ADMIN)
    user = await auth.get_user_by_name(session, username)
    if body.slack_user_id is None:
        await config.unlink_user(session, user.id)
    else:
        await config.link_user(session, user.id, body.slack_user_id)
    return SlackConfigOut.model_validate(await config.describe(session))


# Slack's, not a client's: out of the OpenAPI document (docs/notifications.md describes it).
@router.post("/interactivity", include_in_schema=False)
async def interactivity(
    request: Request,
    runtime: RuntimeDep,
    x_slack_request_timestamp: Annotated[str | None, Header(max_length=20)] = None,
    x_slack_signature: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """Slack's Request URL for interactivity: authenticated by Slack's signature (not a
    token), answered within 3 s. A refusal is shown to the clicker only."""
    body = await request.body()  # bounded by ADE_MAX_BODY_BYTES; verify bounds it further
    async with runtime.sessions() as session:
        slack = await config.load(session, SecretCipher.from_settings(runtime.settings))
    if slack is None:
        raise NotFound("Slack is not configured")
    interactions.verify(slack.signing_secret, body, x_slack_request_timestamp, x_slack_signature)
    payload = interactions.parse_payload(body)
    client = AsyncWebClient(
        token=slack.bot_token, base_url=runtime.settings.slack_api_url, timeout=ANSWER_SECONDS
    )
    answer = await interactions.Interactions(runtime.sessions, client).handle(payload)
    if answer.ephemeral is not None:
        follow_up = asyncio.create_task(interactions.post_ephemeral(client, answer))
        _follow_ups.add(follow_up)
        follow_up.add_done_callback(_follow_ups.discard)
    if answer.body is not None:
        return JSONResponse(answer.body)
    return Response(status_code=status.HTTP_200_OK)
