"""Absorption: aggressive volume into one price that holds, with replenishment
(``kernels.signals_stealth.held_volume`` for the window).

On the book's snapshot grid, per side, the volume traded against that side at its touch price
while the price stayed the touch (the run restarts when the touch moves) is summed over the last
``window_ns``. An alert needs that volume to reach ``min_x_depth`` times the side's usual depth
at the touch (the causal median of its best size, 4 one-minute blocks back), in at least
``min_pushes`` separate grid rows, while the price still holds, after it showed at least
``min_shown_x_depth`` times that depth since it became the touch (a defender, not a level that
happens to be refilled by chance): more was executed there than a price normally shows, and it
did not give way. The look-alike, the same push into normal depth, eats the level and moves the touch,
which ends the run before the volume adds up.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_stealth import held_volume
from kernels.signals_windows import block_quantiles
from tapeflow.schemas.records import ASK, BID, F_MAYBE_BAD_BOOK
from tapeflow.signals.rows import Alerts
from tapeflow.signals.runs import one_per_run

NAME = "absorption/1"
_BASELINE_ROWS = 300  # grid rows per baseline block (30 s at 100 ms), 8 blocks looked back
_LOOKBACK_BLOCKS = 8


def grid_step_ns(ts: np.ndarray) -> int:
    """The book grid's spacing: the median step between rows (1 with fewer than two rows)."""
    return max(1, int(np.median(np.diff(ts)))) if len(ts) > 1 else 1


def dominant_level(prices: np.ndarray, sizes: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per grid row, the price and size of the largest of one side's first ``levels`` levels
    (the nearer on a tie; price 0 where the side is empty)."""
    k = min(levels, prices.shape[1])
    pick = np.argmax(sizes[:, :k], axis=1)
    rows = np.arange(len(prices))
    return prices[rows, pick], sizes[rows, pick]


def volume_at(book: dict[str, np.ndarray], trades: dict[str, np.ndarray], side: int, price: np.ndarray
              ) -> np.ndarray:
    """Per grid row, the volume traded against ``side``'s resting orders since the previous row at
    the previous row's ``price`` (trades placed on the grid by capture time: the book's own clock)."""
    touch = price
    out = np.zeros(len(touch))
    aggressor = ASK if side == 1 else BID
    rows = np.searchsorted(book["recv"], trades["ts_recv_ns"], side="left")
    ok = (trades["aggressor_side"] == aggressor) & (rows >= 1) & (rows < len(touch))
    r = rows[ok]
    at = trades["price_nanos"][ok] == touch[r - 1]
    np.add.at(out, r[at], trades["size_nanos"][ok][at].astype(np.float64))
    return out


def detect(book: dict[str, np.ndarray], trades: dict[str, np.ndarray], tick: int, params: dict[str, Any],
           venue: str, symbol: str) -> Alerts:
    """Absorption alerts of one instrument.

    Args:
        book: grid arrays ``ts``, ``recv``, ``flags``, ``bid_p``/``bid_s``/``ask_p``/``ask_s``
            (``tapeflow.signals.detect._grid_arrays``).
        trades: ``ts_recv_ns``, ``price_nanos``, ``size_nanos``, ``aggressor_side`` arrays.
        tick: the price increment (evidence only).
        params: the detector's thresholds.
    """
    out = Alerts(venue, symbol, NAME, params)
    if len(book["ts"]) < 2:
        return out
    step = grid_step_ns(book["ts"])
    for side in (1, -1):
        w = side_windows(book, trades, side, params, step)
        for t in one_per_run(w["ok"], book["ts"], params["refractory_ns"]):
            add_alert(out, book, w, int(t), side, params, tick)
    return out


def side_windows(book: dict[str, np.ndarray], trades: dict[str, np.ndarray], side: int,
                 params: dict[str, Any], step_ns: int, *, usual: np.ndarray | None = None) -> dict[str, Any]:
    """One side's statistics per grid row (``held_volume`` and the usual depth); ``ok`` marks the
    rows where every condition holds, before the refractory step.

    Args:
        step_ns: the grid's spacing (:func:`grid_step_ns` of the day's rows).
        usual: the usual depth per row when the caller has it (the live stage carries it per
            block, :func:`usual_depth`'s values); None: computed here.
    """
    name = "bid" if side == 1 else "ask"
    prices, sizes = book[f"{name}_p"], book[f"{name}_s"]
    window = max(1, params["window_ns"] // step_ns)
    if usual is None:
        usual = usual_depth(sizes)
    touch, shown = dominant_level(prices, sizes, params["levels"])
    shown = shown.astype(np.float64)
    held, pushes, peak, run = held_volume(touch, volume_at(book, trades, side, touch), shown, window)
    known = np.where(np.isfinite(usual), usual, np.inf)
    need = params["min_x_depth"] * known
    w = dict(window=window, step=step_ns, usual=usual, touch=touch, shown=shown, held=held,
             pushes=pushes, peak=peak, run=run, need=need, known=known,
             bad=np.cumsum((book["flags"] & F_MAYBE_BAD_BOOK) != 0))
    w["ok"] = ok_rows(w, params)
    return w


def usual_depth(sizes: np.ndarray) -> np.ndarray:
    """Per grid row, the median best-level size (empty sides left out) of the 8 blocks of 300
    rows before its own (``block_quantiles``)."""
    best = sizes[:, 0].astype(np.float64)
    return block_quantiles(np.where(best > 0, best, np.nan), _BASELINE_ROWS, _LOOKBACK_BLOCKS, (0.5,))[:, 0]


def ok_rows(w: dict[str, Any], params: dict[str, Any]) -> np.ndarray:
    """The rows of :func:`side_windows`' statistics ``w`` where every condition holds (again after
    ``peak`` was corrected for a run that started before the rows)."""
    return ((w["touch"] > 0) & (w["shown"] > 0) & (w["held"] >= w["need"])
            & (w["pushes"] >= params["min_pushes"])
            & (w["peak"] >= params["min_shown_x_depth"] * w["known"]))


def add_alert(out: Alerts, book: dict[str, np.ndarray], w: dict[str, Any], t: int, side: int,
              params: dict[str, Any], tick: int) -> None:
    """The absorption alert of grid row ``t`` of one side's statistics ``w`` (:func:`side_windows`)."""
    window, run, held, usual, touch, bad = w["window"], w["run"], w["held"], w["usual"], w["touch"], w["bad"]
    first = max(t - int(run[t]) + 1, t - window + 1)
    out.add(ts_event_ns=int(book["ts"][t]), ts_recv_ns=int(book["recv"][t]), kind="absorption",
            side=side, price_nanos=int(touch[t]), size_nanos=int(held[t]),
            start_ns=int(book["ts"][first]), end_ns=int(book["ts"][t]),
            score=float(held[t] / w["need"][t]),
            flags=F_MAYBE_BAD_BOOK if bad[t] - (bad[first - 1] if first else 0) else 0,
            evidence=dict(executed_nanos=int(held[t]),
                          x_usual_depth=round(float(held[t] / usual[t]), 2),
                          pushes=int(w["pushes"][t]), held_s=round(float(run[t] * w["step"]) / 1e9, 1),
                          shown_now_nanos=int(w["shown"][t]), shown_peak_nanos=int(w["peak"][t]),
                          usual_depth_nanos=int(usual[t]), tick_nanos=int(tick)))
