"""Exact decimal parsing: no float ever touches a price or a size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapeflow.errors import BadNumber
from tapeflow.wire.numbers import to_nanos


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("0", 0), ("1", 10**9), ("0.00100000", 10**6), ("61512.30", 61_512_300_000_000),
     ("1.5e-3", 1_500_000), ("2E2", 200 * 10**9), (".5", 5 * 10**8), ("0.000000001", 1),
     ("0e999999999", 0), ("0.0e-999999999", 0)],
)
def test_exact_values(text: str, nanos: int) -> None:
    assert to_nanos(text) == nanos


@pytest.mark.parametrize(
    ("text", "reason"),
    [("NaN", "bad_number"), ("Infinity", "bad_number"), ("-inf", "bad_number"), ("", "bad_number"),
     ("1.0000000001", "bad_number"), ("abc", "bad_number"), ("-1", "negative"),
     ("99999999999", "out_of_range"), ("1e30", "out_of_range"),
     ("34200.e0174059617", "out_of_range"), ("-1e999999999", "out_of_range")],  # an exponent, not 10**it
)
def test_bad_values_have_reasons(text: str, reason: str) -> None:
    with pytest.raises(BadNumber) as info:
        to_nanos(text)
    assert info.value.reason == reason


@given(st.integers(min_value=0, max_value=9_000_000_000), st.integers(min_value=0, max_value=999_999_999))
def test_round_trip_against_integer_construction(whole: int, frac: int) -> None:
    assert to_nanos(f"{whole}.{frac:09d}") == whole * 10**9 + frac


@pytest.mark.parametrize(
    ("text", "reason"),
    [("1" * 5000, "out_of_range"), ("1" * 5000 + ".5", "out_of_range"), ("0." + "1" * 5000, "bad_number"),
     ("1e" + "9" * 5000, "out_of_range"), ("1e-" + "9" * 5000, "bad_number"),
     ("1e999999999", "out_of_range")],
)
def test_huge_texts_are_rejected_not_crashing(text: str, reason: str) -> None:
    # int() refuses more than 4,300 digits with a ValueError, and 10**999999999 never returns:
    # one such value must be one rejected line, not the end of the whole file
    with pytest.raises(BadNumber) as info:
        to_nanos(text)
    assert info.value.reason == reason


@pytest.mark.parametrize(("text", "nanos"), [("0" * 5000 + "1.5", 1_500_000_000), ("0e99999", 0),
                                              ("1.500000000000", 1_500_000_000), ("-0", 0),
                                              ("1" + "0" * 99 + "e-99", 10**9)])
def test_long_texts_of_small_values_still_parse(text: str, nanos: int) -> None:
    assert to_nanos(text, allow_negative=True) == nanos
