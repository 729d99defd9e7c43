"""Paper trading, the backtester's live twin: one strategy over the live flow's micro-batches.

:class:`PaperTrader` runs a :class:`tapeflow.backtest.strategy.Strategy` (the same class a
backtest runs) behind a :class:`Broker`. :class:`SimulatedBroker` is the only broker here (no real
one is reachable): it is the backtester's engine (:class:`tapeflow.backtest.engine.Backtest`, same
fill, queue and latency models) over a :class:`tapeflow.backtest.livefeed.LiveFeed`, advanced after
each batch to the last instant no later row can precede. So over a replayed capture a paper session
gives the fills and PnL of the backtest of that capture (tests/backtest/test_paper.py).

Risk (:class:`RiskLimits`): orders past ``max_position`` are refused before they are sent (the
engine's pre-trade limit); a day's loss past ``max_daily_loss`` (equity against the equity at the
start of the UTC day), a position past the limit, or the kill switch **halt** the strategy: its
callbacks stop, its open orders are cancelled, its position is closed with market orders, and one
``status`` row (``halted`` or ``killed``) says why. A halt lasts until a new session starts.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kernels.codes import UNDEF_PRICE
from tapeflow.backtest import core
from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.livefeed import LiveFeed
from tapeflow.backtest.models import Limits
from tapeflow.backtest.results import BacktestResult
from tapeflow.backtest.spool import ResultSpool
from tapeflow.backtest.strategy import Context, Fill, Strategy, TradeEvent
from tapeflow.errors import ConfigError
from tapeflow.schemas.paper import PAPER_FILL, PAPER_ORDER, PAPER_POSITION
from tapeflow.schemas.records import STATUS

DAY_NS = 86_400_000_000_000


class RiskLimits:
    """A paper session's limits.

    Args:
        max_position: largest absolute position (base units): orders past it are refused, a
            position past it halts.
        max_daily_loss: the loss (quote currency, > 0) since the start of the UTC day that halts.
    """

    def __init__(self, max_position: float = math.inf, max_daily_loss: float = math.inf) -> None:
        if not max_position > 0 or not max_daily_loss > 0:
            raise ConfigError(f"max_position and max_daily_loss must be > 0, got {max_position} and "
                              f"{max_daily_loss}")
        self.max_position = max_position
        self.max_daily_loss = max_daily_loss


class Guard(Strategy):
    """Wraps the session's strategy: checks the limits before every callback, and once halted
    cancels and flattens instead of calling it."""

    def __init__(self, inner: Strategy, limits: RiskLimits) -> None:
        self.inner, self.limits = inner, limits
        self.timer_ns = inner.timer_ns
        self.halted: tuple[int, str, str] | None = None
        self.day: int | None = None
        self.day_start_equity = 0.0

    def wake_mask(self) -> int:
        return self.inner.wake_mask()

    def day_pnl(self, ctx: Context) -> float:
        equity = ctx.equity()
        day = ctx.now_ns // DAY_NS
        if day != self.day:
            self.day, self.day_start_equity = day, equity
        return equity - self.day_start_equity

    def halt(self, ctx: Context, state: str, detail: str) -> None:
        """Stop the strategy (once): cancel its orders and start closing its position."""
        if self.halted is None:
            self.halted = (ctx.now_ns, state, detail)
        self._unwind(ctx)

    def _unwind(self, ctx: Context) -> None:
        orders = ctx.orders
        for order in orders.values():
            if order.status in ("pending", "open") and not order.busy:
                ctx.cancel(order.order_id)
        if abs(ctx.position) > 1e-12 and not any(o.side == -np.sign(ctx.position) for o in orders.values()):
            ctx.market(-1 if ctx.position > 0 else 1, abs(ctx.position))

    def _ok(self, ctx: Context) -> bool:
        if self.halted is not None:
            self._unwind(ctx)
            return False
        pnl = self.day_pnl(ctx)
        if pnl < -self.limits.max_daily_loss:
            self.halt(ctx, "halted", f"max_daily_loss: day PnL {pnl:.6g} < -{self.limits.max_daily_loss:g}")
        elif abs(ctx.position) > self.limits.max_position + 1e-12:
            self.halt(ctx, "halted",
                      f"max_position: position {ctx.position:.6g} > {self.limits.max_position:g}")
        return self.halted is None

    def on_start(self, ctx: Context) -> None:
        self.day_pnl(ctx)
        self.inner.on_start(ctx)

    def on_book(self, ctx: Context) -> None:
        if self._ok(ctx):
            self.inner.on_book(ctx)

    def on_trade(self, ctx: Context, trade: TradeEvent) -> None:
        if self._ok(ctx):
            self.inner.on_trade(ctx, trade)

    def on_signal(self, ctx: Context, signal: dict[str, Any]) -> None:
        if self._ok(ctx):
            self.inner.on_signal(ctx, signal)

    def on_prediction(self, ctx: Context, prediction: dict[str, Any]) -> None:
        if self._ok(ctx):
            self.inner.on_prediction(ctx, prediction)

    def on_timer(self, ctx: Context) -> None:
        if self._ok(ctx):
            self.inner.on_timer(ctx)

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        if self._ok(ctx):
            self.inner.on_fill(ctx, fill)

    def on_end(self, ctx: Context) -> None:
        self.inner.on_end(ctx)


class Broker(ABC):
    """Where a paper session's orders go and its fills come from.

    A broker takes the market's micro-batches (:meth:`on_market`), runs the strategy's order
    messages against its venue, and exposes the strategy's :class:`Context` (position, cash, fees,
    fills, the order journal). A real broker's adapter would send the messages to the venue and
    book the fills it reports; none is reachable here.
    """

    ctx: Context

    @abstractmethod
    def on_market(self, tables: dict[str, pa.Table], *, final: bool = False) -> None:
        """The next micro-batch of the instrument's rows (``final``: the last one)."""

    @abstractmethod
    def result(self) -> BacktestResult:
        """The session's fills and equity curve so far (after the final batch: complete)."""


class SimulatedBroker(Broker):
    """The backtester's engine as a broker: the same fill, queue and latency models over a live feed.

    Args:
        strategy: what the engine wakes (the :class:`Guard` around the session's strategy).
        tick_nanos, lot_nanos: the instrument's price tick and size lot.
        config: the backtest models (``latency`` must be ``ConstantLatency``).
    """

    def __init__(self, strategy: Strategy, tick_nanos: int, lot_nanos: int, config: BacktestConfig,
                 *, compact_rows: int = 4096, spool: ResultSpool | None = None) -> None:
        self.live = LiveFeed(tick_nanos, lot_nanos, config.latency)
        self.strategy, self.config = strategy, config
        self.bt: Backtest | None = None
        self.done = False
        # the fills and equity samples go to disk once there are this many (None: kept in memory)
        self.spool = spool
        self._final: BacktestResult | None = None
        # forget the rows the engine has passed once there are this many (tests use 1: every batch)
        self.compact_rows = compact_rows

    @property
    def ctx(self) -> Context:  # type: ignore[override]
        if self.bt is None:
            raise ConfigError("the simulated broker has no market data yet")
        return self.bt.ctx

    @property
    def started(self) -> bool:
        return self.bt is not None

    def on_market(self, tables: dict[str, pa.Table], *, final: bool = False) -> None:
        if self.done:
            raise ConfigError("the paper session has ended")
        added = self.live.append(tables, final=final)
        if not len(self.live):
            return
        if self.bt is None:
            self.bt = Backtest(self.live.feed(0), self.strategy, self.config)
            self.bt.ctx.journal = []
            self.bt.ctx.spool = self.spool
            self.bt.start()
        elif added:
            self._compact()
            self.bt.feed = self.live.feed(int(self.bt.S[core.I_EX]))
        if final:
            self.bt.advance(None)
            self.done = True
        else:
            # every later row reaches the exchange and the strategy after the last known exchange time
            self.bt.advance(int(self.bt.feed.t_exch[-1]) - 1)

    def _compact(self) -> None:
        # the engine reads rows from min(exchange, local cursor) - 1 on (the book before the next
        # exchange row, the strategy's last local row): everything before is forgotten
        assert self.bt is not None
        S = self.bt.S
        passed = min(int(S[core.I_EX]), int(S[core.I_LOC])) - 1
        if passed >= max(self.compact_rows, 1):
            self.live.drop_before(passed)
            self.bt.rebase(passed)

    def retained(self) -> dict[str, int]:
        """What the session holds, by container (rows, bytes, entries): the memory test's view."""
        out = self.live.retained()
        if self.bt is not None:
            ctx = self.bt.ctx
            out.update({"fills": len(ctx.fills), "samples": len(ctx.samples),
                        "journal": len(ctx.journal or ()), "live_orders": len(ctx._live),
                        "order_slots": int(self.bt.o_i.shape[0]), "fill_buffer": int(self.bt.fills.shape[0])})
        return out

    def result(self) -> BacktestResult:
        bt = self.bt
        if bt is None:
            raise ConfigError("the paper session saw no market data")
        if not self.done:
            return bt.ctx.result()
        if self._final is None:
            # the report streams the spilled parts; a temporary spool goes when the result does
            self._final = bt.finish()
            if hasattr(self._final, "adopt"):
                self._final.adopt()
        return self._final


class PaperTrader:
    """One strategy's paper session on one instrument: batches in, order/fill/position/status rows out.

    Example:
        ``trader = PaperTrader("mm", MarketMaker(), tick_nanos=100_000_000, lot_nanos=1_000_000)``;
        ``rows = trader.on_batch(tables)`` per micro-batch, ``trader.close()`` at the end.

    Args:
        name: the strategy's name in the rows.
        strategy: the strategy (any :class:`Strategy`, as in a backtest).
        tick_nanos, lot_nanos: the instrument's tick and lot (1e-9 units).
        config: fill, latency and fee models; its ``limits`` are replaced by ``limits.max_position``.
        limits: the session's :class:`RiskLimits`.
        broker: default a :class:`SimulatedBroker` over ``config``.
        results_dir: where the session's fills and equity samples are written as they come
            (Parquet parts, :class:`ResultSpool`) and, at the end, ``report.json``; None: a
            temporary directory, removed at the end.
        spill_rows: fills plus equity samples kept in memory before they are written out.
    """

    def __init__(self, name: str, strategy: Strategy, *, tick_nanos: int, lot_nanos: int,
                 config: BacktestConfig | None = None, limits: RiskLimits | None = None,
                 broker: Broker | None = None, results_dir: Path | None = None,
                 spill_rows: int = 4096) -> None:
        self.name = name
        self.limits = limits or RiskLimits()
        config = config or BacktestConfig()
        config = BacktestConfig(config.latency, config.queue, config.fees,
                                Limits(min(config.limits.max_position, self.limits.max_position)),
                                config.equity_interval_ns)
        self.guard = Guard(strategy, self.limits)
        self.results_dir = results_dir
        self.broker = broker or SimulatedBroker(self.guard, tick_nanos, lot_nanos, config,
                                                spool=ResultSpool(results_dir, rows=spill_rows))
        self.tick_nanos = tick_nanos
        self._kill: str | None = None
        self._sent = {"orders": 0, "fills": 0, "status": False}
        self.instrument = ("", "")

    def kill(self, reason: str = "kill switch") -> None:
        """The kill switch: halt now (cancel everything, flatten) and say so in a ``killed`` row."""
        self._kill = reason
        if getattr(self.broker, "started", True):
            self.guard.halt(self.broker.ctx, "killed", reason)

    @property
    def halted(self) -> bool:
        return self.guard.halted is not None

    def on_batch(self, tables: dict[str, pa.Table], *, final: bool = False) -> dict[str, pa.Table]:
        """Feed one micro-batch; returns the new ``paper_order``/``paper_fill``/``paper_position``
        and ``status`` rows."""
        for t in tables.values():
            if t.num_rows and "venue" in t.column_names:
                self.instrument = (t.column("venue")[0].as_py(), t.column("symbol")[0].as_py())
                break
        self.broker.on_market(tables, final=final)
        if self._kill is not None and self.guard.halted is None and getattr(self.broker, "started", True):
            self.guard.halt(self.broker.ctx, "killed", self._kill)
        if not getattr(self.broker, "started", True):
            return {}
        return self._rows()

    def close(self, tables: dict[str, pa.Table] | None = None) -> tuple[dict[str, pa.Table], BacktestResult]:
        """End the session (``tables``: a last batch, if any): the last rows and the session's result."""
        rows = self.on_batch(tables or {}, final=True)
        result = self.broker.result()
        if self.results_dir is not None:
            result.write_report(self.results_dir)
        return rows, result

    def _rows(self) -> dict[str, pa.Table]:
        ctx = self.broker.ctx
        venue, symbol = self.instrument
        const = {"venue": venue, "symbol": symbol, "strategy": self.name}
        tick = self.tick_nanos
        out: dict[str, pa.Table] = {}
        # the order journal is emitted and forgotten (the rows are the record): it never grows
        journal = list(ctx.journal or ())
        if ctx.journal:
            ctx.journal.clear()
        self._sent["orders"] += len(journal)
        if journal:
            out[PAPER_ORDER.name] = PAPER_ORDER.table({
                "ts_event_ns": [j[0] for j in journal], "ts_recv_ns": [j[0] for j in journal],
                "action": [j[1] for j in journal], "order_id": [j[2] for j in journal],
                "order_type": [j[3] for j in journal], "tif": [j[4] for j in journal],
                "side": [j[5] for j in journal],
                "price_nanos": [j[6] * tick if j[3] == "limit" and j[1] != "cancel" else UNDEF_PRICE
                                for j in journal],
                "qty": [j[7] for j in journal]}, constants=const)
        fills = ctx.fills[self._sent["fills"]:]
        self._sent["fills"] += len(fills)
        if fills:
            out[PAPER_FILL.name] = PAPER_FILL.table({
                "ts_event_ns": [f.ts_ns for f in fills], "ts_recv_ns": [f.ts_ns for f in fills],
                "order_id": [f.order_id for f in fills], "side": [f.side for f in fills],
                "price_nanos": [f.price_ticks * tick for f in fills], "qty": [f.qty for f in fills],
                "maker": [f.maker for f in fills], "fee": [f.fee for f in fills]}, constants=const)
        mid = ctx.mid_ticks
        now = ctx.now_ns
        out[PAPER_POSITION.name] = PAPER_POSITION.table({
            "ts_event_ns": [now], "ts_recv_ns": [now], "position": [ctx.position], "cash": [ctx.cash],
            "fees": [ctx.fees], "mark_price_nanos": [UNDEF_PRICE if np.isnan(mid) else int(mid * tick)],
            "equity": [ctx.equity()], "day_pnl": [self.guard.day_pnl(ctx)], "halted": [self.halted]},
            constants=const)
        if ctx.spill():  # the rows above are out: what the report needs of them goes to disk
            self._sent["fills"] = 0
        if self.guard.halted is not None and not self._sent["status"]:
            self._sent["status"] = True
            ts, state, detail = self.guard.halted
            out[STATUS.name] = STATUS.table({
                "ts_event_ns": [ts], "ts_recv_ns": [ts], "state": [state], "sequence": [-1], "until_ns": [-1],
                "detail": [f"paper {self.name}: {detail}"]}, constants={"venue": venue, "symbol": symbol})
        return out
