"""Risk measures: pure functions of PnL series and fills (no engine, no I/O).

Conventions. ``pnl`` is a series of per-period PnL changes (equity differences, in the quote
currency); losses are reported as positive numbers. Quantiles are numpy's default (linear
interpolation between order statistics).

* Sharpe = mean(pnl) / std(pnl, ddof=1) * sqrt(periods_per_year).
* Sortino = mean(pnl) / sqrt(mean(min(pnl, 0)^2)) * sqrt(periods_per_year).
* Max drawdown = max_t (max_{s<=t} equity_s - equity_t).
* Historical VaR_a = -quantile(pnl, 1 - a); historical CVaR_a = -mean(pnl[pnl <= -VaR_a]).
* Parametric (normal) VaR_a = z_a * sigma - mu; CVaR_a = sigma * phi(z_a) / (1 - a) - mu, with
  mu, sigma (ddof=1) of pnl, z_a the standard normal a-quantile and phi its density.
* Realized PnL: average-cost method (a fill that reduces the position realizes
  ``closed_qty * (price - avg_cost) * sign(position)``); unrealized = position * (mark - avg_cost).
* Hit rate = share of position-reducing fills with realized PnL > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tapeflow.errors import ConfigError


def _series(pnl: np.ndarray) -> np.ndarray:
    x = np.asarray(pnl, dtype=np.float64)
    return x[np.isfinite(x)]


def sharpe(pnl: np.ndarray, periods_per_year: float = 1.0) -> float:
    """Mean over sample standard deviation, annualized; NaN with < 2 periods or zero spread."""
    x = _series(pnl)
    if x.size < 2 or np.std(x, ddof=1) == 0:
        return float("nan")
    return float(np.mean(x) / np.std(x, ddof=1) * np.sqrt(periods_per_year))


def sortino(pnl: np.ndarray, periods_per_year: float = 1.0) -> float:
    """Mean over downside deviation (target 0), annualized; NaN without a losing period."""
    x = _series(pnl)
    down = np.sqrt(np.mean(np.minimum(x, 0.0) ** 2)) if x.size else 0.0
    if down == 0:
        return float("nan")
    return float(np.mean(x) / down * np.sqrt(periods_per_year))


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak of the equity curve (>= 0)."""
    e = _series(equity)
    if not e.size:
        return 0.0
    return float(np.max(np.maximum.accumulate(e) - e))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ConfigError(f"a VaR level is in (0, 1), got {level}")


def var_historical(pnl: np.ndarray, level: float = 0.95) -> float:
    """Historical VaR at ``level``: the loss not exceeded with probability ``level``."""
    _check_level(level)
    x = _series(pnl)
    return float(-np.quantile(x, 1.0 - level)) if x.size else float("nan")


def cvar_historical(pnl: np.ndarray, level: float = 0.95) -> float:
    """Historical CVaR (expected shortfall): mean loss over the periods at or beyond VaR."""
    x = _series(pnl)
    if not x.size:
        return float("nan")
    var = var_historical(x, level)
    return float(-np.mean(x[x <= -var]))


def var_parametric(pnl: np.ndarray, level: float = 0.95) -> float:
    """Normal VaR: ``z_level * sigma - mu``."""
    _check_level(level)
    x = _series(pnl)
    if x.size < 2:
        return float("nan")
    return float(NormalDist().inv_cdf(level) * np.std(x, ddof=1) - np.mean(x))


def cvar_parametric(pnl: np.ndarray, level: float = 0.95) -> float:
    """Normal CVaR: ``sigma * phi(z_level) / (1 - level) - mu``."""
    _check_level(level)
    x = _series(pnl)
    if x.size < 2:
        return float("nan")
    z = NormalDist().inv_cdf(level)
    return float(np.std(x, ddof=1) * NormalDist().pdf(z) / (1.0 - level) - np.mean(x))


@dataclass(frozen=True)
class PnlBreakdown:
    """Average-cost accounting of a fill sequence (fees not included)."""

    realized: float
    unrealized: float
    position: float
    avg_cost: float
    closing_fills: int
    winning_fills: int

    @property
    def hit_rate(self) -> float:
        return self.winning_fills / self.closing_fills if self.closing_fills else float("nan")


class PnlBook:
    """:func:`pnl_breakdown` fed fill by fill or batch by batch (a paper session's fills, streamed
    from disk): the same operations in the same order, so the same numbers as one call."""

    def __init__(self) -> None:
        self.pos = self.cost = self.realized = 0.0
        self.closing = self.wins = 0

    def add(self, side: np.ndarray, price: np.ndarray, qty: np.ndarray) -> None:
        """The next fills, in order (``side`` +1 buy / -1 sell)."""
        pos, cost, realized = self.pos, self.cost, self.realized
        closing = wins = 0
        rows = zip(np.asarray(side, float), np.asarray(price, float), np.asarray(qty, float), strict=True)
        for s, px, q in rows:
            if pos == 0 or np.sign(pos) == s:
                cost = (cost * abs(pos) + px * q) / (abs(pos) + q)
                pos += s * q
                continue
            closed = min(q, abs(pos))
            gain = closed * (px - cost) * np.sign(pos)
            realized += gain
            closing += 1
            wins += gain > 0
            pos += s * q
            if abs(pos) < 1e-12:
                pos, cost = 0.0, 0.0
            elif np.sign(pos) == s:
                cost = px
        self.pos, self.cost, self.realized = pos, cost, realized
        self.closing += closing
        self.wins += int(wins)

    def breakdown(self, mark: float) -> PnlBreakdown:
        """The fills so far, the open position marked at ``mark``."""
        pos, cost = self.pos, self.cost
        unrealized = pos * (mark - cost) if pos and np.isfinite(mark) else 0.0
        return PnlBreakdown(self.realized, unrealized, pos, cost, self.closing, self.wins)


def pnl_breakdown(side: np.ndarray, price: np.ndarray, qty: np.ndarray, mark: float) -> PnlBreakdown:
    """Realized and unrealized PnL of fills (``side`` +1 buy / -1 sell) marked at ``mark``."""
    book = PnlBook()
    book.add(side, price, qty)
    return book.breakdown(mark)
