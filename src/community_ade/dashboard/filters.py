"""Jinja filters: how values look on a page (pure; no IO)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from community_ade.approvals.timeouts import Clocks, ReviewTimeout, clocks_from_document

# The bands of ``approvals.risk.RiskScore.level`` (the quorum steps), as score ranges for
# the queue's risk filter: [low, high).
RISK_BANDS: dict[str, tuple[float, float]] = {
    "low": (0.0, 50.0),
    "medium": (50.0, 75.0),
    "high": (75.0, 101.0),
}
DIFF_FORMATTER = HtmlFormatter(nowrap=True)


def risk_level(score: float | None) -> str:
    if score is None:
        return "none"
    return next(level for level, (low, high) in RISK_BANDS.items() if low <= score < high)


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', 'in 2 h': short relative times for tables."""
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)} {unit}"
            break
    else:
        text = f"{int(seconds)} s"
    return f"in {text}" if future else f"{text} ago"


def iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def highlight_diff(diff: str) -> Markup:
    """A unified diff with Pygments' diff colouring, line by line so long previews stay
    readable; the content is escaped by Pygments."""
    return Markup(highlight(diff, DiffLexer(), DIFF_FORMATTER))


def short_id(value: Any) -> str:
    return str(value)[:8]


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def review_timeout_text(clocks: Clocks | dict[str, Any]) -> str:
    """What happens when the review window closes undecided, in a few words."""
    if isinstance(clocks, dict):
        clocks = clocks_from_document(clocks)
    rule = clocks.on_review_timeout
    if rule.action is ReviewTimeout.ESCALATE and rule.ttl is not None:
        return f"escalate to {rule.group}, {_duration(rule.ttl.total_seconds())} more"
    if rule.action is ReviewTimeout.AUTO_APPROVE:
        return f"auto-approve if risk < {rule.risk_below:g}"
    return str(rule.action.value)


def clock_rules(clocks: Clocks | dict[str, Any]) -> list[str]:
    """The clock rules of a requirement set (or its stored document), one line each,
    naming the rule that set them."""
    if isinstance(clocks, dict):
        clocks = clocks_from_document(clocks)

    def by(rule: str | None) -> str:
        return f" (rule {rule})" if rule else " (default)"

    lines = []
    if clocks.reminders:
        at = ", ".join(f"{f * 100:g} %" for f in clocks.reminders)
        lines.append(f"Reminders at {at} of the review window{by(clocks.reminders_rule)}")
    lines.append(
        f"On review timeout: {review_timeout_text(clocks)}{by(clocks.review_timeout_rule)}"
    )
    approval = clocks.on_approval_timeout.value.replace("_", "-")
    lines.append(f"On approval timeout: {approval}{by(clocks.approval_timeout_rule)}")
    return lines


def install(env: Environment) -> None:
    env.filters.update(
        risk_level=risk_level,
        ago=ago,
        iso=iso,
        highlight_diff=highlight_diff,
        short_id=short_id,
        clock_rules=clock_rules,
        review_timeout_text=review_timeout_text,
    )
