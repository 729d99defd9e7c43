"""quality.derive.instrument_codes: one code per (venue, symbol), numbered in order of first row."""

from __future__ import annotations

import pyarrow as pa

from quality.derive import instrument_codes


def _table(venues, symbols) -> pa.Table:
    return pa.table({"venue": pa.array(venues, pa.string()), "symbol": pa.array(symbols, pa.string())})


def test_one_instrument_is_one_code() -> None:
    codes, names = instrument_codes(_table(["v"] * 4, ["s"] * 4))
    assert codes.tolist() == [0, 0, 0, 0] and names == [("v", "s")]


def test_instruments_numbered_by_first_row() -> None:
    codes, names = instrument_codes(_table(["b", "a", "b", "a"], ["s", "s", "s", "t"]))
    assert codes.tolist() == [0, 1, 0, 2] and names == [("b", "s"), ("a", "s"), ("a", "t")]


def test_a_null_key_groups_under_empty_never_with_the_others() -> None:
    codes, names = instrument_codes(_table(["v", "v", "v"], ["s", "s", None]))
    assert codes.tolist() == [0, 0, 1] and names == [("v", "s"), ("v", "")]
    codes, names = instrument_codes(_table([None, "v"], ["s", "s"]))
    assert codes.tolist() == [0, 1] and names == [("", "s"), ("v", "s")]


def test_dictionary_columns_as_a_lake_read_gives_them() -> None:
    table = _table(["v"] * 3, ["s", "t", "s"])
    table = table.set_column(1, "symbol", table.column("symbol").dictionary_encode())
    codes, names = instrument_codes(table)
    assert codes.tolist() == [0, 1, 0] and names == [("v", "s"), ("v", "t")]
