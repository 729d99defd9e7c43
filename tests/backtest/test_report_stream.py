"""The risk report over record batches (``tapeflow.backtest.report_stream``): exact sums and order
statistics against ``math.fsum`` and ``numpy.quantile``, the report against the definitions in
``tapeflow.backtest.risk`` and the same for any cut into batches, and a paper session's streamed
report whose memory does not grow with the number of days its spool holds."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.backtest import risk
from tapeflow.backtest.report_stream import ExactSum, OrderStats, _lerp, _quantile_indexes, risk_report
from tapeflow.backtest.results import BacktestResult, equity_table
from tapeflow.backtest.spool import ResultSpool, SpooledResult

DAY = 86_400  # 1 s equity samples a day
S = 1_000_000_000


def _seed() -> int:
    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    return seed


def test_exact_sums_and_order_statistics_do_not_depend_on_the_batches() -> None:
    rng = np.random.default_rng(_seed())
    for n in (1, 2, 3, 9, 130, 2_001):
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
        x[rng.random(n) < 0.2] = x[0]  # ties
        whole, cut = ExactSum(), ExactSum()
        whole.add(x)
        for piece in np.array_split(x, max(1, n // 7)):
            cut.add(piece)
        assert whole.value() == cut.value() == math.fsum(x.tolist())
        for q in (1 - 0.95, 1 - 0.99, 0.5, 0.0, 1.0):
            lo, hi, t = _quantile_indexes(n, q)
            stats = OrderStats([lo, hi])
            for _ in range(OrderStats.PASSES):
                for piece in np.array_split(rng.permutation(x), 3):
                    stats.add(piece)
                stats.next_pass()
            assert _lerp(stats.values[lo], stats.values[hi], t) == np.quantile(x, q), (n, q)


def _result(rng: np.random.Generator, days: float, fills_a_day: int = 300) -> BacktestResult:
    n = int(DAY * days)
    ts = np.arange(n, dtype=np.int64) * S + rng.integers(0, 3, n) * S // 10  # not a perfect grid
    equity = np.cumsum(rng.standard_normal(n) * 0.01).round(6)
    mid = 100 + np.cumsum(rng.standard_normal(n) * 0.001)
    mid[rng.random(n) < 0.01] = np.nan  # a one-sided book now and then
    k = max(2, int(fills_a_day * days))
    fills = pa.table({
        "ts_ns": np.sort(rng.choice(ts, k)), "order_id": np.sort(rng.integers(0, 4 * k, k)),
        "side": rng.choice(np.array([-1, 1], np.int8), k), "price": 100 + rng.standard_normal(k).round(2),
        "qty": rng.integers(1, 5, k) * 0.001, "maker": rng.random(k) < 0.7, "fee": rng.random(k) * 1e-4})
    eq = pa.table({"ts_ns": ts, "equity": equity, "position": np.zeros(n), "mid": mid})
    return BacktestResult(fills, eq, {"orders": 4 * k, "cancels": k, "modifies": 0, "rejected_limit": 0})


def test_the_report_follows_the_risk_definitions_for_any_batches() -> None:
    rng = np.random.default_rng(_seed())
    res = _result(rng, 0.05)
    rep = res.report()
    eq, ts = res.column("equity", "equity"), res.column("equity", "ts_ns")
    pnl = np.diff(eq)
    per_year = 365 * 86_400 * S / float(np.median(np.diff(ts)))
    side, price, qty = (res.column("fills", c) for c in ("side", "price", "qty"))
    mids = res.column("equity", "mid")
    br = risk.pnl_breakdown(side, price, qty, float(mids[np.isfinite(mids)][-1]))
    # numpy's pairwise sums against exact ones: equal to ~1e-12
    want = {"sharpe": risk.sharpe(pnl, per_year), "sortino": risk.sortino(pnl, per_year),
            "max_drawdown": risk.max_drawdown(eq), "var95_hist": risk.var_historical(pnl, 0.95),
            "cvar99_hist": risk.cvar_historical(pnl, 0.99), "var99_param": risk.var_parametric(pnl, 0.99),
            "cvar95_param": risk.cvar_parametric(pnl, 0.95), "realized_pnl": br.realized,
            "unrealized_pnl": br.unrealized, "hit_rate": br.hit_rate,
            "fees": float(np.sum(res.column("fills", "fee"))),
            "turnover": float(np.sum(price * qty)), "final_equity": float(eq[-1]),
            "period_s": float(np.median(np.diff(ts))) / 1e9,
            "fill_ratio": len(np.unique(res.column("fills", "order_id"))) / rep["orders"]}
    for k, v in want.items():
        assert rep[k] == pytest.approx(v, rel=1e-11, abs=1e-15), k
    # the same rows cut into batches of 33 and 1,000: the same report, bit for bit
    for rows in (33, 1_000):
        got = risk_report(lambda rows=rows: res.fills.to_batches(max_chunksize=rows),
                          lambda rows=rows: res.equity.to_batches(max_chunksize=rows), res.counts)
        assert str(got) == str(rep)  # str: NaN == NaN


def _spool(tmp_path, days: int, part_rows: int = 16_384) -> tuple[ResultSpool, BacktestResult]:  # noqa: ANN001
    rng = np.random.default_rng(days)
    res = _result(rng, days)
    spool = ResultSpool(tmp_path / f"d{days}")
    for name, table in (("fills", res.fills), ("equity", res.equity)):
        for off in range(0, table.num_rows, part_rows):
            spool.write(name, table.slice(off, part_rows))
    return spool, res


def _peak(fn) -> int:  # noqa: ANN001
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_spooled_report_streams_in_bounded_batches_whatever_the_days(tmp_path) -> None:
    """One day and four days of 1 s equity samples in the spool: the streamed report's peak memory
    (numpy's allocations, traced) stays the same and no batch exceeds ``batch_rows``; reading the
    parts into memory first (the report before) grows with the days, so the measure can fail."""
    peaks, before = {}, {}
    for days in (1, 4):
        spool, res = _spool(tmp_path, days)
        empty = {"fills": res.fills.slice(0, 0), "equity": equity_table([])}
        streamed = SpooledResult(spool, empty["fills"], empty["equity"], res.counts, batch_rows=4_096)
        seen: list[int] = []

        def counting(*args, batches=spool.batches, seen=seen, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            for b in batches(*args, **kwargs):
                seen.append(b.num_rows)
                yield b

        spool.batches = counting  # type: ignore[method-assign]
        report: dict = {}
        peaks[days] = _peak(lambda streamed=streamed, report=report: report.update(streamed.report()))
        assert max(seen) <= 4_096 and sum(seen) > days * DAY
        assert str(report) == str(res.report())  # the in-memory report of the same rows
        before[days] = _peak(lambda spool=spool, empty=empty, res=res: BacktestResult(
            spool.read("fills", empty["fills"]), spool.read("equity", empty["equity"]), res.counts).report())
    print({"streamed": peaks, "read whole": before})
    assert peaks[4] < peaks[1] * 1.25 + 2**20, peaks
    assert before[4] > before[1] + 2 * DAY * 8 * 3, before  # 3 more days of float64 arrays, at least
