"""The pure hash chain: every honest chain verifies, and every kind of tampering (edit,
delete, reorder, forged insert) is caught at the row where the chain first breaks."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from community_ade.audit.chain import (
    GENESIS,
    HASHED_FIELDS,
    Actor,
    Anchor,
    ChainVerifier,
    canonical,
    compute_hash,
    normalise,
    verify,
)
from community_ade.errors import InvalidInput

Row = dict[str, Any]

texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
datas = st.dictionaries(texts, json_values, max_size=4)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
hexes = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def contents(draw: st.DrawFn) -> Row:
    """A row's content, everything but seq and the hashes."""
    return {
        "ts": draw(timestamps),
        "type": draw(st.sampled_from(["task:created", "approval:decision", "policy:updated"])),
        "actor_kind": draw(st.sampled_from(["human", "agent", "system"])),
        "actor_id": draw(texts.filter(bool)),
        "via_delegation": draw(st.booleans()),
        "subject": draw(texts),
        "data": normalise(draw(datas)),
    }


def build(items: list[Row]) -> list[Row]:
    """An honest chain: seq 1.., each row linked to the one before."""
    rows: list[Row] = []
    prev = GENESIS
    for seq, content in enumerate(items, start=1):
        row = {**content, "seq": seq, "prev_hash": prev}
        row["hash"] = prev = compute_hash(row)
        rows.append(row)
    return rows


chains = st.lists(contents(), min_size=1, max_size=8).map(build)
long_chains = st.lists(contents(), min_size=2, max_size=8).map(build)


def rehash(row: Row) -> Row:
    return {**row, "hash": compute_hash(row)}


# -- honest chains --------------------------------------------------------------------------


@given(chains)
def test_every_chain_built_with_compute_hash_verifies(rows: list[Row]) -> None:
    report = verify(rows)
    assert report.ok
    assert (report.checked, report.first_bad_seq, report.problem) == (len(rows), None, None)
    assert (report.head_seq, report.head_hash) == (rows[-1]["seq"], rows[-1]["hash"])


def test_the_empty_log_verifies() -> None:
    report = verify([])
    assert report.ok
    assert (report.checked, report.head_seq, report.head_hash) == (0, 0, GENESIS)


@given(chains, st.data())
def test_feeding_in_batches_gives_the_same_report(rows: list[Row], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(rows)))
    verifier = ChainVerifier()
    assert verifier.feed(rows[:cut])
    assert verifier.feed(iter(rows[cut:]))
    assert verifier.finish() == verify(rows)


@given(chains, st.data())
def test_verification_resumes_after_a_checkpoint(rows: list[Row], data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(rows)))
    checkpoint = rows[cut - 1]
    verifier = ChainVerifier(after_seq=checkpoint["seq"], after_hash=checkpoint["hash"])
    verifier.feed(rows[cut:])
    report = verifier.finish()
    assert report.ok
    assert report.checked == len(rows) - cut


def test_verification_stops_reading_at_the_first_problem() -> None:
    rows = build([{**_content(), "subject": f"s{i}"} for i in range(5)])
    rows[1] = {**rows[1], "subject": "edited"}
    consumed: list[int] = []

    def stream() -> Iterator[Row]:
        for row in rows:
            consumed.append(row["seq"])
            yield row

    verifier = ChainVerifier()
    assert not verifier.feed(stream())
    assert consumed == [1, 2]
    assert not verifier.feed(rows)  # a broken verifier reads nothing more
    assert verifier.finish().first_bad_seq == 2


# -- tampering ------------------------------------------------------------------------------


def _edited(row: Row, field: str, data: st.DataObject) -> Row:
    value = row[field]
    if field == "seq":
        new: Any = value + data.draw(st.integers(-5, 5).filter(bool))
    elif field == "ts":
        new = value + timedelta(microseconds=data.draw(st.integers(1, 10**9)))
    elif field == "via_delegation":
        new = not value
    elif field in {"hash", "prev_hash"}:
        new = data.draw(hexes.filter(lambda h: h != value))
    elif field == "data":
        new = normalise(data.draw(datas))
        assume(canonical({**row, "data": new}) != canonical(row))
    else:
        new = value + data.draw(texts.filter(bool))
    return {**row, field: new}


@given(chains, st.data())
def test_editing_any_field_of_any_row_is_detected_at_that_row(
    rows: list[Row], data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(rows) - 1))
    field = data.draw(st.sampled_from([*HASHED_FIELDS, "hash"]))
    rows[k] = _edited(rows[k], field, data)
    report = verify(rows)
    assert not report.ok
    assert report.first_bad_seq == rows[k]["seq"]
    assert report.checked == k
    assert report.problem


@given(long_chains, st.data())
def test_an_edited_row_whose_hash_was_recomputed_breaks_the_next_link(
    rows: list[Row], data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(rows) - 2))
    rows[k] = rehash({**rows[k], "subject": rows[k]["subject"] + "!"})
    report = verify(rows)
    assert report.first_bad_seq == rows[k + 1]["seq"]
    assert "prev_hash" in (report.problem or "")


@given(long_chains, st.data())
def test_deleting_any_row_but_the_newest_is_detected_at_the_row_after_it(
    rows: list[Row], data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(rows) - 2))
    expected = rows[k + 1]["seq"]
    del rows[k]
    report = verify(rows)
    assert not report.ok
    assert report.first_bad_seq == expected


@given(long_chains, st.data())
def test_deleting_and_renumbering_is_detected_too(rows: list[Row], data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(rows) - 2))
    del rows[k]
    for seq, row in enumerate(rows, start=1):
        row["seq"] = seq
    report = verify(rows)
    assert not report.ok
    assert report.first_bad_seq == k + 1


@given(chains)
def test_cutting_off_the_newest_rows_is_only_caught_with_an_anchor(rows: list[Row]) -> None:
    anchor = Anchor(rows[-1]["seq"], rows[-1]["hash"])
    assert verify(rows, anchor=anchor).ok
    truncated = rows[:-1]
    assert verify(truncated).ok  # what a bare hash chain cannot see
    report = verify(truncated, anchor=anchor)
    assert not report.ok
    assert report.first_bad_seq == anchor.seq
    assert "deleted from its end" in (report.problem or "")


@given(chains)
def test_a_rewritten_chain_does_not_match_its_anchor(rows: list[Row]) -> None:
    anchor = Anchor(rows[-1]["seq"], rows[-1]["hash"])
    forged = build([{**row, "subject": row["subject"] + "!"} for row in rows])
    report = verify(forged, anchor=anchor)
    assert not report.ok
    assert report.first_bad_seq == anchor.seq


@given(long_chains, st.data())
def test_swapping_any_two_rows_is_detected_where_the_order_breaks(
    rows: list[Row], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(rows) - 2))
    j = data.draw(st.integers(i + 1, len(rows) - 1))
    rows[i], rows[j] = rows[j], rows[i]
    report = verify(rows)
    assert not report.ok
    assert report.first_bad_seq == rows[i]["seq"]  # the row found where row i belonged
    assert report.checked == i


@given(long_chains, st.data())
def test_swapping_two_rows_content_under_their_seqs_is_detected_at_the_first(
    rows: list[Row], data: st.DataObject
) -> None:
    """What reordering looks like in the table, where seq is the primary key."""
    i = data.draw(st.integers(0, len(rows) - 2))
    j = data.draw(st.integers(i + 1, len(rows) - 1))
    seq_i, seq_j = rows[i]["seq"], rows[j]["seq"]
    rows[i], rows[j] = {**rows[j], "seq": seq_i}, {**rows[i], "seq": seq_j}
    report = verify(rows)
    assert report.first_bad_seq == seq_i


@given(chains, contents(), st.data())
def test_a_forged_row_that_does_not_link_is_detected_at_the_forgery(
    rows: list[Row], content: Row, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(rows)))
    prev = data.draw(hexes)
    link = rows[k - 1]["hash"] if k else GENESIS
    assume(prev != link)
    forged = rehash({**content, "seq": k + 1, "prev_hash": prev})
    rows.insert(k, forged)
    report = verify(rows)
    assert not report.ok
    assert report.first_bad_seq == k + 1
    assert report.checked == k


@given(chains, contents(), st.data())
def test_a_perfectly_linked_forgery_spliced_in_breaks_the_row_after_it(
    rows: list[Row], content: Row, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(rows) - 1))
    link = rows[k - 1]["hash"] if k else GENESIS
    forged = rehash({**content, "seq": k + 1, "prev_hash": link})
    rows.insert(k, forged)
    report = verify(rows)
    assert not report.ok
    assert report.checked == k + 1  # the forgery itself looks fine...
    assert report.first_bad_seq == rows[k + 1]["seq"]  # ...until the real row k+1


@given(chains, contents(), hexes, st.data())
def test_a_forged_row_with_a_made_up_hash_is_detected_at_the_forgery(
    rows: list[Row], content: Row, fake: str, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(rows)))
    link = rows[k - 1]["hash"] if k else GENESIS
    forged = {**content, "seq": k + 1, "prev_hash": link, "hash": fake}
    assume(fake != compute_hash(forged))
    rows.insert(k, forged)
    assert verify(rows).first_bad_seq == k + 1


def test_rows_that_cannot_be_hashed_are_reported_not_raised() -> None:
    rows = build([_content(), _content()])
    rows[1] = {**rows[1], "ts": datetime(2026, 1, 1)}  # naive: no single spelling
    report = verify(rows)
    assert report.first_bad_seq == 2
    assert "cannot be hashed" in (report.problem or "")
    rows[1] = {**rows[1], "seq": "2"}
    assert verify(rows).first_bad_seq is None
    assert "not an integer" in (verify(rows).problem or "")


# -- the canonical form ---------------------------------------------------------------------


def _content(**changes: Any) -> Row:
    base: Row = {
        "ts": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "type": "task:created",
        "actor_kind": "human",
        "actor_id": "ada",
        "via_delegation": False,
        "subject": "task:1",
        "data": {"title": "Grüße", "risk": 42.5, "n": 3},
    }
    return {**base, **changes}


def test_the_canonical_form_is_pinned() -> None:
    """A change here invalidates every stored hash: it needs a migration, not an edit."""
    fields = {**_content(), "seq": 1, "prev_hash": GENESIS}
    expected = (
        '{"actor_id":"ada","actor_kind":"human","data":{"n":3,"risk":42.5,"title":"Grüße"},'
        f'"prev_hash":"{GENESIS}","seq":1,"subject":"task:1",'
        '"ts":"2026-01-02T03:04:05.000006Z","type":"task:created","via_delegation":false}'
    ).encode()
    assert canonical(fields) == expected
    assert compute_hash(fields) == hashlib.sha256(expected).hexdigest()


def _shuffled(value: Any, rng: Any) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: _shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@given(contents(), st.randoms())
def test_canonical_is_stable_across_dict_orderings(content: Row, rng: Any) -> None:
    fields = {**content, "seq": 7, "prev_hash": GENESIS}
    assert canonical(_shuffled(fields, rng)) == canonical(fields)


@given(contents())
def test_canonical_covers_exactly_the_hashed_fields(content: Row) -> None:
    fields = {**content, "seq": 7, "prev_hash": GENESIS}
    assert canonical({**fields, "hash": "x", "extra": 1}) == canonical(fields)
    with pytest.raises(InvalidInput, match="prev_hash"):
        canonical({k: v for k, v in fields.items() if k != "prev_hash"})


def test_timestamps_have_one_spelling_whatever_their_zone() -> None:
    utc = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    a = canonical({**_content(ts=utc), "seq": 1, "prev_hash": GENESIS})
    b = canonical({**_content(ts=paris), "seq": 1, "prev_hash": GENESIS})
    assert a == b
    assert b'"ts":"2026-01-02T03:04:05.000000Z"' in a


@given(json_values)
def test_normalise_is_idempotent_and_json_round_trips(value: Any) -> None:
    once = normalise(value)
    assert normalise(once) == once
    assert json.loads(json.dumps(once)) == once


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (50.0, 50),
        (-0.0, 0),
        (1e16, 10**16),
        (1e308, 10**308),  # what PostgreSQL's JSONB gives back, not int(1e308)
        (0.1, 0.1),
        (1.5e-10, 1.5e-10),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01T00:00:00.000000Z"),
        ((1, "a"), [1, "a"]),
        ({"k": (True, None)}, {"k": [True, None]}),
    ],
)
def test_normalise_gives_the_form_both_databases_return(value: Any, expected: Any) -> None:
    result = normalise(value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        "nul\x00",
        "\ud800",
        {1: "int key"},
        {"nul\x00key": 1},
        {1, 2},
        b"bytes",
        datetime(2026, 1, 1),
    ],
)
def test_normalise_refuses_what_json_cannot_hold_faithfully(value: Any) -> None:
    with pytest.raises(InvalidInput):
        normalise({"value": value})


def test_actor_validates_its_kind_and_id() -> None:
    assert Actor("agent", "a-1") == Actor("agent", "a-1", via_delegation=False)
    with pytest.raises(InvalidInput):
        Actor("robot", "r-1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Actor("human", "")
