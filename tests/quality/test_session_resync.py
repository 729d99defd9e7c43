"""Session-aware crossed books, the rebuilt BBO's resync step, and GX without batch fingerprints.

Synthetic alterations of the clean simulated day (``conftest.sim_day``, which passes every check);
the expected counts follow from the alterations themselves.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quality import run_suite, session_opens
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK
from tests.quality.conftest import DAY


def _with(table: pa.Table, **columns: np.ndarray) -> pa.Table:
    for name, values in columns.items():
        i = table.schema.get_field_index(name)
        values = list(values) if isinstance(values, list) else values
        table = table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))
    return table


def _relabel(table: pa.Table, venue: str) -> pa.Table:
    return _with(table, venue=np.array([venue] * table.num_rows, object))


def test_rebuilt_bbo_resync_step_back_is_left_out_but_a_clean_step_back_fails(sim_day) -> None:
    quotes = sim_day.quotes
    seq = quotes.column("sequence").to_numpy().copy()
    flags = quotes.column("flags").to_numpy().copy()
    assert not (flags & F_MAYBE_BAD_BOOK).any() and (np.diff(seq) >= 0).all()
    # rows 50..54 wait for a snapshot on diffs newer than it: flagged, numbered past row 55's id
    seq[50:55] = seq[55] + 1_000 + np.arange(5)
    flags[50:55] |= F_MAYBE_BAD_BOOK
    resync = _with(quotes, sequence=seq, flags=flags)
    check = run_suite("quotes", resync, partition_day=DAY).check("sequence_monotonic")
    assert check.passed and check.details["rows_left_out"] == 5
    assert check.element_count == quotes.num_rows - 5 - 1  # the first row has no predecessor

    # the same numbers on clean rows: row 55 steps back, exactly once
    unflagged = _with(quotes, sequence=seq)
    check = run_suite("quotes", unflagged, partition_day=DAY).check("sequence_monotonic")
    assert not check.passed and check.unexpected_count == 1
    assert [e["location"] for e in check.examples] == ["row 55"]


def test_metric_spreads_before_the_open_are_counted_after_it_they_fail(sim_day) -> None:
    metrics = _relabel(sim_day.metrics, "GLBX.MDP3")
    recv = metrics.column("ts_recv_ns").to_numpy()
    spread = metrics.column("spread_nanos").to_numpy().copy()
    symbol = metrics.column("symbol")[0].as_py()
    open_ns = int(recv[80])
    before = [i for i in range(10, 20) if recv[i] < open_ns]
    after = [i for i in range(120, 124) if recv[i] >= open_ns]
    spread[before + after] = 0  # a locked book
    locked = _with(metrics, spread_nanos=spread)
    result = run_suite("metrics", locked, partition_day=DAY, session_open_ns={symbol: open_ns})
    check = result.check("crossed_book")
    assert len(before) == 10 and len(after) == 4
    assert not check.passed and check.unexpected_count == len(after)
    assert check.details["pre_open_crossed"] == len(before)
    assert check.details["pre_open_rows"] == int((recv < open_ns).sum())
    # without the session every locked row fails
    check = run_suite("metrics", locked, partition_day=DAY).check("crossed_book")
    assert check.unexpected_count == len(before) + len(after)


def test_no_trade_on_the_day_keeps_an_auction_venue_in_its_pre_open(sim_day) -> None:
    snaps = _relabel(sim_day.snapshots, "XNAS.ITCH")
    symbol = snaps.column("symbol")[0].as_py()
    opens = session_opens(sim_day.trades.slice(0, 0), [symbol])
    assert opens == {symbol: None}
    bids = snaps.column("bid_price_nanos").to_pylist()
    asks = snaps.column("ask_price_nanos").to_pylist()
    for i in (3, 30):
        bids[i] = [asks[i][0] + 1, *bids[i][1:]]
    crossed = _with(snaps, bid_price_nanos=bids)
    result = run_suite("book_snapshots", crossed, partition_day=DAY, session_open_ns=opens)
    check = result.check("crossed_book")
    assert check.passed and check.details["pre_open_crossed"] == 2 and check.element_count == 0


def test_session_opens_are_each_symbols_first_trade(sim_day) -> None:
    trades = sim_day.trades
    symbol = trades.column("symbol")[0].as_py()
    first = int(min(trades.column("ts_recv_ns").to_numpy()))
    assert session_opens(trades.slice(5), ["OTHER"]) == {
        "OTHER": None, symbol: int(min(trades.column("ts_recv_ns").to_numpy()[5:]))}
    assert session_opens(trades) == {symbol: first}


def test_gx_computes_no_batch_fingerprint(sim_day, monkeypatch) -> None:
    from great_expectations.execution_engine import pandas_execution_engine as engine

    calls = []
    original = engine.hash_pandas_dataframe
    monkeypatch.setattr(engine, "hash_pandas_dataframe", lambda df: calls.append(len(df)) or original(df))
    # snapshot levels are list columns: GX would pickle the whole frame to fingerprint it
    result = run_suite("book_snapshots", sim_day.snapshots, partition_day=DAY)
    assert result.passed and result.row_count == sim_day.snapshots.num_rows > 100
    assert calls == []
    assert engine.HASH_THRESHOLD == 1e9  # restored for any other GX user of the process
