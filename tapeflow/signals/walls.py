"""Walls: resting size of k times the median depth that persists; then pulled or eaten.

L2, from the book snapshot grid and the trades (every format has both). Per side and grid row,
``kernels.signals_walls.wall_runs`` gives the largest visible level and how many rows it has
stood at one price with at least ``min_size_x_depth`` times the usual depth at the touch (the
causal median of the mean best bid and ask size, 4 blocks of 600 grid rows back). A wall
**appears** when that run reaches ``persist_ns`` (a large order cancelled at once, the
look-alike, never does), provided that when it first showed it stood ``min_ticks_behind`` ticks
or more behind its side's touch (a defender absorbing a push sits at the touch) and at least
``min_jump_share`` of the threshold arrived in one grid step (size piling up order by order in a
quiet book is not a wall). It is then followed at its price until it holds less than the
threshold it appeared with: **eaten** if the trades at its price over the last
``outcome_window_ns`` cover ``eaten_share`` of what the level lost there, else **pulled**.

One row per event, all of kind ``wall``; ``evidence.event`` says which. The ``appeared`` row is
the alert (``tapeflow.signals.score`` scores it); ``pulled`` / ``eaten`` rows follow it (same
price, side and ``start_ns``) and are not scored as alerts (``score.FOLLOW_UP_EVENTS``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_walls import wall_runs
from tapeflow.schemas.records import ASK, BID, F_MAYBE_BAD_BOOK
from tapeflow.signals.rows import Alerts
from tapeflow.signals.withdrawal import block_medians

NAME = "wall/1"
_BASELINE_ROWS = 600  # grid rows per baseline block (1 min at 100 ms; 4 blocks looked back)
_LOOKBACK_BLOCKS = 4


def usual_depth(book: dict[str, np.ndarray]) -> np.ndarray:
    """Per grid row, the usual depth at the touch: the median, over the 4 one-minute blocks before
    the row's own, of the mean of the best bid and best ask sizes; in the first block (no past),
    the row's own."""
    bid, ask = book["bid_s"][:, 0].astype(np.float64), book["ask_s"][:, 0].astype(np.float64)
    both = (bid > 0) & (ask > 0)
    per_row = np.where(both, (bid + ask) / 2, np.maximum(bid, ask))
    known = per_row > 0
    # a row with an empty book carries the last row's depth (causal: the batch and a day's
    # partition see the same rows the same way)
    last = np.maximum.accumulate(np.where(known, np.arange(len(per_row)), -1)) if len(per_row) else per_row
    filled = np.where(last >= 0, per_row[np.maximum(last, 0)], np.nan) if len(per_row) else per_row
    usual = block_medians(filled, _BASELINE_ROWS, _LOOKBACK_BLOCKS)  # block_quantiles' bits
    return np.where(np.isnan(usual), filled, usual)


def detect(book: dict[str, np.ndarray], trades: dict[str, np.ndarray], tick: int, params: dict[str, Any],
           venue: str, symbol: str, *, usual: np.ndarray | None = None) -> Alerts:
    """Wall events (appeared, pulled, eaten) of one instrument.

    Args:
        book: grid arrays ``ts``, ``recv``, ``flags`` (G,) and ``bid_p``/``bid_s``/``ask_p``/``ask_s``
            (G, levels), best first, size 0 where a level is absent.
        trades: ``ts_recv_ns``, ``price_nanos``, ``size_nanos``, ``aggressor_side`` arrays.
        tick: the price increment.
        params: the detector's thresholds.
        usual: :func:`usual_depth` of ``book`` where the caller has it (the live stage computes
            it once per batch for spikes and walls); None: computed here.
    """
    out = Alerts(venue, symbol, NAME, params)
    g = len(book["ts"])
    if g == 0:
        return out
    usual = usual_depth(book) if usual is None else usual
    threshold = params["min_size_x_depth"] * usual
    need = max(1, -(-params["persist_ns"] // _grid_ns(book)))
    bad = np.cumsum((book["flags"] & F_MAYBE_BAD_BOOK) != 0)
    for side, prices, sizes, aggressor in ((1, book["bid_p"], book["bid_s"], ASK),
                                           (-1, book["ask_p"], book["ask_s"], BID)):
        price, size, level, run = wall_runs(prices, sizes.astype(np.float64), threshold)
        hit = trades["aggressor_side"] == aggressor
        t_recv, t_price = trades["ts_recv_ns"][hit], trades["price_nanos"][hit]
        t_size = trades["size_nanos"][hit]
        last_end: dict[int, int] = {}
        for t in np.flatnonzero(run == need).tolist():
            first = t - need + 1
            p = int(price[t])
            behind = side * (int(prices[first, 0]) - p) // tick
            before = float(sizes[first - 1][prices[first - 1] == p].sum()) if first else 0.0
            jump = float(size[first]) - before
            if behind < params["min_ticks_behind"] or jump < params["min_jump_share"] * threshold[first]:
                continue
            follow = _follow(prices, sizes, t, p, side, threshold)
            end = t + int(np.argmax(follow < 0)) if (follow < 0).any() else g - 1
            if p in last_end and int(book["ts"][first]) - last_end[p] < params["refractory_ns"]:
                last_end[p] = int(book["ts"][end])
                continue
            last_end[p] = int(book["ts"][end])
            x_depth = float(size[t] / usual[t])
            score = x_depth / params["min_size_x_depth"]
            common = dict(side=side, price_nanos=p, start_ns=int(book["ts"][first]))
            bad_before = bad[first - 1] if first else 0
            out.add(ts_event_ns=int(book["ts"][t]), ts_recv_ns=int(book["recv"][t]), kind="wall",
                    size_nanos=int(size[t]), end_ns=int(book["ts"][t]), score=score,
                    flags=F_MAYBE_BAD_BOOK if bad[t] > bad_before else 0, **common,
                    evidence=dict(event="appeared", size_x_depth=round(x_depth, 2), ticks_behind=int(behind),
                                  jump_x_depth=round(jump / usual[t], 2),
                                  stood_ms=int((book["ts"][t] - book["ts"][first]) // 1_000_000),
                                  usual_depth_nanos=int(usual[t])))
            if not (follow < 0).any():
                continue  # still standing when the input ends: no outcome yet
            gone = end
            # what the last ``outcome_window_ns`` took off the level, against what traded there
            # (trades earlier in the stand hit the queue in front of the wall, not the wall)
            since = book["ts"][gone] - params["outcome_window_ns"]
            ref = max(t, int(np.searchsorted(book["ts"], since)))
            level = follow[ref - t:gone - t]
            before_nanos = float(level[level >= 0].max()) if (level >= 0).any() else float(size[t])
            left = float(sizes[gone][prices[gone] == p].sum())
            lost = max(before_nanos - left, 0.0)
            window = ((t_recv > book["recv"][ref]) & (t_recv <= book["recv"][gone]) & (t_price == p))
            traded = float(t_size[window].sum())
            eaten = lost > 0 and traded >= params["eaten_share"] * lost
            out.add(ts_event_ns=int(book["ts"][gone]), ts_recv_ns=int(book["recv"][gone]), kind="wall",
                    size_nanos=int(lost), end_ns=int(book["ts"][gone]), score=score,
                    flags=F_MAYBE_BAD_BOOK if bad[gone] > bad_before else 0, **common,
                    evidence=dict(event="eaten" if eaten else "pulled", before_nanos=int(before_nanos),
                                  left_nanos=int(left), traded_nanos=int(traded),
                                  stood_ms=int((book["ts"][gone] - book["ts"][first]) // 1_000_000)))
    return out


def _follow(prices: np.ndarray, sizes: np.ndarray, t: int, price: int, side: int,
            threshold: np.ndarray) -> np.ndarray:
    """From row ``t`` on, the size resting at ``price`` per row while the wall stands; -1 from
    the first row it is gone (the price in view and under the threshold it appeared with). A price pushed
    out of the visible levels (the book filled in between) is out of view, not gone: its rows
    read the last size seen."""
    p, s = prices[t:], sizes[t:]
    at = np.where(p == price, s, 0).sum(axis=1).astype(np.float64)
    full = (s > 0).all(axis=1)
    in_view = ~full | (side * (price - p[:, -1]) >= 0)
    # the threshold it appeared with: a baseline that moves on while it stands does not end it
    gone = in_view & (at < threshold[t])
    out = at.copy()
    hidden = ~in_view
    if hidden.any():
        # carry the last size seen through the rows the price was out of view
        idx = np.where(hidden, 0, np.arange(len(at)))
        out = at[np.maximum.accumulate(idx)]
    if gone.any():
        out[int(np.argmax(gone)):] = -1.0
    return out


def _grid_ns(book: dict[str, np.ndarray]) -> int:
    ts = book["ts"]
    steps = np.diff(ts)
    return int(np.median(steps)) if len(steps) else 1
