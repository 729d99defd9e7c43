"""Backtester throughput: tapeflow's engine beside hftbacktest's in the same run, same rows.

Both replay the real Binance capture (decoded by tapeflow; hftbacktest gets the same rows through
:func:`tapeflow.backtest.hbt.to_hbt_events`, ROI vector depth +-50% of the mid) with a trivial
strategy: tapeflow's :class:`~tapeflow.backtest.strategies.Idle` (no callback: the compiled loop
runs through; equity sampled every second), hftbacktest's ``elapse`` in 1 s steps (its exchange
and local processors both apply every row). Rates are rows per CPU second after a warm-up
(compilation excluded); the cold start (first run in a fresh process: imports, numba cache load
or compile, feed build) is timed separately in a subprocess. The feed build (the book replay
through ``tapeflow.book`` and the merge) is timed on its own: hftbacktest's conversion is not.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench import Goal, Report, median_time, real_file

FIGURES = (Goal("backtest events/s, trivial strategy (x hftbacktest)", "x", 1.0),)
_CAPTURE = "binance/usdm_btcusdt_20240808.gz"
_COLD = """
import time, sys
t0 = time.perf_counter()
from pathlib import Path
from tapeflow.wire.capture import merge
from tapeflow.wire.registry import get_format
from tapeflow.backtest.engine import Backtest
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.models import ConstantLatency
from tapeflow.backtest.strategies import Idle
tables = merge(list(get_format("binance").decode([Path(sys.argv[1])])))
t1 = time.perf_counter()
feed = build_feed({k: tables[k] for k in ("book_delta", "trade")}, ConstantLatency())
Backtest(feed, Idle()).run()
print(t1 - t0, time.perf_counter() - t1)
"""


def run(report: Report) -> None:
    path = real_file(_CAPTURE)
    if path is None:
        report.skip()
        return
    import numpy as np

    from tapeflow.backtest.engine import Backtest
    from tapeflow.backtest.feed import build_feed
    from tapeflow.backtest.hbt import to_hbt_events
    from tapeflow.backtest.models import ConstantLatency
    from tapeflow.backtest.strategies import Idle
    from tapeflow.wire.capture import merge
    from tapeflow.wire.registry import get_format

    tables = merge(list(get_format("binance").decode([path])))
    tables = {k: tables[k] for k in ("book_delta", "trade")}
    report.section("backtest, trivial strategy (one instrument)")
    report.note(f"rows: {path.name} decoded by tapeflow (book_delta + trade)")
    t_feed = median_time(lambda: build_feed(tables, ConstantLatency()))
    feed = build_feed(tables, ConstantLatency())
    n = len(feed)
    report.add("tapeflow feed build (book replay + merge)", n, t_feed, ours=True, note="once per backtest")
    t_ours = median_time(lambda: Backtest(feed, Idle()).run())
    report.add("tapeflow Backtest, Idle strategy", n, t_ours, ours=True,
               note="compiled loop, 1 s equity samples")
    ours_rate = n / t_ours[0]

    events = to_hbt_events(feed)
    theirs_rate = None
    try:
        from hftbacktest import BacktestAsset, ROIVectorMarketDepthBacktest
    except ImportError:
        report.note("hftbacktest not installed: no peer row")
    else:
        tick = feed.tick_nanos / 1e9
        mid = float(np.median(events["px"][events["qty"] > 0]))

        def hbt_run() -> None:
            asset = (BacktestAsset().data(events).linear_asset(1.0).roi_lb(mid * 0.5).roi_ub(mid * 1.5)
                     .constant_order_latency(0, 0).risk_adverse_queue_model().no_partial_fill_exchange()
                     .trading_value_fee_model(0.0, 0.0).tick_size(tick).lot_size(feed.lot)
                     .last_trades_capacity(0))
            hbt = ROIVectorMarketDepthBacktest([asset])
            while hbt.elapse(1_000_000_000) == 0:
                pass
            hbt.close()

        t_theirs = median_time(hbt_run)
        report.add("hftbacktest ROIVector, elapse(1 s)", len(events), t_theirs, ours=False,
                   note=f"{len(events):,} rows (signals/superseded rows dropped)")
        theirs_rate = len(events) / t_theirs[0]
    report.record(FIGURES[0], ours_rate / theirs_rate if theirs_rate else None,
                  note=f"tapeflow {ours_rate / 1e6:.1f} M rows/s vs hftbacktest "
                       f"{(theirs_rate or 0) / 1e6:.1f} M rows/s, warm")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _COLD, str(path)], capture_output=True, text=True,
                         check=False)
    if out.returncode == 0:
        decode_s, rest_s = (float(x) for x in out.stdout.split())
        report.note(f"cold start (fresh process): imports + decode {decode_s:.2f} s, feed build + first "
                    f"backtest (numba cache load or compile) {rest_s:.2f} s, "
                    f"wall {time.perf_counter() - t0:.2f} s")
    else:
        report.note(f"cold start run failed: {out.stderr.strip()[-300:]}")
