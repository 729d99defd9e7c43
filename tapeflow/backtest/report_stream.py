"""The risk report over record batches: a year of a paper session's equity curve and fills is read
in passes of bounded batches, never held whole.

:func:`risk_report` computes every figure of :meth:`tapeflow.backtest.results.BacktestResult.report`
(definitions: :mod:`tapeflow.backtest.risk`) from two callables that each return a fresh iterator of
batches (``fills``, ``equity``): the in-memory result passes its tables' batches, a paper session
the Parquet parts it spooled (:class:`tapeflow.backtest.spool.ResultSpool`), read ``batch_rows`` at
a time. The numbers do not depend on how the rows are cut into batches, so the report of a session
read back from disk equals, bit for bit, the report of the same rows in memory:

* sums are exact (:class:`ExactSum`: every float is an integer multiple of 2^-1127, summed as
  Python integers, rounded once at the end), so means, standard deviations, fees and turnover are
  the correctly rounded values whatever the order (numpy's pairwise sums differ in the last bits);
* the historical VaR's order statistics are found by a radix selection over the float's bits
  (:class:`OrderStats`: four passes of 16-bit digits, the first shared with the sums, 64 Ki
  counters per distinct prefix), then interpolated as ``numpy.quantile``'s ``linear`` method does;
* the drawdown's running peak, the last mark, the sampling interval's median (a count per distinct
  interval) and the average-cost PnL (:class:`tapeflow.backtest.risk.PnlBook`) carry a few numbers
  from batch to batch.

What the passes keep grows with neither the equity curve nor the number of days: the counters, a
count per distinct sampling interval (a handful on the engine's grid), and, for the fill ratio's
distinct filled orders, the order ids of at most ``ID_PASS_ROWS`` fills at once (the ids are split
into ``ceil(fills / ID_PASS_ROWS)`` residue classes, one pass each).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.backtest.risk import PnlBook

YEAR_NS = 365 * 24 * 3600 * 10**9
LEVELS = (0.95, 0.99)
ID_PASS_ROWS = 1 << 20  # distinct filled orders: ids held per pass (8 MiB)
_SCALE = 1 << 1127      # 2^-1074 (the least subnormal) times the 53 bits of a mantissa

Batches = Callable[[], Iterable[pa.RecordBatch | pa.Table]]


class ExactSum:
    """The exact sum of finite float64 values added in any order and any batches, rounded once."""

    def __init__(self) -> None:
        self.total = 0  # the sum in units of 2^-1127

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        x = x[x != 0]
        if not x.size:
            return
        if not np.isfinite(x).all():
            raise ValueError("ExactSum takes finite values only")
        m, e = np.frexp(x)                   # x = m 2^e, 0.5 <= |m| < 1
        mant = (m * 2.0**53).astype(np.int64)  # exact: 53 bits
        hi, lo = mant >> 26, mant & ((1 << 26) - 1)  # mant = hi 2^26 + lo: int64 sums cannot overflow
        order = np.argsort(e, kind="stable")
        e, hi, lo = e[order], hi[order], lo[order]
        cuts = np.flatnonzero(np.diff(e)) + 1
        starts = np.concatenate([[0], cuts])
        his, los = np.add.reduceat(hi, starts), np.add.reduceat(lo, starts)
        for ev, h, lw in zip(e[starts].tolist(), his.tolist(), los.tolist(), strict=True):
            self.total += ((h << 26) + lw) << (ev + 1074)

    def value(self) -> float:
        """The correctly rounded sum."""
        return self.total / _SCALE


def _keys(x: np.ndarray) -> np.ndarray:
    """uint64 keys in the floats' order (finite values)."""
    bits = np.ascontiguousarray(x, np.float64).view(np.uint64)
    return np.where(bits >> np.uint64(63), ~bits, bits | np.uint64(1 << 63))


def _value(key: int) -> float:
    bits = key ^ (1 << 63) if key >> 63 else ~key & ((1 << 64) - 1)
    return float(np.array([bits], np.uint64).view(np.float64)[0])


class OrderStats:
    """The ``k``-th smallest values (0-based) of a stream, by radix selection: call :meth:`add` with
    every batch for each of the 4 passes (:meth:`next_pass` between them), then :attr:`values`.

    The first pass counts the top digit of every value whatever ``k``, so the targets may be given
    at its end (``next_pass(ks)``: once the stream's length is known); targets that share a prefix
    share a histogram.
    """

    DIGIT = 16
    PASSES = 64 // DIGIT

    def __init__(self, ks: Iterable[int] = ()) -> None:
        self.ks = sorted(set(ks))
        self.rest = {k: k for k in self.ks}
        self.prefix = dict.fromkeys(self.ks, 0)
        self.done = 0
        self._hist: dict[int, np.ndarray] = {}

    def add(self, x: np.ndarray) -> None:
        keys = _keys(x)
        shift = 64 - self.DIGIT * (self.done + 1)
        for pf in ({0} if not self.done else set(self.prefix.values())):
            sel = keys if not self.done else keys[(keys >> np.uint64(shift + self.DIGIT)) == pf]
            digit = ((sel >> np.uint64(shift)) & np.uint64((1 << self.DIGIT) - 1)).astype(np.int64)
            counts = np.bincount(digit, minlength=1 << self.DIGIT)
            self._hist[pf] = counts if pf not in self._hist else self._hist[pf] + counts

    def next_pass(self, ks: Iterable[int] | None = None) -> None:
        hist, self._hist = self._hist, {}
        if ks is not None:
            assert not self.done, "targets are given at the end of the first pass at the latest"
            self.ks = sorted(set(ks))
            self.rest = {k: k for k in self.ks}
            self.prefix = dict.fromkeys(self.ks, 0)
        empty = np.zeros(1 << self.DIGIT, np.int64)
        for k in self.ks:
            cum = np.cumsum(hist.get(self.prefix[k], empty))
            d = int(np.searchsorted(cum, self.rest[k], side="right"))
            self.rest[k] -= int(cum[d - 1]) if d else 0
            self.prefix[k] = (self.prefix[k] << self.DIGIT) | d
        self.done += 1

    @property
    def values(self) -> dict[int, float]:
        assert self.done == self.PASSES, "every pass first"
        return {k: _value(self.prefix[k]) for k in self.ks}


def _quantile_indexes(n: int, q: float) -> tuple[int, int, float]:
    """``numpy.quantile(..., method="linear")``'s neighbours and weight for ``n`` values."""
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    lo = math.floor(virtual)
    return lo, lo + 1, virtual - lo


def _lerp(a: float, b: float, t: float) -> float:
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _batches(source: Batches) -> Iterator[pa.RecordBatch | pa.Table]:
    for b in source():
        if b.num_rows:
            yield b


def _col(batch: pa.RecordBatch | pa.Table, name: str) -> np.ndarray:
    return batch.column(name).to_numpy(zero_copy_only=False)


def _pnl(equity: Batches) -> Iterator[tuple[pa.RecordBatch | pa.Table, np.ndarray, np.ndarray]]:
    """``(batch, equity, pnl)`` per batch, ``pnl`` the differences with the previous row (across a
    batch boundary too)."""
    last = None
    for b in _batches(equity):
        eq = _col(b, "equity").astype(np.float64)
        prev = np.concatenate([[last], eq[:-1]]) if last is not None else eq[:-1]
        yield b, eq, (eq[-len(prev):] - prev) if len(prev) else eq[:0]
        last = eq[-1]


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def _median(counts: Counter) -> float:
    """``numpy.median`` of the values counted (an even count: the mean of the middle two)."""
    n = sum(counts.values())
    if not n:
        return float("nan")
    values = sorted(counts)
    cum = np.cumsum([counts[v] for v in values])
    at = [int(np.searchsorted(cum, i, side="right")) for i in ((n - 1) // 2, n // 2)]
    a, b = float(values[at[0]]), float(values[at[1]])
    return a if a == b else (a + b) / 2.0


def _distinct(fills: Batches, n: int) -> int:
    passes = max(1, -(-n // ID_PASS_ROWS))
    total = 0
    for r in range(passes):
        ids = [i[i % passes == r] for i in (_col(b, "order_id") for b in _batches(fills))]
        total += len(np.unique(np.concatenate(ids))) if ids else 0
    return total


def risk_report(fills: Batches, equity: Batches, counts: dict[str, int]) -> dict[str, Any]:
    """The risk report of :meth:`tapeflow.backtest.results.BacktestResult.report`, streamed.

    Args:
        fills: returns a new iterator over the fills' batches (columns ``order_id, side, price, qty,
            maker, fee``), in time order, each call.
        equity: likewise over the equity curve's (``ts_ns, equity, mid``).
        counts: orders, cancels, modifies, rejected_limit.
    """
    # pass 1: counts, last values, drawdown, the sampling interval, the PnL's sums
    n_rows = n_pnl = 0
    final = mark = float("nan")
    peak, drawdown = -math.inf, 0.0
    steps: Counter = Counter()
    last_ts = None
    s1, down = ExactSum(), ExactSum()
    stats = OrderStats()  # the historical VaR's order statistics: the first digit needs no target
    for b, eq, pnl in _pnl(equity):
        ts, mids = _col(b, "ts_ns"), _col(b, "mid")
        step, many = np.unique(np.diff(ts) if last_ts is None else np.diff(ts, prepend=last_ts),
                               return_counts=True)
        steps.update(dict(zip(step.tolist(), many.tolist(), strict=True)))
        last_ts = int(ts[-1])
        ok = np.isfinite(mids)
        if ok.any():
            mark = float(mids[ok][-1])
        n_rows += len(eq)
        final = float(eq[-1])
        e = _finite(eq)
        if e.size:
            run = np.maximum.accumulate(np.concatenate([[peak], e]))[1:]
            drawdown, peak = max(drawdown, float(np.max(run - e))), float(run[-1])
        x = _finite(pnl)
        n_pnl += x.size
        s1.add(x)
        down.add(np.minimum(x, 0.0) ** 2)
        stats.add(x)
    mean = s1.value() / n_pnl if n_pnl else float("nan")
    # the historical VaR's neighbours (numpy's linear quantile): their digits over the next 3 passes
    where = {lv: _quantile_indexes(n_pnl, 1.0 - lv) for lv in LEVELS} if n_pnl else {}
    ss = ExactSum()
    var_hist: dict[float, float] = {}
    if where:
        stats.next_pass(k for lo, hi, _ in where.values() for k in (lo, hi))
        for p in range(1, OrderStats.PASSES):
            for _, _, pnl in _pnl(equity):
                x = _finite(pnl)
                if p == 1:
                    ss.add((x - mean) ** 2)
                stats.add(x)
            stats.next_pass()
        at = stats.values
        var_hist = {lv: -_lerp(at[lo], at[hi], t) for lv, (lo, hi, t) in where.items()}
    # the last pass: the tails beyond each VaR
    tails = {lv: (ExactSum(), [0]) for lv in var_hist}
    if tails:
        for _, _, pnl in _pnl(equity):
            x = _finite(pnl)
            for lv, (s, c) in tails.items():
                beyond = x[x <= -var_hist[lv]]
                s.add(beyond)
                c[0] += beyond.size
    std = math.sqrt(ss.value() / (n_pnl - 1)) if n_pnl >= 2 else float("nan")

    book, fees, turnover, volume = PnlBook(), ExactSum(), ExactSum(), ExactSum()
    n_fills = makers = 0
    for b in _batches(fills):
        side, price, qty = (_col(b, c) for c in ("side", "price", "qty"))
        book.add(side, price, qty)
        fees.add(_col(b, "fee"))
        turnover.add(np.asarray(price, float) * qty)
        volume.add(qty)
        n_fills += len(side)
        makers += int(np.sum(_col(b, "maker")))
    br = book.breakdown(mark)

    period_ns = _median(steps) if n_rows > 1 else float("nan")
    per_year = YEAR_NS / period_ns if period_ns and np.isfinite(period_ns) else 1.0
    orders = counts.get("orders", 0)
    no_spread = n_pnl < 2 or std == 0
    down_dev = math.sqrt(down.value() / n_pnl) if n_pnl else 0.0
    out: dict[str, Any] = {
        "final_equity": final if n_rows else 0.0,
        "realized_pnl": br.realized, "unrealized_pnl": br.unrealized,
        "fees": fees.value(), "final_position": br.position,
        "fills": n_fills, "maker_fills": makers, "orders": orders,
        "fill_ratio": _distinct(fills, n_fills) / max(orders, 1),
        "hit_rate": br.hit_rate, "turnover": turnover.value(), "volume": volume.value(),
        "sharpe": float("nan") if no_spread else mean / std * math.sqrt(per_year),
        "sortino": float("nan") if down_dev == 0 else mean / down_dev * math.sqrt(per_year),
        "max_drawdown": drawdown, "period_s": period_ns / 1e9,
    }
    for level in LEVELS:
        tag = int(round(level * 100))
        z = NormalDist().inv_cdf(level)
        if level in var_hist:
            s, c = tails[level]
            out[f"var{tag}_hist"] = var_hist[level]
            out[f"cvar{tag}_hist"] = -(s.value() / c[0]) if c[0] else float("nan")
        else:
            out[f"var{tag}_hist"] = out[f"cvar{tag}_hist"] = float("nan")
        out[f"var{tag}_param"] = float("nan") if n_pnl < 2 else z * std - mean
        out[f"cvar{tag}_param"] = (float("nan") if n_pnl < 2
                                   else std * NormalDist().pdf(z) / (1.0 - level) - mean)
    out.update({k: v for k, v in counts.items() if k != "orders"})
    return out
