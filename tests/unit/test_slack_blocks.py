"""The Slack messages, pure: what a review request shows, the buttons and what they
carry, the decided form, escaping, and the refusal of anything that is not our button."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from community_ade.approvals.review_request import (
    Excerpt,
    Person,
    ReviewRequest,
    SlotView,
    risk_breakdown,
)
from community_ade.errors import InvalidInput
from community_ade.integrations.slack.blocks import (
    APPROVE,
    REJECT,
    REQUEST_CHANGES,
    Decided,
    button_value,
    changes_modal,
    escape,
    parse_button_value,
    reminder_text,
    review_blocks,
    summary_text,
)

TASK = uuid.UUID("12345678-1234-5678-1234-567812345678")
DIGEST = "ab" * 32


def request(**changes: object) -> ReviewRequest:
    fields: dict[str, object] = {
        "task_id": TASK,
        "title": "turn <on> debug & more",
        "task_type": "files.write",
        "state": "SUBMITTED",
        "submitter": "alice",
        "agent": "helper-bot",
        "risk": 42.5,
        "risk_level": "medium",
        "risk_inputs": risk_breakdown({"criticality": 50, "magnitude": 20}),
        "slots": (
            SlotView("dba #1", "dba", "bob", ()),
            SlotView("any reviewer #1", None, None, (Person("1", "carol", "", None),)),
        ),
        "blocked_by": ("needs 2 approvals in total, has 1",),
        "digest": DIGEST,
        "preview": Excerpt("diff", "-debug = false\n+debug = true", True, 2),
        "review_deadline": datetime(2026, 12, 6, 12, 3, tzinfo=UTC),
        "link": f"https://ade.example.com/approvals/{TASK}",
    }
    fields.update(changes)
    return ReviewRequest(**fields)  # type: ignore[arg-type]


def actions(blocks: list[dict[str, object]]) -> dict[str, str]:
    return {
        e["action_id"]: e["value"]
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]  # type: ignore[attr-defined]
    }


def test_an_open_request_shows_everything_and_carries_the_digest_shown() -> None:
    blocks = review_blocks(request())
    text = json.dumps(blocks)
    for expected in (
        "Review: turn <on> debug & more",  # a plain_text header: no markup to escape
        "alice (agent helper-bot)",
        "42.5 (medium)",
        "criticality 50",
        "dba #1: approved by bob",
        "any reviewer #1: open, for carol",
        "+debug = true",
        "more in the dashboard",
        "2026-12-06 12:03 UTC",
        f"<https://ade.example.com/approvals/{TASK}|Open in the dashboard>",
    ):
        assert expected in text
    buttons = actions(blocks)
    assert set(buttons) == {APPROVE, REJECT, REQUEST_CHANGES}
    assert {parse_button_value(v) for v in buttons.values()} == {(TASK, DIGEST)}


def test_a_decided_request_has_no_buttons_and_says_who_and_when() -> None:
    decided = Decided(
        "Approved", ("carol via Slack", "bob"), datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    )
    blocks = review_blocks(request(), decided)
    assert actions(blocks) == {}
    assert "*Approved* by carol via Slack, bob, 2026-01-02 03:04 UTC" in json.dumps(blocks)


def test_no_preview_no_risk_and_no_digest_still_render() -> None:
    blocks = review_blocks(
        request(preview=None, risk=None, risk_level=None, risk_inputs=(), slots=(), digest=None)
    )
    text = json.dumps(blocks)
    assert "not scored" in text
    assert actions(blocks) == {}  # nothing to bind a decision to


def test_the_notification_text_cannot_ping_the_channel() -> None:
    text = summary_text(request(title="<!channel> urgent"))
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; urgent" in text


def test_the_diff_cannot_close_its_code_block() -> None:
    blocks = review_blocks(request(preview=Excerpt("diff", "```\n<!channel>", False, 1)))
    text = json.dumps(blocks)
    assert "<!channel>" not in text
    assert text.count("```") == 2


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "not json",
        "[]",
        json.dumps({"task": "nope", "digest": DIGEST}),
        json.dumps({"task": str(TASK)}),
        json.dumps({"task": str(TASK), "digest": ""}),
        json.dumps({"task": str(TASK), "digest": "XYZ"}),
        json.dumps({"task": str(TASK), "digest": "a" * 65}),
        "x" * 2001,
    ],
)
def test_anything_but_our_button_value_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_button_value(value)


def test_button_value_round_trips() -> None:
    assert parse_button_value(button_value(TASK, DIGEST)) == (TASK, DIGEST)


def test_escape_and_reminder_and_modal() -> None:
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"
    reminder = reminder_text(request())
    assert "turn &lt;on&gt; debug &amp; more" in reminder
    assert "needs 2 approvals in total, has 1" in reminder
    assert "carol" in reminder
    modal = changes_modal(TASK, DIGEST, "title")
    assert parse_button_value(modal["private_metadata"]) == (TASK, DIGEST)
    assert modal["blocks"][1]["element"]["multiline"] is True
