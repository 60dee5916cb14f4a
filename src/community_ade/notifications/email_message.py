"""The e-mails that tell a reviewer a task waits on them (pure: no IO).

One message per task, or one digest of several, each ``multipart/alternative`` with a
plain-text and an HTML part. Everything a submitter controls (title, names, the diff
excerpt) is escaped in the HTML part and cut to a bound in both; the subject is one line.
The decision link opens a confirmation page: nothing is decided by following it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from community_ade.approvals.review_request import Person, ReviewRequest

SUBJECT_TITLE_CHARS = 120
TITLE_CHARS = 300
NAME_CHARS = 100
EXCERPT_CHARS = 4000
DIGEST_MAX_TASKS = 50
FOOTER = "You get this because you may review these tasks in Community ADE."

# Why the e-mail was sent: the audit event that asked for it.
KIND_LINES = {
    "requested": "A task waits on your review.",
    "reminder": "Reminder: a task still waits on your review.",
    "escalated": "Escalated to you: a task waits on your review.",
}


@dataclass(frozen=True)
class Item:
    """One task of a message: what the engine says about it, and this reviewer's link."""

    request: ReviewRequest
    kind: str
    decide_url: str


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def recipient(person: Person) -> Address:
    if person.email is None:
        raise ValueError(f"{person.name} has no e-mail address")
    user, _, domain = person.email.rpartition("@")
    return Address(_one_line(person.display_name or person.name, NAME_CHARS), user, domain)


def review_message(
    sender: str, to: Person, items: Sequence[Item], *, now: datetime
) -> EmailMessage:
    """One task (``items`` of one) or a digest (several, at most ``DIGEST_MAX_TASKS``
    shown) for ``to``."""
    if not items:
        raise ValueError("a message needs at least one task")
    shown = items[:DIGEST_MAX_TASKS]
    message = EmailMessage()
    if len(items) == 1:
        request = items[0].request
        message["Subject"] = f"[ADE] Review: {_one_line(request.title, SUBJECT_TITLE_CHARS)}"
    else:
        message["Subject"] = f"[ADE] {len(items)} tasks wait on your review"
    message["From"] = sender
    message["To"] = recipient(to)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    # Bulk mail, not a person: no auto-replies from vacation responders.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    more = len(items) - len(shown)
    message.set_content(_text(to, shown, more))
    message.add_alternative(_html(to, shown, more), subtype="html")
    return message


def _facts(request: ReviewRequest) -> list[tuple[str, str]]:
    who = request.submitter + (f" (agent {request.agent})" if request.agent else "")
    facts = [("Type", request.task_type), ("Submitted by", who)]
    if request.risk is not None:
        inputs = ", ".join(f"{i.name} {i.value:.0f}" for i in request.risk_inputs)
        level = f" {request.risk_level}" if request.risk_level else ""
        facts.append(("Risk", f"{request.risk:.0f}{level} ({inputs})" if inputs else level))
    for slot in request.open_slots:
        people = ", ".join(p.name for p in slot.eligible) or "nobody eligible"
        facts.append(("Needs", f"{slot.label}: {people}"))
    if request.review_deadline is not None:
        facts.append(("Decide by", request.review_deadline.strftime("%Y-%m-%d %H:%M UTC")))
    if request.digest:
        facts.append(("Preview digest", request.digest))
    return [(k, _one_line(v, 500)) for k, v in facts]


def _excerpt(request: ReviewRequest) -> str:
    if request.preview is None:
        return ""
    text = request.preview.text[:EXCERPT_CHARS]
    if request.preview.truncated or len(request.preview.text) > EXCERPT_CHARS:
        text += "\n… (the whole change is in the dashboard)"
    return text


def _text(to: Person, items: Sequence[Item], more: int) -> str:
    lines = [f"Hello {_one_line(to.display_name or to.name, NAME_CHARS)},", ""]
    for item in items:
        request = item.request
        lines += [KIND_LINES.get(item.kind, KIND_LINES["requested"]), ""]
        lines.append(_one_line(request.title, TITLE_CHARS))
        lines += [f"  {key}: {value}" for key, value in _facts(request)]
        excerpt = _excerpt(request)
        if excerpt:
            lines += ["", "Change (excerpt):", *("  " + line for line in excerpt.splitlines())]
        lines += [
            "",
            f"Decide (you confirm on the page, logged in): {item.decide_url}",
            f"Open in the dashboard: {request.link}",
            "",
        ]
    if more:
        lines += [f"… and {more} more task(s): see your review queue.", ""]
    lines.append(FOOTER)
    return "\n".join(lines) + "\n"


def _html(to: Person, items: Sequence[Item], more: int) -> str:
    e = html.escape
    parts = [
        '<!doctype html><html><body style="font-family:sans-serif">',
        f"<p>Hello {e(_one_line(to.display_name or to.name, NAME_CHARS))},</p>",
    ]
    for item in items:
        request = item.request
        rows = "".join(
            f'<tr><th align="left">{e(key)}</th><td>{e(value)}</td></tr>'
            for key, value in _facts(request)
        )
        parts += [
            f"<p>{e(KIND_LINES.get(item.kind, KIND_LINES['requested']))}</p>",
            f"<h2>{e(_one_line(request.title, TITLE_CHARS))}</h2>",
            f"<table>{rows}</table>",
        ]
        excerpt = _excerpt(request)
        if excerpt:
            parts.append(f'<pre style="background:#f4f4f4;padding:8px">{e(excerpt)}</pre>')
        parts.append(
            f'<p><a href="{e(item.decide_url)}">Decide</a> (you confirm on the page, '
            f'logged in) · <a href="{e(request.link)}">Open in the dashboard</a></p><hr>'
        )
    if more:
        parts.append(f"<p>… and {more} more task(s): see your review queue.</p>")
    parts.append(f"<p><small>{e(FOOTER)}</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
