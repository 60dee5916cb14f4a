"""The review e-mail (``notifications.email_message``), pure: both parts, proper headers,
submitter-controlled text escaped in HTML and bounded everywhere, digests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from community_ade.approvals.review_request import (
    Excerpt,
    Person,
    ReviewRequest,
    SlotView,
    risk_breakdown,
)
from community_ade.notifications.email_message import (
    DIGEST_MAX_TASKS,
    SUBJECT_TITLE_CHARS,
    Item,
    review_message,
)

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
BOB = Person(str(uuid.uuid4()), "bob", "Bob <Builder>", "bob@example.org")
HOSTILE = '<img src=x onerror="alert(1)"> & </pre><script>steal()</script>'


def request(title: str = "turn on debug", diff: str = "+debug = true") -> ReviewRequest:
    task = uuid.uuid4()
    return ReviewRequest(
        task_id=task,
        title=title,
        task_type="files.write",
        state="SUBMITTED",
        submitter="alice",
        agent="deploy-bot",
        risk=42.0,
        risk_level="medium",
        risk_inputs=risk_breakdown({"criticality": 60, "magnitude": 10}),
        slots=(SlotView("any reviewer #1", None, None, (BOB,)),),
        blocked_by=(),
        digest="ab" * 32,
        preview=Excerpt("diff", diff, False, 1),
        review_deadline=datetime(2026, 3, 11, 12, tzinfo=UTC),
        link=f"https://ade.example.com/approvals/{task}",
    )


def item(r: ReviewRequest, kind: str = "requested") -> Item:
    return Item(r, kind, f"https://ade.example.com/email/decide?t=tok-{r.task_id}")


def parts(message: EmailMessage) -> tuple[str, str]:
    # Through the bytes, as the SMTP server receives it.
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/alternative"
    plain, rich = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None
    assert rich is not None
    return plain.get_content(), rich.get_content()


def test_one_task_both_parts_and_headers() -> None:
    r = request()
    message = review_message("Community ADE <ade@example.com>", BOB, [item(r)], now=NOW)
    assert message["Subject"] == "[ADE] Review: turn on debug"
    assert message["To"] == '"Bob <Builder>" <bob@example.org>'
    assert message["From"] == "Community ADE <ade@example.com>"
    assert message["Date"]
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Auto-Submitted"] == "auto-generated"
    text, rich = parts(message)
    for expected in (
        "turn on debug",
        "alice (agent deploy-bot)",
        "42 medium",
        "criticality 60",
        "any reviewer #1: bob",
        "2026-03-11 12:00 UTC",
        "ab" * 32,
        "+debug = true",
        f"/email/decide?t=tok-{r.task_id}",
        r.link,
    ):
        assert expected in text
        assert expected.replace("<", "&lt;") in rich or expected in rich


def test_submitter_text_is_escaped_in_html_and_the_subject_is_one_bounded_line() -> None:
    r = request(title=HOSTILE + "\r\nBcc: evil@example.org " + "x" * 500, diff=HOSTILE)
    message = review_message("ade@example.com", BOB, [item(r)], now=NOW)
    subject = message["Subject"]
    assert "\n" not in subject
    assert "\r" not in subject
    assert len(subject) <= len("[ADE] Review: ") + SUBJECT_TITLE_CHARS
    assert message["Bcc"] is None
    text, rich = parts(message)
    assert "<script>" not in rich
    assert "<img" not in rich
    assert "&lt;script&gt;steal()&lt;/script&gt;" in rich
    assert HOSTILE in text  # the plain part shows it as it is: it is only text there
    assert len(text) < 10_000


def test_a_long_change_is_cut_with_a_pointer_to_the_dashboard() -> None:
    r = request(diff="+x\n" * 5000)
    text, _ = parts(review_message("ade@example.com", BOB, [item(r)], now=NOW))
    assert "the whole change is in the dashboard" in text
    assert len(text) < 10_000


def test_a_digest_lists_each_task_with_its_own_link_up_to_a_bound() -> None:
    many = [request(title=f"task {i}") for i in range(DIGEST_MAX_TASKS + 5)]
    kinds = ["requested", "reminder", "escalated"]
    items = [item(r, kinds[i % 3]) for i, r in enumerate(many)]
    message = review_message("ade@example.com", BOB, items, now=NOW)
    assert message["Subject"] == f"[ADE] {len(many)} tasks wait on your review"
    text, rich = parts(message)
    assert text.count("/email/decide?t=") == DIGEST_MAX_TASKS
    assert "… and 5 more task(s)" in text
    assert "Reminder: a task still waits" in text
    assert "Escalated to you" in text
    assert rich.count("Decide</a>") == DIGEST_MAX_TASKS


def test_no_tasks_or_no_address_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        review_message("ade@example.com", BOB, [], now=NOW)
    nobody = Person(BOB.id, "bob", "", None)
    with pytest.raises(ValueError, match="no e-mail"):
        review_message("ade@example.com", nobody, [item(request())], now=NOW)
