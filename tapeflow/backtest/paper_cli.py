"""``tapeflow paper``: paper-trade a reference strategy in the Bytewax flow (``flows.paper``).

Like ``tapeflow live``, this command may not import ``flows``: it runs
``python -m bytewax.run "flows.paper:flow_from_env()"`` in this process with the ``TAPEFLOW_LIVE_*``
variables of the source (a capture replay, or a live venue with symbols) and ``TAPEFLOW_PAPER``, the
session's settings as JSON (:class:`PaperSettings`). The paper rows go to the lake (and ClickHouse
with ``--clickhouse``); the command then prints each instrument's fills and final position and PnL
read back from the lake.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapeflow.errors import ConfigError
from tapeflow.settings import Settings

if TYPE_CHECKING:
    from tapeflow.backtest.session import PaperSession

ENV = "TAPEFLOW_PAPER"
FLOW = "flows.paper:flow_from_env()"
STRATEGY_NAMES = ("idle", "market_maker", "signal_follower", "model_follower")
LATENCIES = ("constant", "data")


@dataclass(frozen=True)
class PaperSettings:
    """One paper session's strategy, instrument units, models and limits (``TAPEFLOW_PAPER`` JSON)."""

    strategy: str = "market_maker"
    tick_nanos: int = 0
    lot_nanos: int = 0
    qty: float | None = None
    max_position: float = math.inf
    max_daily_loss: float = math.inf
    kill_file: str | None = None
    feed_ns: int = 0
    entry_ns: int = 1_000_000
    response_ns: int = 1_000_000
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    queue: str = "power"
    queue_n: float = 3.0
    latency: str = "constant"
    latency_base_ns: int = 0
    order_scale: float = 1.0
    results_dir: str | None = None

    def __post_init__(self) -> None:
        if self.latency not in LATENCIES:
            raise ConfigError(f"unknown paper latency model {self.latency!r}; choose one of "
                              f"{', '.join(LATENCIES)}")
        if self.strategy not in STRATEGY_NAMES:
            raise ConfigError(f"unknown paper strategy {self.strategy!r}; choose one of "
                              f"{', '.join(STRATEGY_NAMES)}")
        if self.tick_nanos <= 0 or self.lot_nanos <= 0:
            raise ConfigError(f"paper trading needs the instrument's tick and lot in 1e-9 units (> 0), got "
                              f"{self.tick_nanos} and {self.lot_nanos}")

    def to_env(self) -> dict[str, str]:
        return {ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PaperSettings:
        """Read ``TAPEFLOW_PAPER``; a missing or malformed value is a :class:`ConfigError`."""
        raw = (os.environ if env is None else env).get(ENV)
        if not raw:
            raise ConfigError(f"{ENV} is not set: start paper trading with `tapeflow paper`")
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{ENV} is not valid paper settings: {exc}") from exc

    def new_session(self, new_scorer: Callable[[], Any] | None = None) -> Callable[[], PaperSession]:
        """A factory of one instrument's :class:`PaperSession` (a fresh strategy each); ``new_scorer``:
        the live predictor's stage whose ``prediction`` rows join the batches."""
        from tapeflow.backtest.engine import BacktestConfig
        from tapeflow.backtest.models import ConstantLatency, DataLatency, Fees, LatencyModel, queue_model
        from tapeflow.backtest.paper import RiskLimits
        from tapeflow.backtest.session import PaperSession
        from tapeflow.backtest.strategies import STRATEGIES

        qty = self.qty if self.qty is not None else self.lot_nanos / 1e9
        kwargs: dict[str, Any] = {}
        if self.strategy == "market_maker":
            kwargs = {"qty": qty, "max_position": min(10 * qty, self.max_position)}
        elif self.strategy in ("signal_follower", "model_follower"):
            kwargs = {"qty": qty}
        if self.strategy == "model_follower":
            from tapeflow.backtest.model_driven import ModelFollower

            strategies: Mapping[str, Callable[..., Any]] = {"model_follower": ModelFollower}
        else:
            strategies = STRATEGIES
        latency: LatencyModel = ConstantLatency(self.feed_ns, self.entry_ns, self.response_ns)
        if self.latency == "data":
            latency = DataLatency(self.latency_base_ns, self.order_scale, running=True)
        config = BacktestConfig(latency, queue_model(self.queue, self.queue_n),
                                Fees(self.maker_fee, self.taker_fee))
        limits = RiskLimits(self.max_position, self.max_daily_loss)
        kill = Path(self.kill_file) if self.kill_file else None

        def new() -> PaperSession:
            return PaperSession(self.strategy, lambda: strategies[self.strategy](**kwargs),
                                tick_nanos=self.tick_nanos, lot_nanos=self.lot_nanos, config=config,
                                limits=limits, kill_file=kill, new_scorer=new_scorer,
                                results_root=Path(self.results_dir) if self.results_dir else None)

        return new


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``paper`` on the ``tapeflow`` parser's subparsers."""
    p = sub.add_parser("paper", help="paper-trade a strategy in the live flow (a capture replay or a venue)",
                       description="Paper trading, the backtester's live twin (docs/backtest.md).")
    p.add_argument("--strategy", required=True, choices=STRATEGY_NAMES)
    p.add_argument("--capture", nargs="+", type=Path, metavar="FILE", help="capture files to replay")
    p.add_argument("--format", dest="format_name", help="the captures' format")
    p.add_argument("--venue", help="a live venue (with --symbols) instead of captures")
    p.add_argument("--symbols", help="comma-separated symbols of the live venue")
    p.add_argument("--tick-nanos", type=int, required=True, help="the instrument's price tick, 1e-9 units")
    p.add_argument("--lot-nanos", type=int, required=True, help="the instrument's size lot, 1e-9 units")
    p.add_argument("--qty", type=float, help="order size (base units; default one lot)")
    p.add_argument("--max-position", type=float, default=math.inf, help="position limit (refuse, halt)")
    p.add_argument("--max-daily-loss", type=float, default=math.inf, help="loss since 00:00 UTC that halts")
    p.add_argument("--kill-file", type=Path,
                   help="the kill switch: when this file exists, every session halts")
    p.add_argument("--latency", default="constant", choices=LATENCIES,
                   help="constant, or data: ts_recv - ts_event per row with the running minimum as offset")
    p.add_argument("--entry-ns", type=int, default=1_000_000, help="order entry latency (constant)")
    p.add_argument("--response-ns", type=int, default=1_000_000, help="response latency (constant)")
    p.add_argument("--latency-base-ns", type=int, default=0, help="the smallest feed latency (data)")
    p.add_argument("--order-scale", type=float, default=1.0,
                   help="order and response latency as a multiple of the feed's (data)")
    p.add_argument("--maker-fee", type=float, default=0.0, help="fee rate on passive fills (<0 rebate)")
    p.add_argument("--taker-fee", type=float, default=0.0, help="fee rate on aggressive fills")
    p.add_argument("--queue", default="power", help="passive fill model (L2 models)")
    p.add_argument("--queue-n", type=float, default=3.0, help="exponent of the power queue models")
    p.add_argument("--results-dir", type=Path,
                   help="each session's fills, equity and report.json go to DIR/VENUE/SYMBOL/STRATEGY")
    p.add_argument("--batch-events", type=int, default=1000, help="most rows per micro-batch of a capture")
    p.add_argument("--lake", type=Path, help="lake root (default TAPEFLOW_LAKE)")
    p.add_argument("--clickhouse", help="also write the warehouse at this DSN")
    p.set_defaults(func=run_paper)
    return p


def paper_env(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """The flow's environment for these arguments."""
    if not args.capture and not (args.venue and args.symbols):
        raise ConfigError("tapeflow paper needs --capture FILE... (with --format) or --venue and --symbols")
    if args.capture and not args.format_name:
        raise ConfigError("--capture needs --format (the captures' format)")
    paper = PaperSettings(args.strategy, args.tick_nanos, args.lot_nanos, args.qty, args.max_position,
                          args.max_daily_loss, str(args.kill_file.resolve()) if args.kill_file else None,
                          0, args.entry_ns, args.response_ns, args.maker_fee, args.taker_fee, args.queue,
                          args.queue_n, latency=args.latency, latency_base_ns=args.latency_base_ns,
                          order_scale=args.order_scale,
                          results_dir=str(args.results_dir.resolve()) if args.results_dir else None)
    paper.new_session()  # bad models fail here, before the flow starts
    return {
        "TAPEFLOW_LIVE_VENUE": args.venue or "", "TAPEFLOW_LIVE_SYMBOLS": args.symbols or "",
        "TAPEFLOW_LIVE_FORMAT": args.format_name or args.venue or "",
        "TAPEFLOW_LIVE_CAPTURE": os.pathsep.join(str(p.resolve()) for p in args.capture or ()),
        "TAPEFLOW_LIVE_BATCH_EVENTS": str(args.batch_events),
        "TAPEFLOW_LIVE_OUTPUTS": "lake,clickhouse" if args.clickhouse else "lake",
        "TAPEFLOW_LAKE": str(args.lake or settings.lake_dir),
        "TAPEFLOW_CLICKHOUSE": args.clickhouse or settings.clickhouse_dsn,
        # the model follower trades on the live scorer's prediction rows (the registry's champion)
        **({"TAPEFLOW_LIVE_PREDICT": "1"} if args.strategy == "model_follower" else {}),
        **paper.to_env(),
    }


def run_paper(args: argparse.Namespace, settings: Settings) -> int:
    """Run the paper flow in this process, then print what each session did."""
    from tapeflow.live.cli import run_in_process
    from tapeflow.schemas.paper import PAPER_FILL, PAPER_POSITION
    from tapeflow.schemas.records import STATUS
    from tapeflow.storage import lake as lake_store

    env = paper_env(args, settings)
    code, _ = run_in_process([sys.executable, "-m", "bytewax.run", FLOW, "-w", "1"], env, sys.stdout)
    if code:
        return code
    lake = Path(env["TAPEFLOW_LAKE"])
    positions = lake_store.read(PAPER_POSITION, lake)
    fills = lake_store.read(PAPER_FILL, lake)
    status = lake_store.read(STATUS, lake)
    last = {(r["venue"], r["symbol"], r["strategy"]): r for r in positions.sort_by("ts_event_ns").to_pylist()}
    for (venue, symbol, strategy), row in last.items():
        n_fills = sum(1 for f in fills.select(["venue", "symbol", "strategy"]).to_pylist()
                      if (f["venue"], f["symbol"], f["strategy"]) == (venue, symbol, strategy))
        print(f"paper {strategy} {venue}/{symbol}: {n_fills} fills, position {row['position']:g}, "
              f"equity {row['equity']:.6g}, fees {row['fees']:.6g}" + (", HALTED" if row["halted"] else ""))
    for row in status.to_pylist():
        if row["state"] in ("halted", "killed") and row["detail"].startswith("paper "):
            print(f"paper {row['state']} {row['venue']}/{row['symbol']}: {row['detail']}")
    return 0
