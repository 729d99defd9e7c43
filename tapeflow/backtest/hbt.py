"""The external check: the same market maker through hftbacktest, on the same rows.

:func:`to_hbt_events` writes a :class:`~tapeflow.backtest.feed.Feed` in hftbacktest's event
format (our converter, not hftbacktest's ``binancefutures.convert``: that one replays every depth
diff, including those before the REST snapshot that tapeflow's decoder drops by the venue's sync
rule, so the two books would differ before the comparison starts). Each row keeps its two clocks
(``exch_ts`` = our ``t_exch``, ``local_ts`` = ``t_local``, both non-decreasing, so every row is
an exchange and a local event at once). :func:`run_market_maker` runs
:class:`~tapeflow.backtest.strategies.MarketMaker`'s loop, written against hftbacktest's API,
with the matching queue, latency and fee models.

hftbacktest is a benchmark/check dependency: imported here only, on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tapeflow.backtest import core
from tapeflow.backtest.feed import Feed
from tapeflow.backtest.models import ConstantLatency, Fees, QueueModel
from tapeflow.errors import ConfigError

_HBT_QUEUE = {0: "risk_adverse_queue_model", 1: "power_prob_queue_model", 2: "power_prob_queue_model2",
              3: "power_prob_queue_model3", 4: "log_prob_queue_model", 5: "log_prob_queue_model2"}


def to_hbt_events(feed: Feed) -> np.ndarray:
    """The feed's depth, clear and trade rows as an hftbacktest ``event_dtype`` array."""
    from hftbacktest.types import (
        BUY_EVENT,
        DEPTH_CLEAR_EVENT,
        DEPTH_EVENT,
        EXCH_EVENT,
        LOCAL_EVENT,
        SELL_EVENT,
        TRADE_EVENT,
        event_dtype,
    )

    keep = np.isin(feed.kind, (core.K_DEPTH, core.K_CLEAR, core.K_TRADE))
    kind, side = feed.kind[keep], feed.side[keep]
    ev = np.zeros(int(keep.sum()), event_dtype)
    base = np.where(kind == core.K_DEPTH, DEPTH_EVENT,
                    np.where(kind == core.K_TRADE, TRADE_EVENT, DEPTH_CLEAR_EVENT))
    side_bit = np.where(kind == core.K_CLEAR, 0, np.where(side > 0, BUY_EVENT, SELL_EVENT))
    ev["ev"] = (base | side_bit | EXCH_EVENT | LOCAL_EVENT).astype(np.uint64)
    ev["exch_ts"] = feed.t_exch[keep]
    ev["local_ts"] = feed.t_local[keep]
    ev["px"] = np.where(kind == core.K_CLEAR, 0.0, feed.px[keep] * (feed.tick_nanos / 1e9))
    ev["qty"] = np.where(kind == core.K_CLEAR, 0.0, feed.qty[keep])
    return ev


@dataclass(frozen=True)
class HbtOutcome:
    """hftbacktest's final state, and ``position, balance, fee, num_trades`` at every timer step."""

    position: float
    balance: float
    fee: float
    num_trades: int
    trading_volume: float
    equity: float
    step_ts: np.ndarray
    step_state: np.ndarray


def _loop():
    from numba import njit

    @njit
    def loop(hbt, half_spread, qty, max_pos, timer_ns, start_ns, end_ns, ts_out, state_out):
        tick = hbt.depth(0).tick_size
        next_id = 1
        k = 0
        # orders keep events coming after the last row: stop at the data's end, as the engine does
        while hbt.elapse(timer_ns) == 0:
            hbt.clear_inactive_orders(0)
            depth = hbt.depth(0)
            pos = hbt.position(0)
            sv = hbt.state_values(0)
            if k < ts_out.shape[0]:
                ts_out[k] = hbt.current_timestamp
                state_out[k, 0] = pos
                state_out[k, 1] = sv.balance
                state_out[k, 2] = sv.fee
                state_out[k, 3] = sv.num_trades
                k += 1
            bb, ba = depth.best_bid_tick, depth.best_ask_tick
            if hbt.current_timestamp < start_ns or bb <= -(2**62) or ba >= 2**62 or bb == 0:
                if hbt.current_timestamp + timer_ns > end_ns:
                    break
                continue
            mid = (bb + ba) / 2.0
            want_b = np.floor(mid - half_spread)
            want_a = np.ceil(mid + half_spread)
            have_b = False
            have_a = False
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                want = want_b if o.side == 1 else want_a
                if o.side == 1:
                    have_b = True
                else:
                    have_a = True
                if o.status == 1 and o.req == 0 and o.price_tick != want:
                    hbt.cancel(0, o.order_id, False)
            if not have_b and pos < max_pos - 1e-12:
                hbt.submit_buy_order(0, next_id, want_b * tick, qty, 1, 0, False)
                next_id += 1
            if not have_a and pos > -max_pos + 1e-12:
                hbt.submit_sell_order(0, next_id, want_a * tick, qty, 1, 0, False)
                next_id += 1
            if hbt.current_timestamp + timer_ns > end_ns:
                break
        return k

    return loop


def run_market_maker(feed: Feed, *, queue: QueueModel, latency: ConstantLatency, fees: Fees,
                     half_spread_ticks: float, qty: float, max_position: float, timer_ns: int,
                     start_ns: int) -> HbtOutcome:
    """Run the reference market maker in hftbacktest over ``feed``'s rows.

    Raises:
        ConfigError: a model hftbacktest has no twin for (the L3 queue on L2 rows, data latency).
    """
    if queue.code not in _HBT_QUEUE or not isinstance(latency, ConstantLatency):
        raise ConfigError("the hftbacktest twin takes an L2 queue model and ConstantLatency")
    from hftbacktest import BacktestAsset, ROIVectorMarketDepthBacktest

    tick = feed.tick_nanos / 1e9
    valid = (feed.bid_ticks != core.NO_BID) & (feed.ask_ticks != core.NO_ASK)
    mids = (feed.bid_ticks[valid] + feed.ask_ticks[valid]) / 2.0
    mid = float(np.median(mids)) * tick if valid.any() else 0.0
    # the ROI vector (+-50% of the mid): the hash-map depth walks tick by tick to the next level,
    # and this kind of capture holds levels at 1% and 10x the mid (minutes per deleted best level)
    # hftbacktest keeps a pointer into the array, not a reference: it must outlive the run
    events = to_hbt_events(feed)
    asset = (BacktestAsset().data(events).linear_asset(1.0).roi_lb(mid * 0.5).roi_ub(mid * 1.5)
             .constant_order_latency(latency.entry_ns, latency.response_ns)
             .no_partial_fill_exchange().trading_value_fee_model(fees.maker_rate, fees.taker_rate)
             .tick_size(tick).lot_size(feed.lot).last_trades_capacity(0))
    model = _HBT_QUEUE[queue.code]
    asset = getattr(asset, model)(queue.n) if queue.code in (1, 2, 3) else getattr(asset, model)()
    hbt = ROIVectorMarketDepthBacktest([asset])
    span = int(feed.t_local[-1] - feed.t_exch[0])
    steps = span // timer_ns + 2
    ts_out, state_out = np.zeros(steps, np.int64), np.zeros((steps, 4), np.float64)
    k = _loop()(hbt, half_spread_ticks, qty, max_position, timer_ns, start_ns, int(feed.t_local[-1]), ts_out,
                state_out)
    sv = hbt.state_values(0)
    depth = hbt.depth(0)
    mid = (depth.best_bid + depth.best_ask) / 2.0
    out = HbtOutcome(position=float(sv.position), balance=float(sv.balance), fee=float(sv.fee),
                     num_trades=int(sv.num_trades), trading_volume=float(sv.trading_volume),
                     equity=float(sv.balance + sv.position * mid - sv.fee), step_ts=ts_out[:k],
                     step_state=state_out[:k])
    hbt.close()
    del events
    return out
