"""The backtester's models: latency, queue position (L2 and L3), fees and position limits.

Each model is a small named class with its formula in the docstring (hftbacktest's layout). The
compiled loop (:mod:`tapeflow.backtest.core`) reads them as plain numbers: a queue model is a code
and a parameter, a latency model a kind and nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tapeflow.errors import ConfigError


class LatencyModel:
    """When the exchange sees each market row, and how long orders and responses travel."""

    kind = 0

    def exchange_times(self, t_local: np.ndarray, ts_event: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def stream_times(self, t_local: np.ndarray, ts_event: np.ndarray, carry: tuple | None
                     ) -> tuple[np.ndarray, tuple | None]:
        """:meth:`exchange_times` batch after batch (paper trading): ``carry`` is what the previous
        batch left (None first); the concatenated outputs equal ``exchange_times`` of the whole."""
        return self.exchange_times(t_local, ts_event), carry

    def entry_for(self, feed_latency_ns: int) -> int:
        """Nanoseconds an order sent now takes to reach the exchange."""
        raise NotImplementedError

    def response_for(self, feed_latency_ns: int) -> int:
        """Nanoseconds a response takes back (the loop computes it with the same rule)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantLatency(LatencyModel):
    """Fixed latencies: ``t_exch = t_local - feed_ns``; orders take ``entry_ns`` to reach the
    exchange, responses ``response_ns`` to come back (hftbacktest's ``ConstantLatency`` for
    orders)."""

    feed_ns: int = 0
    entry_ns: int = 0
    response_ns: int = 0
    kind = 0

    def __post_init__(self) -> None:
        if min(self.feed_ns, self.entry_ns, self.response_ns) < 0:
            raise ConfigError(f"latencies must be >= 0, got {self}")

    def exchange_times(self, t_local: np.ndarray, ts_event: np.ndarray) -> np.ndarray:
        return t_local - self.feed_ns

    def entry_for(self, feed_latency_ns: int) -> int:
        return self.entry_ns

    def response_for(self, feed_latency_ns: int) -> int:
        return self.response_ns


@dataclass(frozen=True)
class DataLatency(LatencyModel):
    """Latencies read off the data: feed latency ``d_i = ts_recv_i - ts_event_i + c`` with the
    constant ``c = base_ns - min_i(ts_recv_i - ts_event_i)`` (capture and venue clocks disagree
    by an unknown offset, hftbacktest's ``correct_local_timestamp``), exchange time
    ``t_exch_i = running max of (t_local_i - d_i)``; an order's entry and its responses each take
    ``order_scale * d`` of the latest row (the feed's latency now is the best guess of the
    order path's).

    ``running=True`` takes the minimum over the rows so far, ``c_i = base_ns - min_{j<=i}(ts_recv_j
    - ts_event_j)``: what a live run knows (paper trading needs it; a backtest with it gives the
    paper session's exchange times). Early rows then see a larger latency until the minimum is
    reached; ``d_i >= base_ns`` either way.
    """

    base_ns: int = 0
    order_scale: float = 1.0
    running: bool = False
    kind = 1

    def __post_init__(self) -> None:
        if self.base_ns < 0 or not self.order_scale >= 0:
            raise ConfigError(f"base_ns and order_scale must be >= 0, got {self}")

    def exchange_times(self, t_local: np.ndarray, ts_event: np.ndarray) -> np.ndarray:
        if self.running:
            return self.stream_times(t_local, ts_event, None)[0]
        raw = t_local - ts_event
        d = raw + (self.base_ns - int(raw.min())) if raw.size else raw
        return np.maximum.accumulate(t_local - d)

    def stream_times(self, t_local: np.ndarray, ts_event: np.ndarray, carry: tuple | None
                     ) -> tuple[np.ndarray, tuple | None]:
        if not self.running:
            raise ConfigError("DataLatency's clock offset is the minimum over the whole capture, unknown "
                              "while it is still arriving: use DataLatency(running=True) (the minimum so "
                              "far) in paper trading, and in the backtest it is compared with")
        low, last = carry if carry is not None else (np.iinfo(np.int64).max, np.iinfo(np.int64).min)
        if not t_local.size:
            return t_local.copy(), carry
        raw = t_local - ts_event
        low_i = np.minimum.accumulate(np.minimum(raw, low))
        t = np.maximum.accumulate(np.maximum(t_local - (raw + (self.base_ns - low_i)), last))
        return t, (int(low_i[-1]), int(t[-1]))

    def entry_for(self, feed_latency_ns: int) -> int:
        return int(feed_latency_ns * self.order_scale)

    def response_for(self, feed_latency_ns: int) -> int:
        return int(feed_latency_ns * self.order_scale)


class QueueModel:
    """Where a passive order stands in its level's queue. ``code`` selects the compiled rule."""

    code = 0
    n = 1.0


class RiskAdverseQueue(QueueModel):
    """hftbacktest's ``RiskAdverseQueueModel``: ``front`` starts at the level's size; a trade at
    the price does ``front -= qty``; a size change does ``front = min(front, new_qty)``. Filled
    when ``round(front / lot) < 0``: only trades advance the queue."""

    code = 0


@dataclass(frozen=True)
class _ProbQueue(QueueModel):
    """hftbacktest's ``ProbQueueModel``: a trade does ``front -= qty``, ``cum_trade += qty``; a
    size change ``prev -> new`` with ``chg = prev - new - cum_trade`` (trades already counted),
    ``cum_trade = 0``: if ``chg < 0`` then ``front = min(front, new)``; else with ``back = prev -
    front`` and ``p = prob(front, back)`` (1 where undefined), ``front = min(front - (1 - p) * chg
    + min(back - p * chg, 0), new)``. Filled when ``round(front / lot) < 0``."""

    n: float = 3.0


class PowerProbQueue(_ProbQueue):
    """``prob = back**n / (back**n + front**n)`` (``PowerProbQueueFunc``)."""

    code = 1


class PowerProbQueue2(_ProbQueue):
    """``prob = back**n / (back + front)**n`` (``PowerProbQueueFunc2``)."""

    code = 2


class PowerProbQueue3(_ProbQueue):
    """``prob = 1 - (front / (front + back))**n`` (``PowerProbQueueFunc3``)."""

    code = 3


class LogProbQueue(_ProbQueue):
    """``prob = log(1 + back) / (log(1 + back) + log(1 + front))`` (``LogProbQueueFunc``)."""

    code = 4


class LogProbQueue2(_ProbQueue):
    """``prob = log(1 + back) / log(1 + back + front)`` (``LogProbQueueFunc2``)."""

    code = 5


class L3FifoQueue(QueueModel):
    """Exact queue by order id (L3 data only): ``front`` = size of the feed orders at the price
    stamped before ours; it shrinks on their cancels and reductions; a fill of a feed order
    stamped after ours at our price fills ours (FIFO). See :mod:`tapeflow.backtest.core_l3`."""

    code = -1


QUEUE_MODELS = {"risk_adverse": RiskAdverseQueue, "power": PowerProbQueue, "power2": PowerProbQueue2,
                "power3": PowerProbQueue3, "log": LogProbQueue, "log2": LogProbQueue2, "l3": L3FifoQueue}


def queue_model(name: str, n: float = 3.0) -> QueueModel:
    """A queue model by name (``risk_adverse``, ``power``, ``power2``, ``power3``, ``log``,
    ``log2``, ``l3``)."""
    if name not in QUEUE_MODELS:
        raise ConfigError(f"unknown queue model {name!r}; choose one of {', '.join(QUEUE_MODELS)}")
    cls = QUEUE_MODELS[name]
    return cls(n) if issubclass(cls, _ProbQueue) else cls()


@dataclass(frozen=True)
class Fees:
    """Fees as fractions of traded value: ``fee = rate * price * qty``; a negative maker rate is a
    rebate (hftbacktest's ``TradingValueFeeModel``)."""

    maker_rate: float = 0.0
    taker_rate: float = 0.0

    def of(self, value: float, maker: bool) -> float:
        return (self.maker_rate if maker else self.taker_rate) * value


@dataclass(frozen=True)
class Limits:
    """Pre-trade checks on the strategy's side: an order is rejected (``reason='position_limit'``)
    when the position plus every open order on its side plus its own size would pass
    ``max_position`` in absolute value."""

    max_position: float = float("inf")
