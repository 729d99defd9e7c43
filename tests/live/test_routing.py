"""The flow's entry cut (``tapeflow.live.routing.route``): one batch per instrument with row order
kept, each table's layout columns converted once into a matrix equal to the table's columns, dead
letters and STATUS rows apart, and a routed batch that survives a pickle (Bytewax moves items so)."""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.errors import TapeflowError
from tapeflow.live.routing import LAYOUTS, RoutedBatch, route, routed_one
from tapeflow.schemas.records import STATUS
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import sim_market


@functools.cache
def _decoded() -> dict[str, pa.Table]:
    return merge(list(get_format("sim").decode(list(sim_market()))))


def _check(part: RoutedBatch) -> None:
    for name, table in part.items():
        assert set(table["venue"].to_pylist()) == {part.venue}
        assert set(table["symbol"].to_pylist()) == {part.symbol}
        if name in LAYOUTS:
            x = part.columns[name]
            for row, column in zip(x, LAYOUTS[name], strict=True):
                assert np.array_equal(row, table[column].to_numpy().astype(np.int64)), (name, column)
    if "order_event" in part:
        assert np.array_equal(part.order_ids, part["order_event"]["order_id"].to_numpy())


@pytest.mark.parametrize("rows", [1, 2, 3000])
def test_route_cuts_per_instrument_and_converts_the_columns(rows: int) -> None:
    decoded = _decoded()
    batch = {n: decoded[n].slice(0, rows) for n in ("order_event", "trade", "book_delta")}
    routed = route(batch)
    assert routed.venue == "sim" and not routed.passthrough
    for name, table in batch.items():
        parts = [p[name] for p in routed.instruments.values() if name in p]
        assert sum(p.num_rows for p in parts) == table.num_rows
        for part in parts:  # row order kept: each part is its instrument's rows of the table, in order
            symbol = part["symbol"][0].as_py()
            assert part.equals(table.filter(pc.equal(table["symbol"], symbol)))
    for key, part in routed.instruments.items():
        assert key == part.key() == f"{part.venue}/{part.symbol}"
        _check(part)
        back = pickle.loads(pickle.dumps(part))
        assert isinstance(back, RoutedBatch) and back.key() == key and dict(back) == dict(part)
        _check(back)


def test_dead_letters_and_status_rows_go_apart_and_a_table_without_its_layout_has_no_matrix() -> None:
    decoded = _decoded()
    trade = decoded["trade"].filter(pc.equal(decoded["trade"]["symbol"], "SIM-BTCUSDT")).slice(0, 5)
    status = STATUS.table({n: [v] for n, v in zip(STATUS.column_names, _status_row(), strict=True)})
    routed = route({"status": status, "trade": trade.drop_columns(["aggressor_side"])})
    assert routed.items() == [("status", status)]
    (part,) = routed.instruments.values()
    assert part["trade"].num_rows == 5 and "trade" not in part.columns


def test_routed_one_refuses_several_instruments() -> None:
    decoded = _decoded()
    with pytest.raises(TapeflowError, match="route the batch first"):
        routed_one({"trade": decoded["trade"].slice(0, 3000)})
    one = decoded["trade"].filter(pc.equal(decoded["trade"]["symbol"], "SIM-ETHUSDT")).slice(0, 3)
    part = routed_one({"trade": one})
    assert part is not None and part.symbol == "SIM-ETHUSDT"
    assert routed_one({}) is None


def _status_row() -> list[object]:
    values = {"venue": "sim", "symbol": "", "state": "skew"}
    return [values.get(f.name, _zero(f.type)) for f in STATUS.arrow_schema()]


def _zero(t: pa.DataType) -> object:
    return "" if pa.types.is_string(t) else 0


@pytest.mark.parametrize("symbols", [
    ["AB", "AB", "AB"], ["AB", "", "ABAB"], ["A", "AA", "A"], ["AB", "BA", "AB"], ["", "", ""],
    ["X"] * 40 + ["Y"], ["Y"] + ["X"] * 40])
@pytest.mark.parametrize("times", [1, 4])  # up to 8 rows the check reads Python strings, past 8 the bytes
def test_one_instrument_is_told_from_the_string_bytes(symbols: list[str], times: int) -> None:
    symbols = symbols * times
    trade = _decoded()["trade"].slice(0, len(symbols))
    trade = trade.set_column(trade.schema.get_field_index("symbol"), trade.schema.field("symbol"),
                             pa.array(symbols, pa.string()))
    for table in (trade, pa.concat_tables([trade.slice(0, 1), trade.slice(1)])):  # one chunk, two
        routed = route({"trade": table})
        assert [p.symbol for p in routed.instruments.values()] == list(dict.fromkeys(symbols))
        for part in routed.instruments.values():
            assert part["trade"]["symbol"].to_pylist() == [part.symbol] * symbols.count(part.symbol)
