"""Slack's interactivity requests (IO): a decision button clicked, the "request changes"
modal submitted.

``verify`` authenticates the raw request (signature and timestamp, ``slack_sdk``'s
``SignatureVerifier``) before anything of it is parsed. A decision goes through the
batch decision helper the API and the dashboard use (``decide_each``: the review
engine in a savepoint), as the ADE user linked to the clicker, so every refusal is the
engine's own (self review, not eligible, stale preview, already decided) and is shown
to the clicker as an ephemeral message. Each interaction is recorded under a key of its
own (``slack_actions``) in the decision's transaction: a retried delivery gets the first
answer and never decides twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from community_ade.approvals.batch import BatchDecision, ItemResult, decide_each
from community_ade.approvals.reviews import DecisionSurface, ReviewAction, ReviewService
from community_ade.auth.service import human_principal
from community_ade.errors import AdeError, InvalidInput, Unauthenticated
from community_ade.integrations.slack import config
from community_ade.integrations.slack.blocks import (
    ACTIONS,
    CHANGES_MODAL,
    COMMENT_BLOCK,
    COMMENT_INPUT,
    MAX_COMMENT_CHARS,
    REQUEST_CHANGES,
    changes_modal,
    escape,
    parse_button_value,
)
from community_ade.storage.models import SlackAction, Task

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # an interaction payload is a few KiB
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
DONE = {"approve": "approved", "reject": "rejected", "request_changes": "asked for changes on"}
# What a clicker reads for each refusal of the engine (the code's own message follows).
REFUSED = {
    "self_review": "You cannot review this task: you submitted it (or own its agent).",
    "not_eligible": "You are not eligible to review this task.",
    "stale_preview": "The change was updated since this message was posted: review the current "
    "preview in the dashboard.",
    "already_decided": "This task was already decided.",
    "forbidden": "Your Community ADE account may not review tasks.",
    "not_found": "This task no longer exists.",
}


def verify(signing_secret: str, body: bytes, timestamp: str | None, signature: str | None) -> None:
    """``Unauthenticated`` unless Slack signed ``body`` with the app's signing secret
    within the last five minutes."""
    if len(body) > MAX_BODY_BYTES:
        raise Unauthenticated("not a Slack request")  # nothing that large is signed by Slack
    if timestamp is None or signature is None or not _TIMESTAMP.fullmatch(timestamp):
        raise Unauthenticated("a Slack request needs X-Slack-Request-Timestamp and signature")
    try:
        valid = SignatureVerifier(signing_secret).is_valid(body, timestamp, signature)
    except UnicodeDecodeError:
        valid = False
    if not valid:
        raise Unauthenticated("the Slack signature or timestamp is not valid")


def parse_payload(body: bytes) -> dict[str, Any]:
    """The ``payload=`` JSON of a (verified) form-encoded interaction."""
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=10)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        raise InvalidInput("an interaction carries a payload= JSON field") from None
    if not isinstance(payload, dict):
        raise InvalidInput("an interaction payload is a JSON object")
    return payload


@dataclass(frozen=True)
class Answer:
    """What to tell the clicker: the HTTP body (a modal's errors) and/or an ephemeral
    message in the channel of the button."""

    body: dict[str, Any] | None = None
    ephemeral: str | None = None
    channel: str | None = None
    user: str | None = None


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


class Interactions:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], client: AsyncWebClient):
        self.sessions = sessions
        self.client = client

    async def handle(self, payload: Mapping[str, Any]) -> Answer:
        kind = payload.get("type")
        slack_user = _get(payload, "user", "id")
        if not isinstance(slack_user, str):
            raise InvalidInput("an interaction names its user")
        config.check_slack_user(slack_user)
        if kind == "block_actions":
            return await self._button(payload, slack_user)
        if kind == "view_submission" and _get(payload, "view", "callback_id") == CHANGES_MODAL:
            return await self._changes_submitted(payload, slack_user)
        return Answer()  # other interactions (a modal closed, …) need nothing

    async def _button(self, payload: Mapping[str, Any], slack_user: str) -> Answer:
        actions = payload.get("actions")
        if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
            raise InvalidInput("a button interaction carries one action")
        action = actions[0]
        action_id = action.get("action_id")
        if action_id not in ACTIONS:
            return Answer()
        task_id, digest = parse_button_value(action.get("value"))
        channel = _get(payload, "channel", "id") or _get(payload, "container", "channel_id")
        channel = channel if isinstance(channel, str) else None
        if action_id == REQUEST_CHANGES:
            # The comment it needs is asked in a modal; its submission decides.
            trigger = payload.get("trigger_id")
            if not isinstance(trigger, str):
                raise InvalidInput("a button interaction carries a trigger_id")
            title = await self._title(task_id)
            try:
                await self.client.views_open(
                    trigger_id=trigger, view=changes_modal(task_id, digest, title)
                )
            except config.SLACK_FAILURES as exc:  # e.g. the trigger expired (3 s)
                log.info("could not open the request-changes form: %s", exc)
                return Answer(
                    ephemeral="Could not open the form: click again, or request changes "
                    "in the dashboard.",
                    channel=channel,
                    user=slack_user,
                )
            return Answer()
        action_ts = action.get("action_ts")
        if not isinstance(action_ts, str) or not 1 <= len(action_ts) <= 40:
            raise InvalidInput("a button interaction carries its action_ts")
        # One click, one key: a retry of it repeats the key, a new click does not.
        key = f"button|{slack_user}|{action_ts}|{action_id}"
        _, message = await self._decide(
            key, slack_user, task_id, ReviewAction(ACTIONS[action_id]), digest, ""
        )
        return Answer(ephemeral=message, channel=channel, user=slack_user)

    async def _changes_submitted(self, payload: Mapping[str, Any], slack_user: str) -> Answer:
        view = payload["view"]
        task_id, digest = parse_button_value(view.get("private_metadata"))
        comment = _get(view, "state", "values", COMMENT_BLOCK, COMMENT_INPUT, "value")
        if not isinstance(comment, str) or not comment.strip():
            return Answer(body=_modal_error("Say what should change."))
        comment = comment[:MAX_COMMENT_CHARS]
        key = f"view|{slack_user}|{view.get('id')}|{view.get('hash')}"
        code, message = await self._decide(
            key, slack_user, task_id, ReviewAction.REQUEST_CHANGES, digest, comment
        )
        if code != "ok":  # refused: said in the modal, which stays open
            return Answer(body=_modal_error(message))
        return Answer(body={"response_action": "clear"})

    async def _title(self, task_id: uuid.UUID) -> str:
        async with self.sessions() as session:
            task = await session.get(Task, task_id)
            return task.title if task else "this task"

    async def _decide(
        self,
        key: str,
        slack_user: str,
        task_id: uuid.UUID,
        action: ReviewAction,
        digest: str,
        comment: str,
    ) -> tuple[str, str]:
        """Decide as the ADE user of ``slack_user``, once per ``key``: the result code
        (``ok`` or the refusal's) and the sentence for the clicker."""
        digest_key = hashlib.sha256(key.encode()).hexdigest()
        try:
            async with self.sessions.begin() as session:
                earlier = await session.get(SlackAction, digest_key)
                if earlier is not None:  # a retry: the first answer again
                    return earlier.result, earlier.message
                user = await config.ade_user_of(session, self.client, slack_user)
                if user is None or user.disabled_at is not None:
                    return "not_linked", (
                        "Your Slack account is not linked to an enabled Community ADE user: "
                        "an admin links it (`ade slack link`), or sets your e-mail address "
                        "to the one of your Slack profile."
                    )
                principal = await human_principal(session, user)
                decision = BatchDecision(task_id, action, digest, comment)
                try:
                    [result] = await decide_each(
                        session,
                        ReviewService(session),
                        principal,
                        [decision],
                        surface=DecisionSurface.SLACK,
                    )
                except AdeError as exc:  # refused whole: the role may not review at all
                    result = ItemResult(task_id, exc.code, detail=exc.message)
                task = await session.get(Task, task_id)
                message = sentence(result, action, task.title if task else "this task")
                if task is not None:
                    session.add(
                        SlackAction(
                            key=digest_key,
                            task_id=task_id,
                            user_id=user.id,
                            action=action.value,
                            result=result.result,
                            message=message,
                        )
                    )
                return result.result, message
        except IntegrityError:  # the same interaction delivered twice at once
            async with self.sessions() as session:
                earlier = await session.get(SlackAction, digest_key)
                if earlier is None:
                    raise
                return earlier.result, earlier.message


def sentence(result: ItemResult, action: ReviewAction, title: str) -> str:
    """What the clicker reads about their decision: done, or the engine's refusal."""
    if result.result == "ok":
        return f"You {DONE[action.value]} “{escape(title)}”: it is {result.state}."
    why = REFUSED.get(result.result, "Your decision was refused.")
    return f"{why} ({result.detail})" if result.detail else why


def _modal_error(text: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {COMMENT_BLOCK: text[:1000]}}


async def post_ephemeral(client: AsyncWebClient, answer: Answer) -> None:
    """Show ``answer`` to its clicker only (a follow-up after the HTTP answer)."""
    if answer.ephemeral is None or answer.channel is None or answer.user is None:
        return
    try:
        await client.chat_postEphemeral(
            channel=answer.channel, user=answer.user, text=answer.ephemeral
        )
    except config.SLACK_FAILURES as exc:
        log.info("could not tell Slack user %s: %s", answer.user, exc)
