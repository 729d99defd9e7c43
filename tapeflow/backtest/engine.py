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

# o_i column 9 is Python's: the index in the order queue of the slot's last message to the exchange
ORDER_COLS_I = 10
ORDER_COLS_F = 3
QUEUE_CAP = 1 << 14
ORDER_SLOTS = 1 << 10


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

    Orders live in a table of slots (``o_i``, ``o_f``); a slot is handed to a new order once its
    last order is done and no message about it is in flight (:meth:`Context.take_fills` recycles
    them), and the table doubles when every slot is busy (``order_slots`` is its first size), so the
    number of orders in a run is unbounded: the table holds at most the orders alive at once.
    """

    def __init__(self, feed: Feed, strategy: Strategy, config: BacktestConfig | None = None,
                 *, order_slots: int = ORDER_SLOTS) -> None:
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
        if order_slots <= 0:
            raise ConfigError(f"order_slots must be > 0, got {order_slots}")
        self.o_i = np.zeros((order_slots, ORDER_COLS_I), np.int64)
        self.o_f = np.zeros((order_slots, ORDER_COLS_F), np.float64)
        self.act = np.zeros(order_slots, np.int64)
        self.xq = np.zeros((QUEUE_CAP, 4), np.int64)
        self.xqf = np.zeros(QUEUE_CAP, np.float64)
        self.lq = np.zeros((QUEUE_CAP, 4), np.int64)
        self.lqf = np.zeros((QUEUE_CAP, 2), np.float64)
        self.fills = np.zeros((4096, 4), np.int64)
        self.fill_f = np.zeros((4096, 2), np.float64)
        self.feed_orders = (Dict.empty(types.int64, types.UniTuple(types.int64, 3)),
                            Dict.empty(types.int64, types.float64))
        self.ctx = Context(self)

    def __getstate__(self) -> dict:
        # numba's typed dicts do not pickle (a live flow snapshots its paper sessions): plain dicts do
        state = dict(self.__dict__)
        meta, size = self.feed_orders
        state["feed_orders"] = (dict(meta), dict(size))
        return state

    def __setstate__(self, state: dict) -> None:
        meta, size = state["feed_orders"]
        typed = (Dict.empty(types.int64, types.UniTuple(types.int64, 3)),
                 Dict.empty(types.int64, types.float64))
        for k, v in meta.items():
            typed[0][k] = v
        for k, v in size.items():
            typed[1][k] = v
        self.__dict__.update(state, feed_orders=typed)

    def rebase(self, rows: int) -> None:
        """The feed forgot its first ``rows`` rows (paper trading's compaction): shift the row
        cursors so they point at the same rows of the shortened feed."""
        S = self.S
        if rows > min(int(S[core.I_EX]), int(S[core.I_LOC])) - 1:
            raise ConfigError(f"cannot drop {rows} rows: the engine still reads row "
                              f"{min(int(S[core.I_EX]), int(S[core.I_LOC])) - 1}")
        S[core.I_EX] -= rows
        S[core.I_LOC] -= rows
        S[core.WAKE_ROW] = S[core.WAKE_ROW] - rows if S[core.WAKE_ROW] >= rows else -1

    def grow_orders(self) -> int:
        """Double the order table (every slot holds an order still alive or talked about);
        returns the new number of slots.

        Raises:
            ConfigError: memory cannot hold the larger table.
        """
        n = self.o_i.shape[0]
        try:
            o_i = np.zeros((2 * n, ORDER_COLS_I), np.int64)
            o_f = np.zeros((2 * n, ORDER_COLS_F), np.float64)
            act = np.zeros(2 * n, np.int64)
        except MemoryError as exc:
            raise ConfigError(f"{n:,} orders are alive at once and memory cannot hold {2 * n:,}: the "
                              "strategy leaves too many orders open or in flight") from exc
        o_i[:n], o_f[:n], act[:n] = self.o_i, self.o_f, self.act
        self.o_i, self.o_f, self.act = o_i, o_f, act
        return 2 * n

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
        self.o_i[slot, 9] = tail
        S[core.XT] = tail + 1

    def _step(self, until: int, wake: int) -> int:
        f = self.feed
        while True:
            reason = core.run_until(self.S, until, wake, f.t_exch, f.t_local, f.kind, f.side, f.px, f.qty,
                                    f.oid,
                                    f.action, f.bid_ticks, f.ask_ticks, f.pub, self.o_i, self.o_f, self.act,
                                    self.xq, self.xqf, self.lq, self.lqf, f.prev_qty,
                                    (f.lv_seg, f.lv_key, f.lv_row, f.lv_qty), self.feed_orders,
                                    self.fills, self.fill_f, float(getattr(self.config.queue, "n", 1.0)),
                                    f.lot, float(getattr(self.config.latency, "order_scale", 1.0)))
            self.ctx.take_fills()
            if reason != core.W_FULL:
                return reason
            self.fills = np.concatenate([self.fills, np.zeros_like(self.fills)])
            self.fill_f = np.concatenate([self.fill_f, np.zeros_like(self.fill_f)])

    def run(self) -> BacktestResult:
        """Run the strategy over the whole feed and return its fills, equity curve and counts."""
        self.start()
        self.advance(None)
        return self.finish()

    def start(self) -> None:
        """Set the clocks at the first row and call ``on_start`` (paper trading calls it once)."""
        f, st = self.feed, self.strategy
        if not len(f):
            raise ConfigError("the feed is empty: nothing to backtest")
        self._wake = st.wake_mask()
        t0 = int(min(f.t_exch[0], f.t_local[0]))
        self.S[core.NOW] = t0
        self._next_timer = t0 + st.timer_ns if st.timer_ns else None
        self._next_sample = t0
        st.on_start(self.ctx)

    def advance(self, horizon_ns: int | None) -> None:
        """Run every happening at or before ``horizon_ns``; None: to the end of the feed.

        A horizon must lie before the exchange and local times of every row still to come (the
        paper trader passes the last known exchange time - 1), so the rows, timers and samples
        it runs are exactly those a backtest of the whole feed runs first.
        """
        st, ctx = self.strategy, self.ctx
        final = horizon_ns is None
        end = int(self.feed.t_local[-1])
        while True:
            # timers and samples stop at the last row: resting orders alone never end a backtest
            if final and self._next_timer is not None and self._next_timer > end:
                self._next_timer = None
            nt, ns = self._next_timer, self._next_sample
            until = ns if nt is None else min(nt, ns)
            if final:
                target = core.INF - 1 if until > end else until
            else:
                target = min(until, horizon_ns)
            reason = self._step(target, self._wake)
            if reason == core.W_END:
                return
            now = int(self.S[core.NOW])
            if reason == core.W_UNTIL:
                if now == ns:
                    ctx.sample()
                    self._next_sample += self.config.equity_interval_ns
                if nt is not None and now == nt:
                    st.on_timer(ctx)
                    self._next_timer += st.timer_ns
                if not final and now == horizon_ns and until > horizon_ns:
                    return
            elif reason == core.W_BOOK:
                st.on_book(ctx)
            elif reason == core.W_TRADE:
                st.on_trade(ctx, ctx.trade_at(int(self.S[core.WAKE_ROW])))
            elif reason == core.W_SIGNAL:
                st.on_signal(ctx, ctx.signal_at(int(self.S[core.WAKE_ROW])))
            elif reason == core.W_PREDICTION:
                st.on_prediction(ctx, ctx.prediction_at(int(self.S[core.WAKE_ROW])))

    def finish(self) -> BacktestResult:
        """The last equity sample, ``on_end``, and the result."""
        self.ctx.sample()
        self.strategy.on_end(self.ctx)
        return self.ctx.result()
