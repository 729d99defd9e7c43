"""The backtest driver: the compiled loop runs between the strategy's wake-ups.

A strategy (:class:`tapeflow.backtest.strategy.Strategy`) says what wakes it (``timer_ns``, and
the callbacks it overrides: book, trade, signal, fill). :class:`Backtest` calls
:func:`tapeflow.backtest.core.run_until` up to the next timer instant or equity sample, or to the
first wanted local happening, then calls the strategy, whose orders go out through
:class:`Context`. A strategy that wants nothing per event costs no Python call per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import types
from numba.typed import Dict

from tapeflow.backtest import core
from tapeflow.backtest.feed import Feed
from tapeflow.backtest.models import ConstantLatency, Fees, LatencyModel, Limits, QueueModel, RiskAdverseQueue
from tapeflow.backtest.results import BacktestResult
from tapeflow.backtest.strategy import Context, Strategy
from tapeflow.errors import ConfigError

ORDER_COLS_I = 9
ORDER_COLS_F = 3
QUEUE_CAP = 1 << 14


@dataclass
class BacktestConfig:
    """Models and sampling of one backtest.

    Attributes:
        latency: when rows reach the exchange and how long orders travel.
        queue: passive fill model (``L3FifoQueue`` needs ``order_event`` input).
        fees: maker/taker rates (negative maker rate = rebate).
        limits: pre-trade position limit.
        equity_interval_ns: spacing of the equity curve's samples.
    """

    latency: LatencyModel = field(default_factory=ConstantLatency)
    queue: QueueModel = field(default_factory=RiskAdverseQueue)
    fees: Fees = field(default_factory=Fees)
    limits: Limits = field(default_factory=Limits)
    equity_interval_ns: int = 1_000_000_000


class Backtest:
    """One strategy over one instrument's :class:`Feed`.

    Example:
        ``result = Backtest(feed, MarketMaker(), BacktestConfig()).run()``
    """

    def __init__(self, feed: Feed, strategy: Strategy, config: BacktestConfig | None = None,
                 *, max_orders: int = 1 << 16) -> None:
        self.feed = feed
        self.strategy = strategy
        self.config = config or BacktestConfig()
        if self.config.queue.code < 0 and feed.level != "l3":
            raise ConfigError("the L3 queue model needs order_event input; this feed is L2")
        if self.config.equity_interval_ns <= 0:
            raise ConfigError(f"equity_interval_ns must be > 0, got {self.config.equity_interval_ns}")
        self.S = np.zeros(core.N_STATE, np.int64)
        self.S[core.QMODEL] = self.config.queue.code
        self.S[core.LAT_KIND] = self.config.latency.kind
        self.S[core.RESP] = self.config.latency.response_for(0)
        self.o_i = np.zeros((max_orders, ORDER_COLS_I), np.int64)
        self.o_f = np.zeros((max_orders, ORDER_COLS_F), np.float64)
        self.act = np.zeros(max_orders, np.int64)
        self.xq = np.zeros((QUEUE_CAP, 4), np.int64)
        self.xqf = np.zeros(QUEUE_CAP, np.float64)
        self.lq = np.zeros((QUEUE_CAP, 4), np.int64)
        self.lqf = np.zeros((QUEUE_CAP, 2), np.float64)
        self.fills = np.zeros((4096, 4), np.int64)
        self.fill_f = np.zeros((4096, 2), np.float64)
        self.feed_orders = (Dict.empty(types.int64, types.UniTuple(types.int64, 3)),
                            Dict.empty(types.int64, types.float64))
        self.ctx = Context(self)

    def send(self, kind: int, slot: int, px: int, qty: float) -> None:
        """Queue an order message for the exchange (called by :class:`Context`)."""
        S, cap = self.S, self.xq.shape[0]
        if S[core.XT] - S[core.XH] >= cap:
            raise ConfigError(f"more than {cap} order messages in flight; the strategy floods the exchange")
        i = max(int(S[core.I_LOC]) - 1, 0)
        d = int(self.feed.t_local[i] - self.feed.t_exch[i]) if len(self.feed) else 0
        t = int(S[core.NOW]) + self.config.latency.entry_for(d)
        tail = int(S[core.XT])
        if tail > S[core.XH]:
            t = max(t, int(self.xq[(tail - 1) % cap, 0]))
        r = tail % cap
        self.xq[r] = (t, slot, kind, px)
        self.xqf[r] = qty
        S[core.XT] = tail + 1

    def _step(self, until: int, wake: int) -> int:
        f = self.feed
        while True:
            reason = core.run_until(self.S, until, wake, f.t_exch, f.t_local, f.kind, f.side, f.px, f.qty,
                                    f.oid,
                                    f.action, f.bid_ticks, f.ask_ticks, f.pub, self.o_i, self.o_f, self.act,
                                    self.xq, self.xqf, self.lq, self.lqf, f.prev_qty,
                                    (f.lv_seg, f.lv_key, f.lv_row), self.feed_orders,
                                    self.fills, self.fill_f, float(getattr(self.config.queue, "n", 1.0)),
                                    f.lot, float(getattr(self.config.latency, "order_scale", 1.0)))
            self.ctx.take_fills()
            if reason != core.W_FULL:
                return reason
            self.fills = np.concatenate([self.fills, np.zeros_like(self.fills)])
            self.fill_f = np.concatenate([self.fill_f, np.zeros_like(self.fill_f)])

    def run(self) -> BacktestResult:
        """Run the strategy over the whole feed and return its fills, equity curve and counts."""
        f, st, ctx = self.feed, self.strategy, self.ctx
        if not len(f):
            raise ConfigError("the feed is empty: nothing to backtest")
        wake = st.wake_mask()
        t0 = int(min(f.t_exch[0], f.t_local[0]))
        self.S[core.NOW] = t0
        timer = st.timer_ns
        next_timer = t0 + timer if timer else None
        next_sample = t0
        st.on_start(ctx)
        end = int(f.t_local[-1])
        while True:
            # timers and samples stop at the last row: resting orders alone never end a backtest
            if next_timer is not None and next_timer > end:
                next_timer = None
            until = next_sample if next_timer is None else min(next_timer, next_sample)
            if until > end:
                until = core.INF - 1
            reason = self._step(until, wake)
            if reason == core.W_END:
                break
            now = int(self.S[core.NOW])
            if reason == core.W_UNTIL:
                if now == next_sample:
                    ctx.sample()
                    next_sample += self.config.equity_interval_ns
                if next_timer is not None and now == next_timer:
                    st.on_timer(ctx)
                    next_timer += timer
            elif reason == core.W_BOOK:
                st.on_book(ctx)
            elif reason == core.W_TRADE:
                st.on_trade(ctx, ctx.trade_at(int(self.S[core.WAKE_ROW])))
            elif reason == core.W_SIGNAL:
                st.on_signal(ctx, ctx.signal_at(int(self.S[core.WAKE_ROW])))
        ctx.sample()
        st.on_end(ctx)
        return ctx.result()
