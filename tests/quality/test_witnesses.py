"""GX on the witness rows reaches the verdicts and counts GX reaches on every row, fault by fault.

The reference validates the whole frames with Great Expectations, as the suites did before
witnesses (every row converted to pandas, every expectation run over it); the suite under test
gives GX only the deciding rows. Each injected fault of ``test_injected_faults`` (and the clean
day) must come out the same: verdict, unexpected rows and judged rows, check by check. A wrong
exact count cannot pass silently either: GX sees the extremes and distinct values it did not
choose, and a disagreement stops the run.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from quality import QualityConfig, plan_suite, run_suite, runner, validate_plans
from quality import exact as exact_mod
from quality import plan as plan_mod
from quality.checks import SuiteData
from quality.engine import validate
from quality.exact import EngineMismatch
from tapeflow.schemas.records import F_GAP, F_LAST, F_SNAPSHOT, SCALE
from tests.quality.conftest import DAY, steady_baseline

K = 7


def _with(table: pa.Table, name: str, values) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def _rows(n: int, k: int = K) -> np.ndarray:
    return np.linspace(n // 10, n * 9 // 10, k).astype(int)


def _crossed_snapshots(day):
    snaps = day.snapshots
    bids, asks = snaps.column("bid_price_nanos").to_pylist(), snaps.column("ask_price_nanos").to_pylist()
    for i in _rows(snaps.num_rows):
        bids[i] = [asks[i][0], *bids[i]][: len(bids[i])]
    return "book_snapshots", _with(snaps, "bid_price_nanos", bids), {}


def _dropped_sequences(day):
    events = day.order_events
    seq = events.column("sequence").to_numpy()
    live = np.unique(seq[(events.column("flags").to_numpy() & F_SNAPSHOT) == 0])
    return "order_events", events.filter(pa.array(~np.isin(seq, live[_rows(len(live))]))), {}


def _gap_flags(day):
    deltas = day.book_deltas
    flags = deltas.column("flags").to_numpy().copy()
    flags[np.flatnonzero(flags & F_LAST)[_rows(int((flags & F_LAST).astype(bool).sum()))]] |= F_GAP
    return "book_deltas", _with(deltas, "flags", flags), {}


def _skew(day):
    events = day.order_events
    recv = events.column("ts_recv_ns").to_numpy().copy()
    live = np.flatnonzero((events.column("flags").to_numpy() & F_SNAPSHOT) == 0)
    recv[live[_rows(len(live))]] += 10 * SCALE
    return "order_events", _with(events, "ts_recv_ns", recv), {}


def _outside_book(day):
    trades = day.trades
    price = trades.column("price_nanos").to_numpy().copy()
    rows = _rows(trades.num_rows)
    price[rows] = price[rows] * 101 // 100
    return "trades", _with(trades, "price_nanos", price), {"book": day.quotes}


def _next_day(day):
    trades = day.trades
    ev, rc = trades.column("ts_event_ns").to_numpy().copy(), trades.column("ts_recv_ns").to_numpy().copy()
    ev[-K:] += 86_400 * SCALE
    rc[-K:] += 86_400 * SCALE
    return "trades", _with(_with(trades, "ts_event_ns", ev), "ts_recv_ns", rc), {}


def _backwards(day):
    quotes = day.quotes
    seq = quotes.column("sequence").to_numpy().copy()
    rows = _rows(quotes.num_rows)
    seq[rows] = seq[rows - 1] - 1
    return "quotes", _with(quotes, "sequence", seq), {}


def _high_below_low(day):
    bars = day.bars
    high = bars.column("high_price_nanos").to_numpy().copy()
    rows = _rows(bars.num_rows)
    high[rows] = bars.column("low_price_nanos").to_numpy()[rows] - 1
    return "bars", _with(bars, "high_price_nanos", high), {}


def _float_sizes(day):
    trades = day.trades
    i = trades.column_names.index("size_nanos")
    return "trades", trades.set_column(i, "size_nanos", pc.cast(trades.column(i), pa.float64())), {}


def _null_symbols(day):
    trades = day.trades
    symbols = trades.column("symbol").to_pylist()
    for i in (5, 50, 500):
        symbols[i] = None
    i = trades.column_names.index("symbol")
    return "trades", trades.set_column(i, pa.field("symbol", pa.string()), pa.array(symbols, pa.string())), {}


def _metrics_out_of_range(day):
    m = day.metrics
    rows = _rows(m.num_rows)
    spread, imbalance = m.column("spread_nanos").to_numpy().copy(), m.column("imbalance").to_numpy().copy()
    spread[rows] = -spread[rows]
    imbalance[rows[:3]] = 1.5
    return "metrics", _with(_with(m, "spread_nanos", spread), "imbalance", imbalance), {}


def _volume_off_baseline(day):
    volume = pc.sum(day.trades.column("size_nanos")).as_py()
    base = steady_baseline(day.trades.num_rows, volume * 10)
    return "trades", day.trades, {"baseline": {"SIM-BTCUSDT": base}}


def _tolerated_crossings(day):
    quotes = day.quotes
    bid = quotes.column("bid_price_nanos").to_numpy().copy()
    rows = _rows(quotes.num_rows)
    bid[rows] = quotes.column("ask_price_nanos").to_numpy()[rows]
    return "quotes", _with(quotes, "bid_price_nanos", bid), {
        "config": QualityConfig(crossed_rate_max=(K + 1) / quotes.num_rows)}


def _clean(dataset):
    def make(day):
        return dataset, day.table(dataset), {"book": day.quotes} if dataset == "trades" else {}
    make.__name__ = f"clean_{dataset}"
    return make


CASES = [
    *(_clean(d) for d in ("trades", "order_events", "book_deltas", "quotes", "book_snapshots", "bars",
                          "metrics")),
    _crossed_snapshots, _dropped_sequences, _gap_flags, _skew, _outside_book, _next_day, _backwards,
    _high_below_low, _float_sizes, _null_symbols, _metrics_out_of_range, _volume_off_baseline,
    _tolerated_crossings,
]


def _reference(dataset: str, table: pa.Table, **kwargs) -> dict[str, tuple[bool, int, int]]:
    """Every check validated by GX over every row: (passed, unexpected rows, judged rows)."""
    suite = runner._suite(dataset)
    config = kwargs.pop("config", None) or QualityConfig()
    baseline = kwargs.pop("baseline", None)
    book = kwargs.pop("book", None)
    data = SuiteData(dataset, runner.derive.plain(table), config, DAY, False, baseline=baseline,
                     book=runner.derive.plain(book) if book is not None else None)
    suite.plan(data)
    frames = {"rows": data.table.to_pandas(), "derived": pd.DataFrame(dict(data.derived)),
              "day": pd.DataFrame(data.day_rows)}
    out = {}
    for name, frame in frames.items():
        planned = [c for c in data.checks if c.frame == name and not c.skipped]
        outcomes = validate(f"reference.{name}", frame, [c.expects for c in planned])
        for check, outs in zip(planned, outcomes, strict=True):
            unexpected = sum(int(o.result.get("unexpected_count", 0 if o.success else 1)) for o in outs)
            judged = len(outs) if check.name == "schema" else max(
                (int(o.result.get("element_count", len(frame))) - int(o.result.get("missing_count", 0))
                 for o in outs), default=0)
            out[check.name] = (bool(outs) and all(o.success for o in outs), unexpected, judged)
    for check in data.checks:
        if check.skipped:
            out[check.name] = (True, 0, 0)
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.strip("_"))
def test_witness_verdicts_equal_gx_over_every_row(sim_day, case) -> None:
    dataset, table, kwargs = case(sim_day)
    result = run_suite(dataset, table, partition_day=DAY, **kwargs)
    got = {c.name: (c.passed, c.unexpected_count, c.element_count) for c in result.checks}
    assert got == _reference(dataset, table, **kwargs)
    validated = [e["rows_validated_by_gx"] for c in result.checks for e in c.details.get("expectations", [])]
    if table.num_rows > 1000 and "config" not in kwargs:
        # GX saw a few rows per expectation, never the table
        assert max(validated) <= 2 * 20 + 2 and result.row_count > 10 * max(validated)


def test_a_wrong_exact_count_is_caught_by_gx(sim_day, monkeypatch) -> None:
    dataset, table, _ = _high_below_low(sim_day)
    real = exact_mod.judge

    def blind(expect, column, rows, **kw):
        out = real(expect, column, rows, **kw)
        # a broken rule that sees no offending row: the extremes it still hands GX give it away
        return dataclasses.replace(out, passed=True, unexpected_count=0, unexpected=out.unexpected[:0])

    monkeypatch.setattr("quality.plan.judge", blind)
    with pytest.raises(EngineMismatch, match="ohlc_consistent|price_range|size_range"):
        run_suite(dataset, table, partition_day=DAY)


def test_partitions_of_several_days_validate_together_with_their_own_results(sim_day, monkeypatch) -> None:
    trades = sim_day.trades
    shifted = _with(_with(trades, "ts_event_ns", trades.column("ts_event_ns").to_numpy() + 86_400 * SCALE),
                    "ts_recv_ns", trades.column("ts_recv_ns").to_numpy() + 86_400 * SCALE)
    bad = _next_day(sim_day)[1]
    cases = [(trades, DAY), (shifted, "2024-01-02"), (bad, DAY), (shifted, DAY)]
    alone = [run_suite("trades", t, partition_day=d) for t, d in cases]
    runs: list[str] = []
    real = plan_mod.gx_validate

    def counting(name, frame, groups, **kw):
        runs.append(name)
        return real(name, frame, groups, **kw)

    monkeypatch.setattr(plan_mod, "gx_validate", counting)
    together = validate_plans([plan_suite("trades", t, partition_day=d) for t, d in cases])
    assert [dataclasses.asdict(r) for r in together] == [dataclasses.asdict(r) for r in alone]
    assert [r.check("ts_within_day").unexpected_count for r in together] == [0, 0, K, trades.num_rows]
    # two GX runs for the four partitions: column types and names, then every column expectation
    assert runs == ["trades.table", "witnesses"]
