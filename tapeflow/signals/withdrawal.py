"""Liquidity withdrawal: depth within N ticks of the touch falls by more than X% within T, not
explained by the touch moving away (kernels.signals_windows.band_depths for the windows).

On the book's snapshot grid, each side's depth within ``within_ticks`` of the touch ``window_ns``
ago is compared with the depth now at the same prices. An alert needs: the fall to reach
``drop_share`` of the band; at least ``min_levels_pulled`` of its levels halved or emptied (a
single cancelled order is not a withdrawal); a band of at least ``min_depth_x_median`` times its
usual (causal median) depth; the opposite touch not to have moved more than
``max_opposite_move_ticks`` towards this side (a price move drags the whole book: the
look-alike); and trades into this side to explain at most ``max_traded_share`` of the fall
(depth eaten is not depth pulled).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_windows import band_depths, block_quantiles
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK
from tapeflow.signals.rows import Alerts, first_of_runs

NAME = "withdrawal/1"
_LOOKBACK_BLOCKS = 4
_BASELINE_ROWS = 600  # grid rows per baseline block (1 min at 100 ms; 4 blocks looked back)


def detect(book: dict[str, np.ndarray], traded: dict[int, np.ndarray], tick: int, params: dict[str, Any],
           venue: str, symbol: str) -> Alerts:
    """Withdrawal alerts of one instrument.

    Args:
        book: grid arrays ``ts`` (G,), ``recv`` (G,), ``flags`` (G,), ``bid_p``/``bid_s``/``ask_p``/
            ``ask_s`` (G, levels) best first, size 0 where a level is absent.
        traded: side (+1 bids, -1 asks) -> cumulative volume executed against that side's resting
            orders at each grid row.
        tick: the price increment.
        params: the detector's thresholds.
    """
    out = Alerts(venue, symbol, NAME, params)
    g = len(book["ts"])
    lag = max(1, params["window_ns"] // params["grid_ns"])
    if g <= lag:
        return out
    rows = np.arange(g)
    ref = np.maximum(0, rows - lag)
    bad = np.cumsum((book["flags"] & F_MAYBE_BAD_BOOK) != 0)
    touched_bad = (bad - np.r_[0, bad][ref]) > 0
    for side, prices, sizes, opp in ((1, book["bid_p"], book["bid_s"], book["ask_p"][:, 0]),
                                     (-1, book["ask_p"], book["ask_s"], book["bid_p"][:, 0])):
        touch = prices[:, 0]
        present = sizes[:, 0] > 0
        then, now, pulled = band_depths(prices, sizes.astype(np.float64), touch, side, tick,
                                        params["within_ticks"], lag)
        usual = block_quantiles(then, _BASELINE_ROWS, _LOOKBACK_BLOCKS, (0.5,))[:, 0]
        fell = then - now
        with np.errstate(invalid="ignore", divide="ignore"):
            drop = np.where(then > 0, fell / then, 0.0)
            eaten = (traded[side] - traded[side][ref]) / np.maximum(fell, 1e-9)
        towards = side * (opp[ref] - opp) // tick
        valid = present & (sizes[ref, 0] > 0) & (opp > 0) & (opp[ref] > 0) & (rows >= lag)
        ok = (valid & (drop >= params["drop_share"]) & (pulled >= params["min_levels_pulled"])
              & (towards <= params["max_opposite_move_ticks"])
              & (eaten <= params["max_traded_share"])
              & (then >= params["min_depth_x_median"] * np.where(np.isfinite(usual), usual, np.inf)))
        cand = np.flatnonzero(ok & ~np.r_[False, ok[:-1]])
        for k in first_of_runs(book["ts"][cand], params["refractory_ns"]):
            t = int(cand[k])
            r = int(ref[t])
            out.add(ts_event_ns=int(book["ts"][t]), ts_recv_ns=int(book["recv"][t]), kind="withdrawal",
                    side=side, price_nanos=int(touch[r]), size_nanos=int(fell[t]),
                    start_ns=int(book["ts"][r]), end_ns=int(book["ts"][t]),
                    score=float(drop[t] / params["drop_share"]),
                    flags=F_MAYBE_BAD_BOOK if touched_bad[t] else 0,
                    evidence=dict(depth_then_nanos=int(then[t]), depth_now_nanos=int(now[t]),
                                  drop=round(float(drop[t]), 3), levels_pulled=int(pulled[t]),
                                  traded_share=round(float(eaten[t]), 3),
                                  opposite_move_ticks=int(towards[t]), within_ticks=params["within_ticks"],
                                  usual_depth_nanos=int(usual[t])))
    return out
