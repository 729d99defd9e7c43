"""``tapeflow backtest --strategy NAME --format FORMAT PATH... --out DIR``: run a reference strategy.

The files are decoded with the format's decoder, one instrument is kept (``--symbol``, or the only
one), signal rows come from ``--signals`` (a Parquet file of ``signal`` rows), and the risk report
is printed and written to ``DIR/report.json`` with the fills, the equity curve and the plots.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError, InputError
from tapeflow.settings import Settings

# the names only: the strategies import numba, which every other command would pay for at start
STRATEGY_NAMES = ("idle", "market_maker", "signal_follower")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``backtest`` on the ``tapeflow`` parser's subparsers."""
    from tapeflow.backtest.models import QUEUE_MODELS

    p = sub.add_parser("backtest", help="run a strategy over decoded files, print the risk report",
                       description="Backtest a reference strategy (docs/backtest.md).")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--strategy", required=True, choices=STRATEGY_NAMES)
    p.add_argument("--format", required=True, help="input format (tapeflow formats)")
    p.add_argument("--out", type=Path, required=True, help="directory for report, fills, equity, plots")
    p.add_argument("--symbol", help="the instrument to trade when the files hold several")
    p.add_argument("--signals", type=Path, help="Parquet file of signal rows (signal_follower)")
    p.add_argument("--queue", default="power", choices=sorted(QUEUE_MODELS),
                   help="passive fill model (l3 needs order-by-order input)")
    p.add_argument("--queue-n", type=float, default=3.0, help="exponent of the power queue models")
    p.add_argument("--latency", default="constant", choices=("constant", "data", "data-running"),
                   help="constant order latencies, or the feed's ts_recv - ts_event (data-running: the "
                        "clock offset is the minimum so far, as paper trading's)")
    p.add_argument("--entry-ns", type=int, default=1_000_000, help="order entry latency (constant)")
    p.add_argument("--response-ns", type=int, default=1_000_000, help="response latency (constant)")
    p.add_argument("--maker-fee", type=float, default=0.0, help="fee rate on passive fills (<0 rebate)")
    p.add_argument("--taker-fee", type=float, default=0.0, help="fee rate on aggressive fills")
    p.add_argument("--max-position", type=float, default=float("inf"), help="pre-trade position limit")
    p.add_argument("--qty", type=float, default=None,
                   help="order size of the strategy (base units; default one lot)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=_cmd_backtest)
    return p


def _one_symbol(tables: dict[str, pa.Table], symbol: str | None) -> dict[str, pa.Table]:
    found: set[str] = set()
    for t in tables.values():
        if "symbol" in t.schema.names:
            found.update(t.column("symbol").unique().to_pylist())
    if symbol is None:
        if len(found) > 1:
            names = ", ".join(sorted(found)[:5])
            raise InputError(f"the files hold {len(found)} instruments ({names}...): "
                             "pick one with --symbol")
        return tables
    if symbol not in found:
        raise InputError(f"--symbol {symbol!r} is not in the files (found {', '.join(sorted(found)[:10])})")
    return {k: t.filter(pc.equal(t["symbol"], symbol)) for k, t in tables.items()
            if "symbol" in t.schema.names}


def _cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    import pyarrow.parquet as pq

    from tapeflow.backtest.engine import Backtest, BacktestConfig
    from tapeflow.backtest.feed import build_feed
    from tapeflow.backtest.models import ConstantLatency, DataLatency, Fees, Limits, queue_model
    from tapeflow.backtest.results import format_report
    from tapeflow.backtest.strategies import STRATEGIES
    from tapeflow.wire.capture import merge
    from tapeflow.wire.inputs import check_inputs
    from tapeflow.wire.registry import get_format

    fmt = get_format(args.format)
    tables = merge(list(fmt.decode(check_inputs(args.paths))))
    keep = {k: v for k, v in tables.items() if k in ("book_delta", "order_event", "trade")}
    if args.signals is not None:
        if not args.signals.exists():
            raise InputError(f"--signals {args.signals} does not exist")
        keep["signal"] = pq.read_table(args.signals)
    keep = _one_symbol(keep, args.symbol)
    latency = (ConstantLatency(0, args.entry_ns, args.response_ns) if args.latency == "constant"
               else DataLatency(running=args.latency == "data-running"))
    feed = build_feed(keep, latency, start_synced=args.format == "sim")
    # one lot by default: a size that means the same on BTC (0.001) and on ES futures (1 contract)
    qty = args.qty if args.qty is not None else feed.lot
    kwargs: dict[str, Any] = {}
    if args.strategy == "market_maker":
        kwargs = {"qty": qty, "max_position": 10 * qty}
    elif args.strategy == "signal_follower":
        kwargs = {"qty": qty}
    strategy = STRATEGIES[args.strategy](**kwargs)
    if args.queue == "l3" and feed.level != "l3":
        raise ConfigError("--queue l3 needs order-by-order input; this format gave price levels")
    config = BacktestConfig(latency=latency, queue=queue_model(args.queue, args.queue_n),
                            fees=Fees(args.maker_fee, args.taker_fee), limits=Limits(args.max_position))
    result = Backtest(feed, strategy, config).run()
    written = result.write(args.out, plots=not args.no_plots)
    print(f"backtest {args.strategy} over {len(feed):,} rows ({feed.level}), queue {args.queue}, "
          f"latency {args.latency}")
    print(format_report(result.report()))
    print(f"wrote {', '.join(p.name for p in written)} to {args.out}")
    return 0
