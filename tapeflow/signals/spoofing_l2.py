"""Spoofing / layering on price-level venues (no order ids): size that appears behind the touch
and vanishes again with no trade at its price, on one side only.

From the book grid and the trades alone. Per side, ``kernels.signals_spoofing_l2.level_jumps``
(JAX) gives how much each level's size grew in one grid step; a jump of at least
``min_size_x_depth`` times the usual depth at the touch (``walls.usual_depth``), ``min_ticks``..
``max_ticks`` behind its side's touch, is a candidate layer unless it exceeds ``max_size_x_depth``
times that depth (one order that large is a wall; one pulled at once is the wall's look-alike).
``first_fall`` (JAX) finds the row, within ``max_life_ns``, where the size at that price has fallen
back by ``vanish_share`` of the jump, and it went in one grid step: at least
``min_step_drop_share`` of the jump left between two rows, or at least ``min_step_x_depth`` usual
depths did (one of several layers stacked at one price and cancelled apart; a cancel either way:
orders leaving one by one shrink a level step by step). The layer was a spoof when, between its
appearance and its vanishing:

* the trades at its price add to at most ``max_traded_share`` of the jump (it was pulled, not
  filled);
* the other side traded (an aggressor on the layer's side) at most ``max_after_fill_ns`` before it
  vanished: the genuine order the layers were there to help (0 turns this off);
* the other side showed no jump of the same threshold within ``mm_window_ns`` of its appearance:
  a market maker quoting both sides puts up and pulls large size on both sides together (0 turns
  this off).

The first such vanishing of a side opens an alert at the vanishing row (side = the layered
size's, price = its level), then ``refractory_ns`` of quiet on that side for the layers that
appeared within ``burst_ns`` of it (one layering); a layer that appeared apart is another layering
and alerts (0: all quiet).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_spoofing_l2 import first_fall, level_jumps
from tapeflow.schemas.records import ASK, BID, F_MAYBE_BAD_BOOK
from tapeflow.signals.rows import Alerts, first_of_runs
from tapeflow.signals.walls import usual_depth

NAME = "spoofing_l2/1"


def _at(prices_row: np.ndarray, sizes_row: np.ndarray, price: int) -> float:
    return float(sizes_row[(prices_row == price) & (sizes_row > 0)].sum())



def _one_per_burst(vanish_ns: np.ndarray, appear_ns: np.ndarray, refractory_ns: int, burst_ns: int
                   ) -> list[int]:
    """Indices (in vanishing order) of the layers that open an alert: one within ``refractory_ns``
    of an alert is quiet when it appeared within ``burst_ns`` of that alert's layer (the same
    layering: an episode's layers go up within tens of ms), not when it appeared apart (another
    layering beside it). ``burst_ns`` 0: every layer within ``refractory_ns`` is quiet."""
    if not burst_ns:
        return first_of_runs(vanish_ns, refractory_ns).tolist()
    keep: list[int] = []
    for n, (tv, ta) in enumerate(zip(vanish_ns.tolist(), appear_ns.tolist(), strict=True)):
        if any(tv - vanish_ns[j] < refractory_ns and abs(ta - appear_ns[j]) <= burst_ns for j in keep):
            continue
        keep.append(n)
    return keep


def _candidates(prices: np.ndarray, sizes: np.ndarray, sign: int, tick: int, threshold: np.ndarray,
                lo_ticks: int, hi_ticks: int, cap: float = np.inf
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, levels, jumps) of the jumps of ``threshold``..``cap`` times it ``lo_ticks..hi_ticks``
    behind the touch."""
    jumps = level_jumps(prices, sizes)
    behind = sign * (prices[:, :1] - prices) // max(tick, 1)
    big = ((jumps >= threshold[:, None]) & (jumps <= cap * threshold[:, None])
           & (behind >= lo_ticks) & (behind <= hi_ticks) & (prices[:, :1] > 0))
    rows, levels = np.nonzero(big)
    return rows, levels, jumps[rows, levels]


def detect(book: dict[str, np.ndarray], tr: dict[str, np.ndarray], tick: int, params: dict[str, Any],
           venue: str, symbol: str) -> Alerts:
    """Spoofing alerts of one instrument from its level book and trades.

    Args:
        book: grid arrays ``ts``, ``recv``, ``flags`` (G,) and ``bid_p``/``bid_s``/``ask_p``/``ask_s``
            (G, levels), best first, size 0 where a level is absent.
        tr: trade columns ``ts_recv_ns``, ``price_nanos``, ``size_nanos``, ``aggressor_side``.
        tick: the price increment.
        params: the ``spoofing_l2`` thresholds.
        venue, symbol: the instrument.
    """
    out = Alerts(venue, symbol, NAME, params)
    g = len(book["recv"])
    if g < 2:
        return out
    ts, recv = book["ts"], book["recv"]
    threshold = params["min_size_x_depth"] * usual_depth(book)
    threshold = np.where(np.isnan(threshold) | (threshold <= 0), np.inf, threshold)
    step_ns = max(int(np.median(np.diff(ts))), 1)
    window = max(1, -(-int(params["max_life_ns"]) // step_ns))
    order = np.argsort(tr["ts_recv_ns"], kind="stable")
    t_recv, t_px = tr["ts_recv_ns"][order], tr["price_nanos"][order]
    t_size, t_agg = tr["size_nanos"][order].astype(np.float64), tr["aggressor_side"][order]
    cands = {sign: _candidates(book[f"{name}_p"], book[f"{name}_s"], sign, tick, threshold,
                               params["min_ticks"], params["max_ticks"],
                               params["max_size_x_depth"] / params["min_size_x_depth"])
             for sign, name in ((1, "bid"), (-1, "ask"))}
    # the other side's large size, anywhere from its touch to max_ticks: a market maker quotes at it
    two_sided = {sign: np.sort(ts[_candidates(book[f"{name}_p"], book[f"{name}_s"], sign, tick, threshold, 0,
                                              params["max_ticks"])[0]])
                 for sign, name in ((1, "bid"), (-1, "ask"))}
    for sign, name, aggressor in ((1, "bid", BID), (-1, "ask", ASK)):
        rows, levels, jumps = cands[sign]
        prices, sizes = book[f"{name}_p"], book[f"{name}_s"]
        price = prices[rows, levels]
        at_most = sizes[rows, levels] - params["vanish_share"] * jumps
        fall = first_fall(prices, sizes, rows, price, at_most, window)
        keep = []
        for i in np.flatnonzero(fall > 0).tolist():
            k, v = int(rows[i]), int(rows[i] + fall[i])
            # a cancel takes the size at once; orders leaving one by one shrink a level step by step
            step = _at(prices[v - 1], sizes[v - 1], price[i]) - _at(prices[v], sizes[v], price[i])
            # ... or one of several layers stacked at one price, cancelled apart: a one-step drop
            # itself large (``min_step_x_depth`` usual depths)
            unit = params["min_step_x_depth"] * threshold[k] / params["min_size_x_depth"]
            if step < params["min_step_drop_share"] * jumps[i] and not (unit > 0 and step >= unit):
                continue
            lo, hi = np.searchsorted(t_recv, [recv[k - 1], recv[v]], side="right")
            at_price = t_size[lo:hi][t_px[lo:hi] == price[i]].sum()
            if at_price > params["max_traded_share"] * jumps[i]:
                continue
            if params["max_after_fill_ns"]:
                # an aggressor on the layers' side traded against the other side's genuine order
                mine = (t_agg[lo:hi] == aggressor) | ((t_agg[lo:hi] != BID) & (t_agg[lo:hi] != ASK))
                fills = t_recv[lo:hi][mine]
                if not (fills >= recv[v] - params["max_after_fill_ns"]).any():
                    continue
            other = two_sided[-sign]
            mm = params["mm_window_ns"]
            if mm and np.searchsorted(other, ts[k] + mm, side="right") > np.searchsorted(other, ts[k] - mm):
                continue
            keep.append(i)
        keep_a = np.asarray(keep, np.int64)
        vanish = rows[keep_a] + fall[keep_a] if len(keep_a) else np.zeros(0, np.int64)
        by_time = np.argsort(vanish, kind="stable")
        keep_a, vanish = keep_a[by_time], vanish[by_time]
        for n in _one_per_burst(ts[vanish], ts[rows[keep_a]], params["refractory_ns"], params["burst_ns"]):
            i, k, v = int(keep_a[n]), int(rows[keep_a[n]]), int(vanish[n])
            bad = int(np.bitwise_or.reduce(book["flags"][k - 1:v + 1])) & F_MAYBE_BAD_BOOK
            x_depth = float(jumps[i] / (threshold[k] / params["min_size_x_depth"]))
            out.add(ts_event_ns=int(ts[v]), ts_recv_ns=int(recv[v]), kind="spoofing", side=sign,
                    price_nanos=int(price[i]), size_nanos=int(jumps[i]), start_ns=int(ts[k]),
                    end_ns=int(ts[v]),
                    score=x_depth / params["min_size_x_depth"], flags=F_MAYBE_BAD_BOOK if bad else 0,
                    evidence=dict(size_x_depth=round(x_depth, 2),
                                  ticks_behind=sign * (int(prices[k, 0]) - int(price[i])) // max(tick, 1),
                                  life_ms=round((int(ts[v]) - int(ts[k])) / 1e6, 1)))
    return out
