"""The Slack messages (Block Kit), pure: a review request with its decision buttons, the
same message once decided (buttons gone, who decided and when), reminders, and the
"request changes" modal. No IO."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from community_ade.approvals.review_request import ReviewRequest
from community_ade.errors import InvalidInput

APPROVE, REJECT, REQUEST_CHANGES = "ade_approve", "ade_reject", "ade_request_changes"
ACTIONS = {APPROVE: "approve", REJECT: "reject", REQUEST_CHANGES: "request_changes"}
CHANGES_MODAL = "ade_changes"
COMMENT_BLOCK, COMMENT_INPUT = "comment", "comment_input"
MAX_VALUE_CHARS = 2000  # Slack's limit on a button's value and a view's private_metadata
MAX_COMMENT_CHARS = 3000
_DIGEST = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Decided:
    """How a task left review, for the updated message: e.g. "Approved by carol via
    Slack, bob" at ``at``."""

    verb: str  # "Approved", "Rejected", "Changes requested", "Cancelled", "Expired", …
    by: tuple[str, ...]  # names, each maybe with where they decided (" via Slack")
    at: datetime | None
    comment: str = ""


def escape(text: str) -> str:
    """Text for mrkdwn: Slack reads &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def button_value(task_id: uuid.UUID, digest: str) -> str:
    return json.dumps({"task": str(task_id), "digest": digest}, separators=(",", ":"))


def parse_button_value(value: Any) -> tuple[uuid.UUID, str]:
    """The task and the digest a button (or modal) carries; anything else ``InvalidInput``."""
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        raise InvalidInput("not a decision button of Community ADE")
    try:
        data = json.loads(value)
        task_id = uuid.UUID(str(data["task"]))
        digest = str(data["digest"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("not a decision button of Community ADE") from None
    if not 1 <= len(digest) <= 64 or not set(digest) <= _DIGEST:
        raise InvalidInput("the button carries no preview digest")
    return task_id, digest


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "no deadline"


def _people(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "nobody yet"


def summary_text(req: ReviewRequest) -> str:
    """The notification text (and the fallback of clients that show no blocks)."""
    risk = "not scored" if req.risk is None else f"{req.risk:.1f}"
    return f"Review requested: {escape(req.title)} (risk {risk})"


def review_blocks(req: ReviewRequest, decided: Decided | None = None) -> list[dict[str, Any]]:
    """The message about ``req``: with the decision buttons while it is open, with
    ``decided`` (and no buttons) once it is not."""
    by = escape(req.submitter) + (f" (agent {escape(req.agent)})" if req.agent else "")
    risk = "not scored" if req.risk is None else f"{req.risk:.1f}"
    if req.risk_level:
        risk += f" ({escape(req.risk_level)})"
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=f"Review: {req.title}"[:150], emoji=False)),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=f"*Task*\n`{escape(req.task_type)}`"),
                MarkdownTextObject(text=f"*Submitted by*\n{by}"),
                MarkdownTextObject(text=f"*Risk*\n{risk}"),
                MarkdownTextObject(text=f"*Review deadline*\n{_when(req.review_deadline)}"),
            ]
        ),
    ]
    if req.risk_inputs:
        inputs = " · ".join(
            f"{r.name} {r.value:.0f} × {r.weight:g} = {r.points:.1f}" for r in req.risk_inputs
        )
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"Risk inputs: {inputs}")]))
    if req.slots:
        lines = []
        for slot in req.slots:
            if slot.filled_by is not None:
                lines.append(f"• {escape(slot.label)}: approved by {escape(slot.filled_by)}")
            else:
                names = [escape(p.name) for p in slot.eligible]
                lines.append(f"• {escape(slot.label)}: open, for {_people(names)}")
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text="*Approvals*\n" + "\n".join(lines)[:2900]))
        )
    if req.preview is not None:
        body = escape(req.preview.text.replace("```", "'''")) or "(empty)"
        more = "\n… (more in the dashboard)" if req.preview.truncated else ""
        head = f"*Change* ({req.preview.lines_changed} lines)"
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=f"{head}\n```{body}```{more}"[:3000]))
        )
    digest = (req.digest or "")[:12]
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"Preview digest `{digest}…` · <{req.link}|Open in the dashboard>"
                )
            ]
        )
    )
    if decided is not None:
        line = f"*{escape(decided.verb)}*"
        if decided.by:
            line += " by " + escape(", ".join(decided.by))
        if decided.at is not None:
            line += f", {_when(decided.at)}"
        if decided.comment:
            line += f"\n> {escape(decided.comment[:500])}"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=line)))
    elif req.digest:
        value = button_value(req.task_id, req.digest)
        blocks.append(
            ActionsBlock(
                block_id="ade_decision",
                elements=[
                    ButtonElement(text="Approve", action_id=APPROVE, value=value, style="primary"),
                    ButtonElement(
                        text="Reject",
                        action_id=REJECT,
                        value=value,
                        style="danger",
                        confirm=ConfirmObject(
                            title="Reject this task?",
                            text=f"Reject “{req.title[:200]}”: one rejection vetoes it.",
                            confirm="Reject",
                            deny="Cancel",
                        ),
                    ),
                    ButtonElement(text="Request changes", action_id=REQUEST_CHANGES, value=value),
                ],
            )
        )
    return [b.to_dict() for b in blocks]


def reminder_text(req: ReviewRequest) -> str:
    """A thread reply telling the reviewers again (a reminder, an escalation)."""
    still = "; ".join(req.blocked_by) or "a decision"
    waiting = _people([p.name for p in req.reviewers])
    return (
        f"Reminder: “{escape(req.title)}” still waits on review ({escape(still)}); "
        f"deadline {_when(req.review_deadline)}. Eligible: {escape(waiting)}. "
        f"<{req.link}|Open in the dashboard>"
    )


def changes_modal(task_id: uuid.UUID, digest: str, title: str) -> dict[str, Any]:
    """The modal that asks for the comment a change request needs."""
    view = View(
        type="modal",
        callback_id=CHANGES_MODAL,
        private_metadata=button_value(task_id, digest),
        title=PlainTextObject(text="Request changes"),
        submit=PlainTextObject(text="Send back"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=f"*{escape(title[:200])}*")),
            InputBlock(
                block_id=COMMENT_BLOCK,
                label=PlainTextObject(text="What should change?"),
                element=PlainTextInputElement(
                    action_id=COMMENT_INPUT, multiline=True, max_length=MAX_COMMENT_CHARS
                ),
            ),
        ],
    )
    return view.to_dict()
