"""Property tests of LUN id hashing, probing and the quarantine rule."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sbps.core.model import Claim
from sbps.sources.claims import (
    first_candidate,
    is_free,
    preferred_order,
    probe_order,
)

keys = st.text(min_size=1, max_size=80)
ranges = st.integers(1, 16383).flatmap(
    lambda lo: st.tuples(st.just(lo), st.integers(lo, min(16383, lo + 600))))


def dig(key: str) -> str:
    return hashlib.sha224(key.encode()).hexdigest()


@given(keys, ranges)
def test_first_candidate_in_range_and_deterministic(key: str, rng: tuple[int, int]) -> None:
    lo, hi = rng
    first = first_candidate(dig(key), lo, hi)
    assert lo <= first <= hi
    assert first == first_candidate(dig(key), lo, hi)
    assert probe_order(dig(key), lo, hi)[0] == first


@given(keys, ranges)
def test_probe_order_visits_every_id_exactly_once(key: str, rng: tuple[int, int]) -> None:
    lo, hi = rng
    order = probe_order(dig(key), lo, hi)
    assert len(order) == hi - lo + 1
    assert sorted(order) == list(range(lo, hi + 1))
    assert order == probe_order(dig(key), lo, hi)


@given(keys, ranges, st.integers(0, 17000))
def test_preferred_first_then_probe_order(key: str, rng: tuple[int, int], pref: int) -> None:
    lo, hi = rng
    order = preferred_order(dig(key), lo, hi, pref)
    assert sorted(order) == list(range(lo, hi + 1))
    if lo <= pref <= hi:
        assert order[0] == pref
    else:
        assert order == probe_order(dig(key), lo, hi)


def test_probing_spreads_colliding_digests() -> None:
    # Double hashing: digests with the same first candidate rarely share the whole order.
    same_start = [d for d in (dig(str(n)) for n in range(4000))
                  if first_candidate(d, 1, 16) == first_candidate(dig("0"), 1, 16)]
    assert len({tuple(probe_order(d, 1, 16)[:3]) for d in same_start}) > 1


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        probe_order("not-hex", 1, 10)
    with pytest.raises(ValueError):
        probe_order(dig("x"), 0, 10)
    with pytest.raises(ValueError):
        first_candidate(dig("x"), 10, 9)


def claim(holders: frozenset[str], released_at: float | None) -> Claim:
    return Claim(1, "k", dig("k"), holders=holders, released_at=released_at)


times = st.floats(0, 1e10, allow_nan=False)
durations = st.floats(0, 365 * 86400, allow_nan=False)


@given(times, durations, st.floats(0, 2 * 365 * 86400, allow_nan=False))
def test_quarantine(released: float, quarantine: float, elapsed: float) -> None:
    c = claim(frozenset(), released)
    assert is_free(c, released + elapsed, quarantine) == (
        (released + elapsed) - released >= quarantine)
    assert not is_free(c, released, quarantine) or quarantine == 0


@given(st.frozensets(st.text(min_size=1), min_size=1), st.one_of(st.none(), times), times,
       durations)
def test_held_or_unreleased_is_never_free(holders: frozenset[str], released: float | None,
                                         now: float, quarantine: float) -> None:
    assert not is_free(claim(holders, released), now, quarantine)
    assert not is_free(claim(frozenset(), None), now, quarantine)
