"""Paper trading throughput: the paper session (the backtester's engine fed micro-batch by
micro-batch, :mod:`tapeflow.backtest.paper`) beside the backtest of the same capture in one go.

Both run the reference market maker (100 ms timer) over the real Binance capture with the same
models; the paper session takes the rows in micro-batches cut by receive time (1,000 and 100 rows a
batch, as a live source cuts them) and produces its paper rows after each. Rates are rows per CPU
second after a warm-up; the backtest row includes its feed build, since the paper session builds
its feed as it goes. The peer is our own backtester: the price of running live.

Memory: the same session (1,000-row micro-batches) with the RSS read after every batch; the figure is
the growth of the running peak RSS from a tenth of the capture to its end, per million events
(goal: flat, the session forgets the rows its engine has passed), beside the same session with
forgetting turned off (what every session did before: all rows kept). A second pair samples the equity
every 10 ms (36k samples: a 1 s grid's 10 hours) with the samples and fills streamed to Parquet parts
(the default) against kept in memory.
"""

from __future__ import annotations

from bench import Report, median_time, real_file

_CAPTURE = "binance/usdm_btcusdt_20240808.gz"


def run(report: Report) -> None:
    path = real_file(_CAPTURE)
    if path is None:
        report.skip()
        return
    import numpy as np
    import pyarrow.compute as pc

    from tapeflow.backtest.engine import Backtest, BacktestConfig
    from tapeflow.backtest.feed import build_feed
    from tapeflow.backtest.models import ConstantLatency, PowerProbQueue
    from tapeflow.backtest.paper import PaperTrader
    from tapeflow.backtest.strategies import MarketMaker
    from tapeflow.wire.capture import merge
    from tapeflow.wire.registry import get_format

    tables = merge(list(get_format("binance").decode([path])))
    tables = {k: tables[k] for k in ("book_delta", "trade")}
    config = BacktestConfig(ConstantLatency(0, 5_000_000, 5_000_000), PowerProbQueue(3))
    tick, lot = 100_000_000, 1_000_000
    n = sum(t.num_rows for t in tables.values())
    report.section("paper trading vs the backtest of the same capture (market maker)")

    def backtest() -> None:
        feed = build_feed(tables, config.latency, tick_nanos=tick, lot_nanos=lot)
        Backtest(feed, MarketMaker(), config).run()

    report.add("backtest (feed build + run)", n, median_time(backtest), ours=True,
               note="whole capture at once")
    recv = np.sort(np.concatenate([t.column("ts_recv_ns").to_numpy() for t in tables.values()]))
    for rows in (1000, 100):
        edges = [int(recv[0]) - 1, *recv[rows::rows].tolist(), int(recv[-1]) + 1]
        batches = [{k: t.filter(pc.and_(pc.greater_equal(t["ts_recv_ns"], lo), pc.less(t["ts_recv_ns"], hi)))
                    for k, t in tables.items()} for lo, hi in zip(edges[:-1], edges[1:], strict=True)]

        def paper(batches: list = batches) -> None:
            trader = PaperTrader("mm", MarketMaker(), tick_nanos=tick, lot_nanos=lot, config=config)
            for b in batches:
                trader.on_batch(b)
            trader.close()

        report.add(f"paper session, {rows}-row micro-batches", n, median_time(paper), ours=True,
                   note=f"{len(batches):,} batches, paper rows after each")
        if rows == 1000:
            def new() -> PaperTrader:
                return PaperTrader("mm", MarketMaker(), tick_nanos=tick, lot_nanos=lot, config=config)

            _memory(report, batches, n, new)
            fine = BacktestConfig(config.latency, config.queue, equity_interval_ns=10_000_000)

            def sampled(spill_rows: int, fine: BacktestConfig = fine) -> PaperTrader:
                return PaperTrader("mm", MarketMaker(), tick_nanos=tick, lot_nanos=lot, config=fine,
                                   spill_rows=spill_rows)

            _streaming(report, batches, n, sampled)


def _rss() -> int:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _growth(trader, batches: list, sizes: list[int], mark_rows: int | None) -> tuple[float, int]:  # noqa: ANN001
    """Peak RSS growth (MiB per M events) from ``mark_rows`` rows fed (None: the first spill to
    Parquet) to the end, and the rows fed at the mark."""
    done, peak, mark = 0, _rss(), None
    for b, size in zip(batches, sizes, strict=True):
        trader.on_batch(b)
        done += size
        peak = max(peak, _rss())
        spilled = trader.broker.spool.parts["equity"] > 0
        if mark is None and (done >= mark_rows if mark_rows is not None else spilled):
            mark = (done, peak)
    trader.close()
    assert mark is not None
    return (peak - mark[1]) / 2**20 / ((done - mark[0]) / 1e6), mark[0]


def _streaming(report: Report, batches: list, n: int, new_trader) -> None:  # noqa: ANN001
    # an equity sample every 10 ms (36k over the capture's 6 minutes, what a 1 s grid gives in 10 hours):
    # written out every 4,096 fills + samples (the default) against kept in memory (the old way); both
    # measured from the first write on (the first Parquet write costs a few MiB once: pyarrow's writer)
    try:
        _rss()
    except OSError:
        return
    sizes = [sum(t.num_rows for t in b.values()) for b in batches]
    g, at = _growth(new_trader(4096), batches, sizes, None)
    g0, _ = _growth(new_trader(1 << 62), batches, sizes, at)
    report.figure("paper session peak RSS growth, equity every 10 ms, streamed to Parquet", g,
                  "MiB per M events", goal=5.0, higher_is_better=False,
                  before=f"{g0:.1f} MiB per M events (samples and fills kept in memory, same run)",
                  note=f"fills and equity samples written out every 4,096 rows, read back for the report; "
                       f"from the first write ({at:,} rows) to the end")


def _memory(report: Report, batches: list, n: int, new_trader) -> None:  # noqa: ANN001
    import time

    try:
        _rss()
    except OSError:
        report.note("paper memory: /proc/self/statm is not readable here, not measured")
        return
    sizes = [sum(t.num_rows for t in b.values()) for b in batches]
    out = {}
    for label, compact in (("forgets passed rows", 4096), ("keeps every row (before)", 1 << 62)):
        trader = new_trader()
        trader.broker.compact_rows = compact
        done, peak, mark = 0, _rss(), None
        t0 = time.process_time()
        for b, size in zip(batches, sizes, strict=True):
            trader.on_batch(b)
            done += size
            peak = max(peak, _rss())
            if mark is None and done >= n // 10:
                mark = (done, peak)
        trader.close()
        cpu = time.process_time() - t0
        assert mark is not None
        growth = (peak - mark[1]) / 2**20 / ((done - mark[0]) / 1e6)
        out[label] = (growth, cpu, trader.broker.retained())
        del trader
    (g, cpu, kept), (g0, _, _) = out["forgets passed rows"], out["keeps every row (before)"]
    report.add("paper session, 1000-row batches, RSS read per batch", n, cpu, ours=True,
               note=f"peak RSS growth {g:.1f} MiB per M events; rows kept at the end {kept['rows']:,}")
    report.figure("paper session peak RSS growth", g, "MiB per M events", goal=5.0, higher_is_better=False,
                  before=f"{g0:.0f} MiB per M events (every row kept, same run)",
                  note=f"{n:,}-row Binance capture in 1,000-row batches; from a tenth of it to the end; "
                       "goal: flat (5 MiB per M events: allocator noise)")
    report.figure("paper session events/s", n / cpu / 1e3, "k events/s", goal=1.3,
                  note="market maker, CPU time incl. the RSS reads; goal: the capture's ~1,300 rows/s")
