"""Property tests of the pure lock model (``community_ade.locks.model``)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from community_ade.errors import InvalidInput
from community_ade.locks.model import (
    MAX_RESOURCE_NAME,
    MAX_RESOURCES,
    LockConfig,
    LockRequest,
    Mode,
    compatible,
    grantable,
    normalize_resources,
)
from community_ade.settings import Settings

modes = st.sampled_from(list(Mode))
mode_lists = st.lists(modes, max_size=6)
# Valid names: no whitespace, no braces, 1..MAX characters.
names = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"),
        blacklist_characters="{} \t\n\r\x0b\x0c",
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: not any(c.isspace() for c in s))
mode_spellings = st.one_of(modes, st.sampled_from(["exclusive", "shared"]))


def reference_compatible(mode: Mode, holders: list[Mode]) -> bool:
    """Readers-writer rule, written independently: X needs nobody; S needs no X."""
    if mode == Mode.EXCLUSIVE:
        return len(holders) == 0
    return all(h == Mode.SHARED for h in holders)


@given(modes, mode_lists)
def test_compatible_is_the_readers_writer_rule(mode: Mode, holders: list[Mode]) -> None:
    assert compatible(mode, holders) is reference_compatible(mode, holders)
    # Only the multiset matters, and any iterable will do (it may be a generator).
    assert compatible(mode, iter(reversed(holders))) is compatible(mode, holders)


@given(modes, modes)
def test_compatibility_is_symmetric_for_single_holders(a: Mode, b: Mode) -> None:
    assert compatible(a, [b]) is compatible(b, [a])
    assert compatible(a, [b]) is (a == b == Mode.SHARED)


@given(modes, mode_lists, mode_lists)
def test_compatible_is_monotone(mode: Mode, holders: list[Mode], more: list[Mode]) -> None:
    # Adding holders never makes a request compatible.
    if not compatible(mode, holders):
        assert not compatible(mode, holders + more)


@given(modes, mode_lists, mode_lists)
def test_grantable_needs_holders_and_earlier_waiters(
    mode: Mode, holders: list[Mode], earlier: list[Mode]
) -> None:
    expected = reference_compatible(mode, holders) and reference_compatible(mode, earlier)
    assert grantable(mode, holders, earlier) is expected
    assert grantable(mode, iter(holders), iter(earlier)) is expected


@given(mode_lists, st.lists(modes, min_size=1, max_size=6))
def test_no_reader_passes_a_waiting_writer(holders: list[Mode], earlier: list[Mode]) -> None:
    assume(Mode.EXCLUSIVE in earlier)
    assert not grantable(Mode.SHARED, holders, earlier)
    assert not grantable(Mode.EXCLUSIVE, holders, earlier)


@given(mode_lists)
def test_first_in_line_on_a_free_resource_is_always_granted(earlier: list[Mode]) -> None:
    assert grantable(Mode.EXCLUSIVE, [], [])
    assert grantable(Mode.SHARED, [], [])
    assert grantable(Mode.SHARED, [Mode.SHARED] * len(earlier), [Mode.SHARED] * len(earlier))


# -- normalize_resources ---------------------------------------------------------------


@given(st.lists(st.tuples(names, mode_spellings), min_size=1, max_size=30))
def test_normalize_sorts_dedups_and_exclusive_wins(items: list[tuple[str, Mode | str]]) -> None:
    result = normalize_resources(items)
    result_names = [name for name, _ in result]
    assert result_names == sorted(set(result_names))
    assert set(result_names) == {name for name, _ in items}
    for name, mode in result:
        assert isinstance(mode, Mode)
        asked = {Mode(m) for n, m in items if n == name}
        assert mode is (Mode.EXCLUSIVE if Mode.EXCLUSIVE in asked else Mode.SHARED)
    # A mapping with the same content gives the same result; so does any order.
    assert normalize_resources(list(reversed(items))) == result
    mapping = dict(result)
    assert normalize_resources(mapping) == result
    assert normalize_resources({n: m.value for n, m in result}) == result


@given(st.lists(st.tuples(names, mode_spellings), min_size=1, max_size=8))
def test_request_build_keeps_normalized_resources(items: list[tuple[str, Mode | str]]) -> None:
    request = LockRequest.build("task-1", "agent-1", items)
    assert request.resources == normalize_resources(items)


def test_normalize_rejects_empty_sets() -> None:
    for empty in ({}, [], iter(())):
        with pytest.raises(InvalidInput):
            normalize_resources(empty)


@given(names, st.text(max_size=12))
def test_unknown_modes_are_rejected(name: str, mode: str) -> None:
    assume(mode not in {"exclusive", "shared"})
    with pytest.raises(InvalidInput, match="unknown lock mode"):
        normalize_resources({name: mode})


@given(
    st.sampled_from(["", " ", "a b", "a\tb", "{a}", "a{b", "b}", "x\n"]),
    modes,
)
def test_bad_resource_names_are_rejected(name: str, mode: Mode) -> None:
    with pytest.raises(InvalidInput):
        normalize_resources({name: mode})
    # The same rule holds for task and agent ids.
    with pytest.raises(InvalidInput):
        LockRequest.build(name, "agent", {"ok": mode})
    with pytest.raises(InvalidInput):
        LockRequest.build("task", name, {"ok": mode})


@given(names, names, st.sampled_from([" ", "\t", "\n", "\r", "\u00a0", "{", "}"]), modes)
def test_names_with_whitespace_or_braces_are_rejected(
    head: str, tail: str, bad: str, mode: Mode
) -> None:
    for name in (head + bad + tail, bad + tail, head + bad):
        with pytest.raises(InvalidInput):
            normalize_resources({name: mode})


def test_name_length_and_count_limits() -> None:
    assert normalize_resources({"a" * MAX_RESOURCE_NAME: "shared"})
    with pytest.raises(InvalidInput):
        normalize_resources({"a" * (MAX_RESOURCE_NAME + 1): "shared"})
    assert len(normalize_resources({f"r{i}": "shared" for i in range(MAX_RESOURCES)})) == (
        MAX_RESOURCES
    )
    with pytest.raises(InvalidInput):
        normalize_resources({f"r{i}": "shared" for i in range(MAX_RESOURCES + 1)})
    # Duplicates count once.
    assert len(normalize_resources([("r", "shared")] * (MAX_RESOURCES + 5))) == 1


# -- LockConfig -----------------------------------------------------------------------

ints = st.integers(min_value=-5, max_value=50_000)


@given(
    lease=ints,
    renew=ints,
    delay=ints,
    deadlock=ints,
    capacity=st.integers(min_value=-2, max_value=10),
    backstop=ints,
)
def test_lock_config_validation(
    lease: int, renew: int, delay: int, deadlock: int, capacity: int, backstop: int
) -> None:
    valid = (
        lease > 0
        and 0 < renew < lease
        and delay >= 0
        and deadlock > 0
        and backstop > 0
        and capacity >= 1
    )
    kwargs = dict(
        lease_ms=lease,
        renew_ms=renew,
        lock_delay_ms=delay,
        deadlock_timeout_ms=deadlock,
        default_capacity=capacity,
        backstop_ms=backstop,
    )
    if valid:
        config = LockConfig(**kwargs)
        assert dataclasses.asdict(config)["renew_ms"] == renew
    else:
        with pytest.raises(InvalidInput):
            LockConfig(**kwargs)


@given(st.integers(min_value=1, max_value=100_000), st.integers(min_value=0, max_value=10))
def test_renewal_must_be_shorter_than_the_lease(lease: int, extra: int) -> None:
    with pytest.raises(InvalidInput):
        LockConfig(lease_ms=lease, renew_ms=lease + extra)


def test_lock_config_defaults_and_settings() -> None:
    config = LockConfig()
    assert (config.lease_ms, config.renew_ms, config.lock_delay_ms) == (30_000, 10_000, 1_000)
    assert config.deadlock_timeout_ms == 1_000
    from_settings = LockConfig.from_settings(
        Settings(lock_lease_seconds=1.5, lock_delay_seconds=0.25, lock_deadlock_timeout_seconds=2)
    )
    assert from_settings.lease_ms == 1500
    assert from_settings.renew_ms == 500  # lease / 3 by default
    assert from_settings.lock_delay_ms == 250
    assert from_settings.deadlock_timeout_ms == 2000
