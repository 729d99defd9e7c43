"""The strategy API: callbacks and the :class:`Context` they act through.

Prices are in ticks of the feed (``ctx.tick_size`` converts), quantities in base units. Every
order is limit (``tif``: ``gtc``, ``post_only`` which expires instead of crossing, ``ioc``) or
market; ``cancel`` and ``modify`` act on an order id. What the strategy sees is its local view:
the book of the last row delivered to it and the order states whose responses have arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tapeflow.backtest import core
from tapeflow.backtest.results import BacktestResult, equity_table, fills_table
from tapeflow.backtest.spool import ResultSpool, SpooledResult
from tapeflow.errors import ConfigError

if TYPE_CHECKING:
    from tapeflow.backtest.engine import Backtest

TIFS = {"gtc": core.TIF_GTC, "post_only": core.TIF_GTX, "ioc": core.TIF_IOC}
_TYPES = {core.T_LIMIT: "limit", core.T_MARKET: "market"}
STATUS = {core.ST_PENDING: "pending", core.ST_OPEN: "open", core.ST_FILLED: "filled",
          core.ST_CANCELED: "canceled", core.ST_EXPIRED: "expired", core.ST_REJECTED: "rejected"}


@dataclass(frozen=True)
class Order:
    """An order as the strategy knows it: ``pending`` until acknowledged; ``busy`` while a cancel
    or modify is in flight."""

    order_id: int
    side: int
    price_ticks: int
    qty: float
    status: str
    busy: bool


@dataclass(frozen=True)
class TradeEvent:
    """A market trade delivered to ``on_trade``: aggressor ``side`` +1 buy / -1 sell."""

    ts_ns: int
    side: int
    price_ticks: int
    qty: float


@dataclass(frozen=True)
class Fill:
    """One fill of our order, as received: ``maker`` True for a passive fill."""

    ts_ns: int
    order_id: int
    side: int
    price_ticks: int
    qty: float
    maker: bool
    fee: float


class Strategy:
    """Override the callbacks you need; the backtester wakes the strategy only for those.

    ``timer_ns`` > 0 calls :meth:`on_timer` every ``timer_ns`` from the first row's time.
    """

    timer_ns: int = 0

    def on_start(self, ctx: Context) -> None:
        """Before the first row."""

    def on_book(self, ctx: Context) -> None:
        """After a published book row (a whole venue event) reached the strategy."""

    def on_trade(self, ctx: Context, trade: TradeEvent) -> None:
        """After a market trade reached the strategy."""

    def on_signal(self, ctx: Context, signal: dict[str, Any]) -> None:
        """After a ``signal`` row (a detector's alert) reached the strategy."""

    def on_prediction(self, ctx: Context, prediction: dict[str, Any]) -> None:
        """After a ``prediction`` row (the live scorer's forecast) reached the strategy."""

    def on_timer(self, ctx: Context) -> None:
        """Every ``timer_ns``."""

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        """After one of our fills reached the strategy (position already updated)."""

    def on_end(self, ctx: Context) -> None:
        """After the last row."""

    def wake_mask(self) -> int:
        """Which local happenings stop the compiled loop: the callbacks this class overrides."""
        mask = 0
        for name, bit in (("on_book", core.B_BOOK), ("on_trade", core.B_TRADE),
                          ("on_signal", core.B_SIGNAL), ("on_fill", core.B_RESPONSE),
                          ("on_prediction", core.B_PREDICTION)):
            if getattr(type(self), name) is not getattr(Strategy, name):
                mask |= bit
        return mask


class Context:
    """What a strategy reads and does. Owned by one :class:`Backtest`."""

    def __init__(self, bt: Backtest) -> None:
        self._bt = bt
        feed = bt.feed
        self.tick_size = feed.tick_nanos / 1e9
        self.lot_size = feed.lot
        self.position = 0.0
        self.cash = 0.0
        self.fees = 0.0
        # order id -> slot of the orders not yet known to be done; ids count up, slots are recycled
        self._live: dict[int, int] = {}
        self._slot_id: list[int] = []  # slot -> the id of its (last) order
        self._free: list[int] = []
        self._retired: list[int] = []  # done, but a message about them may still be in flight
        self._next = 0
        self._taken = 0
        # with a spool (paper trading) these hold what came since the last spill; n_fills counts all
        self.fills: list[Fill] = []
        self.samples: list[tuple[int, float, float, float]] = []
        self.n_fills = 0
        self.spool: ResultSpool | None = None
        self._last_equity: float | None = None
        self.counts = {"orders": 0, "cancels": 0, "modifies": 0, "rejected_limit": 0}
        # paper trading records every order message: (ts_ns, action, id, type, tif, side, price_ticks, qty)
        self.journal: list[tuple[int, str, int, str, str, int, int, float]] | None = None

    # -- market view ------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return int(self._bt.S[core.NOW])

    def _row(self) -> int:
        return int(self._bt.S[core.I_LOC]) - 1

    @property
    def best_bid_ticks(self) -> int:
        i = self._row()
        return int(self._bt.feed.bid_ticks[i]) if i >= 0 else core.NO_BID

    @property
    def best_ask_ticks(self) -> int:
        i = self._row()
        return int(self._bt.feed.ask_ticks[i]) if i >= 0 else core.NO_ASK

    @property
    def book_valid(self) -> bool:
        return self.best_bid_ticks != core.NO_BID and self.best_ask_ticks != core.NO_ASK

    @property
    def mid_ticks(self) -> float:
        """Mid price in ticks (NaN while a side is empty)."""
        return (self.best_bid_ticks + self.best_ask_ticks) / 2.0 if self.book_valid else float("nan")

    def equity(self) -> float:
        """Cash + position at the mid - fees (the last mark when the book is not valid)."""
        mid = self.mid_ticks
        if np.isnan(mid):
            return self._last_equity if self._last_equity is not None else self.cash - self.fees
        return self.cash + self.position * mid * self.tick_size - self.fees

    # -- orders -------------------------------------------------------------------------------
    @property
    def orders(self) -> dict[int, Order]:
        """Our orders not yet known to be done (pending, open, or with a request in flight)."""
        o_i, o_f = self._bt.o_i, self._bt.o_f
        return {k: Order(k, int(o_i[s, 0]), int(o_i[s, 8]), float(o_f[s, 0]), STATUS[int(o_i[s, 5])],
                         bool(o_i[s, 6] >= 0)) for k, s in self._live.items()}

    def buy(self, price_ticks: int, qty: float, tif: str = "gtc") -> int:
        """A limit buy; returns its order id (-1 when the position limit rejects it)."""
        return self._new(1, core.T_LIMIT, price_ticks, qty, tif)

    def sell(self, price_ticks: int, qty: float, tif: str = "gtc") -> int:
        """A limit sell; returns its order id (-1 when the position limit rejects it)."""
        return self._new(-1, core.T_LIMIT, price_ticks, qty, tif)

    def market(self, side: int, qty: float) -> int:
        """A market order, filled whole at the best opposite price when it arrives."""
        return self._new(side, core.T_MARKET, 0, qty, "ioc")

    def cancel(self, order_id: int) -> None:
        """Ask the exchange to cancel ``order_id`` (ignored when it is done or busy)."""
        slot = self._live.get(order_id)
        if slot is not None and self._bt.o_i[slot, 6] < 0:
            self._bt.o_i[slot, 6] = core.M_CANCEL
            self.counts["cancels"] += 1
            self._log("cancel", order_id, slot, 0, 0.0)
            self._bt.send(core.M_CANCEL, slot, 0, 0.0)

    def modify(self, order_id: int, price_ticks: int, qty: float) -> None:
        """New price and size for ``order_id``; the queue position starts again (hftbacktest)."""
        slot = self._live.get(order_id)
        if slot is not None and self._bt.o_i[slot, 6] < 0:
            self._bt.o_i[slot, 6] = core.M_MODIFY
            self.counts["modifies"] += 1
            self._log("modify", order_id, slot, int(price_ticks), float(qty))
            self._bt.send(core.M_MODIFY, slot, int(price_ticks), float(qty))

    def _new(self, side: int, otype: int, price_ticks: int, qty: float, tif: str) -> int:
        if tif not in TIFS:
            raise ConfigError(f"unknown time in force {tif!r}; choose one of {', '.join(TIFS)}")
        if not qty > 0:
            raise ConfigError(f"order quantity must be > 0, got {qty}")
        open_same = sum(float(self._bt.o_f[s, 0]) for s in self._live.values() if self._bt.o_i[s, 0] == side)
        if abs(self.position + side * (open_same + qty)) > self._bt.config.limits.max_position + 1e-12:
            self.counts["rejected_limit"] += 1
            if self.journal is not None:
                self.journal.append((self.now_ns, "refused", -1, _TYPES[otype], tif, side, price_ticks, qty))
            return -1
        slot = self._slot()
        order_id = self._next
        self._next += 1
        self._slot_id[slot] = order_id
        o_i = self._bt.o_i
        o_i[slot] = (side, price_ticks, otype, TIFS[tif], core.ST_PENDING, core.ST_PENDING, -1, 0,
                     price_ticks, -1)
        self._bt.o_f[slot] = (qty, 0.0, 0.0)
        self._live[order_id] = slot
        self.counts["orders"] += 1
        self._log("new", order_id, slot, price_ticks, qty)
        self._bt.send(core.M_NEW, slot, int(price_ticks), float(qty))
        return order_id

    def _slot(self) -> int:
        # a recycled slot, else one never used, else the table doubles
        if not self._free:
            self._reclaim()
        if self._free:
            return self._free.pop()
        slot = len(self._slot_id)
        if slot >= self._bt.o_i.shape[0]:
            self._bt.grow_orders()
        self._slot_id.append(-1)
        return slot

    def _reclaim(self) -> None:
        # a done order's slot is free once no message about it is in flight: its last message
        # reached the exchange (which had already ended the order, so nothing new answers it) and
        # no response to it waits in the response queue
        if not self._retired:
            return
        S, o_i, lq = self._bt.S, self._bt.o_i, self._bt.lq
        head, tail, cap = int(S[core.LH]), int(S[core.LT]), lq.shape[0]
        waiting = set(lq[np.arange(head, tail) % cap, 1].tolist()) if tail > head else set()
        arrived = int(S[core.XH])
        keep = []
        for s in self._retired:
            if o_i[s, 9] < arrived and s not in waiting:
                self._free.append(s)
            else:
                keep.append(s)
        self._retired = keep

    def _log(self, action: str, order_id: int, slot: int, price_ticks: int, qty: float) -> None:
        if self.journal is not None:
            o_i = self._bt.o_i
            tif = next(k for k, v in TIFS.items() if v == o_i[slot, 3])
            self.journal.append((self.now_ns, action, order_id, _TYPES[int(o_i[slot, 2])], tif,
                                 int(o_i[slot, 0]), int(price_ticks), float(qty)))

    # -- engine side ----------------------------------------------------------------------------
    def take_fills(self) -> None:
        """Book the fills received since the last call and forget orders that are done."""
        bt = self._bt
        fees = bt.config.fees
        n = int(bt.S[core.NF])
        for k in range(self._taken, n):
            ts, slot, px, side = (int(v) for v in bt.fills[k])
            qty, maker = float(bt.fill_f[k, 0]), bool(bt.fill_f[k, 1])
            value = px * self.tick_size * qty
            fee = fees.of(value, maker)
            self.position += side * qty
            self.cash -= side * value
            self.fees += fee
            fill = Fill(ts, self._slot_id[slot], side, px, qty, maker, fee)
            self.fills.append(fill)
            self.n_fills += 1
            bt.strategy.on_fill(self, fill)
        self._taken = n
        done = [k for k, s in self._live.items() if bt.o_i[s, 5] > core.ST_OPEN]
        for k in done:
            self._retired.append(self._live.pop(k))
        self._reclaim()

    def trade_at(self, row: int) -> TradeEvent:
        f = self._bt.feed
        return TradeEvent(int(f.t_local[row]), int(f.side[row]), int(f.px[row]), float(f.qty[row]))

    def signal_at(self, row: int) -> dict[str, Any]:
        f = self._bt.feed
        assert f.signals is not None  # a K_SIGNAL row exists only when the feed has signals
        return f.signals.slice(int(f.source_row[row]), 1).to_pylist()[0]

    def prediction_at(self, row: int) -> dict[str, Any]:
        f = self._bt.feed
        assert f.predictions is not None  # a K_PREDICTION row exists only when the feed has predictions
        return f.predictions.slice(int(f.source_row[row]), 1).to_pylist()[0]

    def sample(self) -> None:
        mid = self.mid_ticks
        self._last_equity = self.equity()
        self.samples.append((self.now_ns, self._last_equity, self.position,
                             mid * self.tick_size if not np.isnan(mid) else float("nan")))

    def spill(self) -> bool:
        """With a spool, write the fills and samples gathered out once there are ``spool.rows`` of
        them and forget them (paper trading calls it after each batch's rows are out)."""
        spool = self.spool
        if spool is None or len(self.fills) + len(self.samples) < spool.rows:
            return False
        spool.write("fills", fills_table(self.fills, self.tick_size))
        spool.write("equity", equity_table(self.samples))
        self.fills, self.samples = [], []
        return True

    def result(self) -> BacktestResult:
        if self.spool is None:
            return BacktestResult.build(self.fills, self.samples, self.counts, self.tick_size)
        return SpooledResult(self.spool, fills_table(self.fills, self.tick_size), equity_table(self.samples),
                             self.counts)
