"""Names people read: NFKC normalisation and the UTS #39 look-alike test."""

from __future__ import annotations

import pytest

from community_ade.auth import names


def test_nfkc_folds_compatibility_forms() -> None:
    assert names.normal("ａｌｉｃｅ") == "alice"  # fullwidth
    assert names.normal("ﬁle") == "file"  # ligature
    assert names.normal("alice") == "alice"


@pytest.mark.parametrize(
    ("new", "existing"),
    [
        ("аlice", "alice"),  # Cyrillic а
        ("a1ice", "alice"),  # digit one for l
        ("rnary", "mary"),  # r n for m
        ("Alice", "alice"),  # case
        ("ΑΒΓ", "ABΓ"),  # Greek capitals Α, Β for Latin A, B
    ],
)
def test_a_lookalike_is_found(new: str, existing: str) -> None:
    assert names.lookalike(new, ["unrelated", existing]) == existing


@pytest.mark.parametrize(("new", "existing"), [("alina", "alice"), ("bob0", "bobo")])
def test_different_names_and_the_same_name_are_not_lookalikes(new: str, existing: str) -> None:
    assert names.lookalike(new, [existing]) is None
    assert names.lookalike(existing, [existing]) is None  # a duplicate, not a look-alike


def test_the_skeleton_comes_from_the_whole_unicode_table() -> None:
    # Far from the handful of letters a hand-written table would hold.
    assert names.skeleton("𝐚𝐥𝐢𝐜𝐞") == names.skeleton("alice")  # mathematical bold
    assert names.skeleton("ꓮ") == names.skeleton("A")  # Lisu letter A
