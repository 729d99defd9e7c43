"""One fault injected into the clean day fails exactly the check for it, with exactly k unexpected.

k is fixed by the injection (how many rows the test altered, counted here), never read back from
the check; every other check of the suite must still pass.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quality import Baseline, QualityConfig, check_names, run_suite
from tapeflow.schemas.records import F_GAP, F_LAST, F_SNAPSHOT, SCALE
from tests.quality.conftest import DAY, steady_baseline

K = 7


def _with(table: pa.Table, name: str, values) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def _spread_rows(candidates: np.ndarray, k: int = K) -> np.ndarray:
    """k candidate rows spread over the table, no two adjacent (each fault stands alone)."""
    picks = candidates[np.linspace(len(candidates) // 10, len(candidates) * 9 // 10, k).astype(int)]
    assert len(np.unique(picks)) == k and np.diff(picks).min() > 1
    return picks


def _only_failure(result, name: str, unexpected: int):
    failed = {c.name: c.unexpected_count for c in result.failed}
    assert failed == {name: unexpected}
    check = result.check(name)
    assert len(check.examples) == min(unexpected, 5)
    return check


def test_crossed_snapshots(sim_day):
    snaps = sim_day.snapshots
    rows = _spread_rows(np.arange(snaps.num_rows))
    bids = snaps.column("bid_price_nanos").to_pylist()
    asks = snaps.column("ask_price_nanos").to_pylist()
    for i in rows:
        # the best bid moves up onto the best ask: still sorted, still in the price band, crossed
        bids[i] = [asks[i][0], *bids[i]][: len(bids[i])]
    bad = _with(snaps, "bid_price_nanos", bids)
    check = _only_failure(run_suite("book_snapshots", bad, partition_day=DAY), "crossed_book", K)
    assert [e["location"] for e in check.examples] == [f"row {i}" for i in rows[:5]]
    assert all(e["best_bid_nanos"] >= e["best_ask_nanos"] for e in check.examples)


def test_crossed_quotes_within_a_tolerated_rate(sim_day):
    quotes = sim_day.quotes
    rows = _spread_rows(np.arange(quotes.num_rows))
    bid = quotes.column("bid_price_nanos").to_numpy().copy()
    bid[rows] = quotes.column("ask_price_nanos").to_numpy()[rows]
    bad = _with(quotes, "bid_price_nanos", bid)
    _only_failure(run_suite("quotes", bad, partition_day=DAY), "crossed_book", K)
    tolerant = QualityConfig(crossed_rate_max=(K + 1) / quotes.num_rows)
    tolerated = run_suite("quotes", bad, partition_day=DAY, config=tolerant).check("crossed_book")
    assert tolerated.passed and tolerated.unexpected_count == K


def test_more_crossings_than_witnesses_are_all_counted(sim_day):
    """GX sees only the first WITNESS_UNEXPECTED offending rows; the counts still cover every one."""
    from quality.exact import WITNESS_UNEXPECTED

    quotes = sim_day.quotes
    k = 3 * WITNESS_UNEXPECTED + 1
    rows = _spread_rows(np.arange(quotes.num_rows), k)
    bid = quotes.column("bid_price_nanos").to_numpy().copy()
    bid[rows] = quotes.column("ask_price_nanos").to_numpy()[rows]
    bad = _with(quotes, "bid_price_nanos", bid)
    check = _only_failure(run_suite("quotes", bad, partition_day=DAY), "crossed_book", k)
    failing = [e for e in check.details["expectations"] if not e["success"]]
    assert [e["unexpected_count"] for e in failing] == [k]
    assert max(e["rows_validated_by_gx"] for e in check.details["expectations"]) <= WITNESS_UNEXPECTED + 2


def test_dropped_sequence_numbers(sim_day):
    events = sim_day.order_events
    seq = events.column("sequence").to_numpy()
    live = (events.column("flags").to_numpy() & F_SNAPSHOT) == 0
    # drop every row of K sequence numbers (an execution spans 3 rows sharing one number)
    numbers = _spread_rows(np.unique(seq[live]))
    keep = ~np.isin(seq, numbers)
    bad = events.filter(pa.array(keep))
    check = _only_failure(run_suite("order_events", bad, partition_day=DAY), "sequence_gaps", K)
    assert check.details["missing_sequences"] == K
    assert [e["sequence"] for e in check.examples] == [int(n) + 1 for n in numbers[:5]]


def test_decoder_flagged_gaps_in_book_deltas(sim_day):
    deltas = sim_day.book_deltas
    rows = _spread_rows(np.flatnonzero(deltas.column("flags").to_numpy() & F_LAST))
    flags = deltas.column("flags").to_numpy().copy()
    flags[rows] |= F_GAP
    check = _only_failure(run_suite("book_deltas", _with(deltas, "flags", flags), partition_day=DAY),
                          "sequence_gaps", K)
    assert check.details["f_gap_rows"] == K


def test_skewed_capture_times(sim_day):
    events = sim_day.order_events
    live = np.flatnonzero((events.column("flags").to_numpy() & F_SNAPSHOT) == 0)
    rows = _spread_rows(live)
    recv = events.column("ts_recv_ns").to_numpy().copy()
    recv[rows] += 10 * SCALE  # 10 s behind the venue, twice the 5 s bound
    check = _only_failure(run_suite("order_events", _with(events, "ts_recv_ns", recv), partition_day=DAY),
                          "recv_skew", K)
    assert all(e["recv_skew_ns"] > 5 * SCALE for e in check.examples)


def test_trades_outside_the_book(sim_day):
    trades = sim_day.trades
    rows = _spread_rows(np.arange(trades.num_rows))
    price = trades.column("price_nanos").to_numpy().copy()
    price[rows] = price[rows] * 101 // 100  # 1% (100 bps) through the book, the tolerance is 10 bps
    bad = _with(trades, "price_nanos", price)
    result = run_suite("trades", bad, partition_day=DAY, book=sim_day.quotes)
    check = _only_failure(result, "trade_inside_book", K)
    assert all(e["outside_book_bps"] > 90 for e in check.examples)


def test_volume_far_off_the_baseline(sim_day):
    trades = sim_day.trades
    rows, volume = trades.num_rows, pc.sum(trades.column("size_nanos")).as_py()
    # a baseline with the same trade count but ten times the volume: only the volume is odd
    base = steady_baseline(rows, volume * 10)
    result = run_suite("trades", trades, partition_day=DAY, baseline={"SIM-BTCUSDT": base})
    check = _only_failure(result, "volume_vs_baseline", 1)
    (inst,) = check.details["instruments"]
    assert inst["value"] == volume and inst["z"] < -4
    assert result.check("rows_vs_baseline").passed


def test_flat_baseline_fails_any_change(sim_day):
    n = sim_day.book_deltas.num_rows
    result = run_suite("book_deltas", sim_day.book_deltas, partition_day=DAY,
                       baseline=Baseline(row_counts=[n + 1] * 20))
    check = _only_failure(result, "rows_vs_baseline", 1)
    assert check.details["instruments"][0]["z"] == "-inf"


def test_stale_intervals(sim_day):
    quotes = sim_day.quotes
    recv = quotes.column("ts_recv_ns").to_numpy()
    start = recv[0]
    # K holes of 5 s each, well apart; with a 2 s bound each leaves exactly one long silence
    holes = [start + (20 + 15 * j) * SCALE for j in range(K)]
    keep = np.ones(len(recv), bool)
    for h in holes:
        keep &= ~((recv >= h) & (recv < h + 5 * SCALE))
    bad = quotes.filter(pa.array(keep))
    result = run_suite("quotes", bad, partition_day=DAY, config=QualityConfig(stale_interval_ns=2 * SCALE))
    check = _only_failure(result, "stale_intervals", K)
    assert all(e["silence_ns"] > 5 * SCALE for e in check.examples)


def test_rows_outside_the_partition_day(sim_day):
    trades = sim_day.trades
    rows = np.arange(trades.num_rows - K, trades.num_rows)
    ev = trades.column("ts_event_ns").to_numpy().copy()
    rc = trades.column("ts_recv_ns").to_numpy().copy()
    ev[rows] += 86_400 * SCALE
    rc[rows] += 86_400 * SCALE
    bad = _with(_with(trades, "ts_event_ns", ev), "ts_recv_ns", rc)
    _only_failure(run_suite("trades", bad, partition_day=DAY), "ts_within_day", K)


def test_sequence_going_backwards(sim_day):
    quotes = sim_day.quotes
    rows = _spread_rows(np.arange(1, quotes.num_rows))
    seq = quotes.column("sequence").to_numpy().copy()
    seq[rows] = seq[rows - 1] - 1
    _only_failure(run_suite("quotes", _with(quotes, "sequence", seq), partition_day=DAY),
                  "sequence_monotonic", K)


def test_inconsistent_bars(sim_day):
    bars = sim_day.bars
    rows = _spread_rows(np.arange(bars.num_rows))
    high = bars.column("high_price_nanos").to_numpy().copy()
    low = bars.column("low_price_nanos").to_numpy()
    high[rows] = low[rows] - 1  # high below low: also below open and close
    bad = _with(bars, "high_price_nanos", high)
    _only_failure(run_suite("bars", bad, partition_day=DAY), "ohlc_consistent", K)


def test_wrong_column_type_fails_schema_only(sim_day):
    trades = sim_day.trades
    bad = trades.set_column(trades.column_names.index("size_nanos"), "size_nanos",
                            pc.cast(trades.column("size_nanos"), pa.float64()))
    check = _only_failure(run_suite("trades", bad, partition_day=DAY), "schema", 1)
    failing = [e for e in check.details["expectations"] if not e["success"]]
    assert failing == [{**failing[0], "column": "size_nanos", "type_": "int64", "observed_value": "float64"}]
    assert check.examples[0]["location"] == "column size_nanos"


def test_missing_column_fails_every_check_it_needs(sim_day):
    trades = sim_day.trades.drop_columns(["aggressor_side"])
    result = run_suite("trades", trades, partition_day=DAY)
    assert not result.check("schema").passed
    assert result.check("not_null_keys").passed
    not_run = [c.name for c in result.checks if "missing columns" in str(c.details.get("skipped"))]
    assert not_run == [n for n in check_names("trades") if n not in ("schema", "not_null_keys")]
    assert all(not result.check(n).passed for n in not_run)


def test_missing_key_values_are_reported_not_raised(sim_day):
    trades = sim_day.trades
    symbols = trades.column("symbol").to_pylist()
    rows = [5, 50, 500]
    for i in rows:
        symbols[i] = None
    bad = trades.set_column(trades.column_names.index("symbol"), pa.field("symbol", pa.string()),
                            pa.array(symbols, pa.string()))
    check = run_suite("trades", bad, partition_day=DAY).check("not_null_keys")
    assert not check.passed and check.unexpected_count == len(rows)
    assert [e["location"] for e in check.examples] == [f"row {i}" for i in rows]


def test_empty_partition_passes_with_nothing_judged(sim_day):
    result = run_suite("trades", sim_day.trades.slice(0, 0), partition_day=DAY)
    assert result.passed and result.row_count == 0
    assert {c.element_count for c in result.checks if c.name != "schema"} == {0}


def test_a_lost_instrument_day_fails_its_baseline(sim_day):
    base = steady_baseline(sim_day.trades.num_rows, pc.sum(sim_day.trades.column("size_nanos")).as_py())
    empty = sim_day.trades.slice(0, 0)
    result = run_suite("trades", empty, partition_day=DAY, baseline={"SIM-BTCUSDT": base})
    failed = {c.name: c.unexpected_count for c in result.failed}
    assert failed == {"rows_vs_baseline": 1, "volume_vs_baseline": 1}
    (inst,) = result.check("rows_vs_baseline").details["instruments"]
    assert (inst["symbol"], inst["value"]) == ("SIM-BTCUSDT", 0)


def test_crossed_and_out_of_range_metrics(sim_day):
    m = sim_day.metrics
    rows = _spread_rows(np.arange(m.num_rows))
    spread = m.column("spread_nanos").to_numpy().copy()
    spread[rows] = -spread[rows]  # ask below bid
    crossed = run_suite("metrics", _with(m, "spread_nanos", spread), partition_day=DAY)
    _only_failure(crossed, "crossed_book", K)
    imbalance = m.column("imbalance").to_numpy().copy()
    imbalance[rows[:3]] = 1.5
    skewed = run_suite("metrics", _with(m, "imbalance", imbalance), partition_day=DAY)
    _only_failure(skewed, "imbalance_range", 3)


def test_snapshot_rows_are_in_the_day_of_their_venue_or_their_capture_time(sim_day):
    events = sim_day.order_events
    snapshot = np.flatnonzero((events.column("flags").to_numpy() & F_SNAPSHOT) != 0)
    rows = snapshot[1 : K + 1]  # resting orders the day's opening snapshot replays
    day_ns = 86_400 * SCALE
    ev = events.column("ts_event_ns").to_numpy().copy()
    rc = events.column("ts_recv_ns").to_numpy().copy()
    ev[rows] -= day_ns  # added the day before: the capture (and the lake, by venue time) disagree
    calm = QualityConfig(stale_interval_ns=3 * day_ns)  # the moved rows are no silence to judge here
    older = _with(events, "ts_event_ns", ev)
    assert run_suite("order_events", older, partition_day=DAY, config=calm).check("ts_within_day").passed
    rc[rows] += day_ns  # captured the next day too: in neither day
    bad = _with(older, "ts_recv_ns", rc)
    check = _only_failure(run_suite("order_events", bad, partition_day=DAY, config=calm), "ts_within_day", K)
    assert [e["location"] for e in check.examples] == [f"row {i}" for i in rows[:5]]
