"""Reference strategies: a quoting market maker, a signal follower, and a do-nothing baseline."""

from __future__ import annotations

import math
from typing import Any

from tapeflow.backtest.strategy import Context, Strategy
from tapeflow.errors import ConfigError


class Idle(Strategy):
    """Trades nothing and wants no callback: the engine's pure event throughput (the bench's)."""


class MarketMaker(Strategy):
    """Quotes one bid and one ask around the mid every ``timer_ns``.

    Bid ``floor(mid - half_spread_ticks)``, ask ``ceil(mid + half_spread_ticks)`` (ticks); a quote
    at another price is cancelled, and a side with no order left is quoted again (so a requote
    costs one round trip). No bid at ``position >= max_position``, no ask at ``<= -max_position``.
    The hftbacktest twin of this loop is :func:`tapeflow.backtest.hbt.run_market_maker`.
    """

    def __init__(self, *, half_spread_ticks: float = 1.0, qty: float = 0.001, max_position: float = 0.01,
                 timer_ns: int = 100_000_000, start_ns: int = 0) -> None:
        if timer_ns <= 0:
            raise ConfigError(f"timer_ns must be > 0, got {timer_ns}")
        self.half_spread_ticks = half_spread_ticks
        self.qty = qty
        self.max_position = max_position
        self.timer_ns = timer_ns
        self.start_ns = start_ns
        self.trace: list[tuple[int, float, float, float, int]] = []

    def on_timer(self, ctx: Context) -> None:
        self.trace.append((ctx.now_ns, ctx.position, ctx.cash, ctx.fees, ctx.n_fills))
        if not ctx.book_valid or ctx.now_ns < self.start_ns:
            return
        mid = ctx.mid_ticks
        want = {1: math.floor(mid - self.half_spread_ticks), -1: math.ceil(mid + self.half_spread_ticks)}
        have = {1: False, -1: False}
        for order in ctx.orders.values():
            have[order.side] = True
            if order.status == "open" and not order.busy and order.price_ticks != want[order.side]:
                ctx.cancel(order.order_id)
        if not have[1] and ctx.position < self.max_position - 1e-12:
            ctx.buy(want[1], self.qty, "post_only")
        if not have[-1] and ctx.position > -self.max_position + 1e-12:
            ctx.sell(want[-1], self.qty, "post_only")


class SignalFollower(Strategy):
    """Trades in the direction of ``signal`` rows: a market order of ``qty`` on the signal's side
    (+1 buys, -1 sells) when its confidence is at least ``min_confidence``, and flattens the
    position after ``hold_ns``. ``kinds`` limits which detectors it follows (all when empty)."""

    def __init__(self, *, qty: float = 0.001, min_confidence: float = 0.5, hold_ns: int = 10_000_000_000,
                 kinds: tuple[str, ...] = (), timer_ns: int = 100_000_000) -> None:
        self.qty = qty
        self.min_confidence = min_confidence
        self.hold_ns = hold_ns
        self.kinds = kinds
        self.timer_ns = timer_ns
        self._entered_ns: int | None = None

    def on_signal(self, ctx: Context, signal: dict[str, Any]) -> None:
        if self.kinds and signal["kind"] not in self.kinds:
            return
        side = int(signal["side"])
        if side == 0 or signal["confidence"] < self.min_confidence or ctx.orders:
            return
        if ctx.market(side, self.qty) >= 0:
            self._entered_ns = ctx.now_ns

    def on_timer(self, ctx: Context) -> None:
        if self._entered_ns is None or ctx.now_ns - self._entered_ns < self.hold_ns or ctx.orders:
            return
        if abs(ctx.position) > 1e-12:
            ctx.market(-1 if ctx.position > 0 else 1, abs(ctx.position))
        self._entered_ns = None


STRATEGIES: dict[str, type[Strategy]] = {"idle": Idle, "market_maker": MarketMaker,
                                          "signal_follower": SignalFollower}
