"""Whale / block prints and parent orders from trades (kernels.signals_windows for the windows).

A print is one aggressor's execution: consecutive trades with the same venue time and aggressor
side. Its size is judged against a causal baseline of earlier prints (median and the
``block_quantile`` quantile of the last ``baseline_trades``): a **block** is above both the
quantile and ``block_x_median`` medians; a **sweep** takes ``sweep_levels`` or more price levels
and ``sweep_x_median`` medians. Either must also stand out from its local flow: at least
``min_local_share`` of the volume printed in the ``local_window_ns`` up to and including it, and,
while the hold check below delays its alert, in the ``local_after_ns`` after it (at most
``hold_ns``: the evidence is complete when the alert comes): an ordinary large print inside a busy
period, which goes on after it, is not a whale (SIMULATOR.md's look-alike).
A **parent order** is same-side aggression over
``parent_window_ns`` whose net volume reaches ``parent_x_median`` medians, is at least
``parent_one_sided`` of the window's volume, and is ``parent_z`` times the RMS of earlier windows;
its same-side prints must average ``parent_min_child_x_median`` medians (read at the window's
start): an institutional meta-order of median-sized children is the institutional detector's.

Given the book's grid (``book``: ``detect._grid_arrays``), a block or sweep is judged again
``hold_ns`` after its print: when the mid has moved ``max_hold_ticks`` or more its way since just
before the print and holds there, it was a price jump's sweep (SIMULATOR.md's spike plant and its
look-alike), not a whale; the alert's time is then the print's plus ``hold_ns`` (when its evidence
completed). ``max_hold_ticks`` 0 turns the check off (alerts at the print, as without a book).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_windows import block_quantiles, flow_windows, trailing_sums
from tapeflow.schemas.records import ASK, BID
from tapeflow.signals.rows import Alerts, first_of_runs

NAME = "whale/1"
_BIN_NS = 1_000_000_000
_LOOKBACK_BLOCKS = 4


def prints(ts_ns: np.ndarray, recv_ns: np.ndarray, price: np.ndarray, size: np.ndarray,
           aggressor: np.ndarray) -> dict[str, np.ndarray]:
    """Aggregate trades (arrival order) into aggressor prints; trades of unknown side are left out."""
    known = (aggressor == BID) | (aggressor == ASK)
    ts, recv, price, size = ts_ns[known], recv_ns[known], price[known], size[known]
    side = np.where(aggressor[known] == BID, 1, -1)
    new = np.ones(len(ts), bool)
    new[1:] = (ts[1:] != ts[:-1]) | (side[1:] != side[:-1])
    start = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    level_change = np.ones(len(ts), bool)
    level_change[1:] = new[1:] | (price[1:] != price[:-1])
    last = np.r_[start[1:], len(ts)] - 1
    return dict(ts=ts[start], recv=np.maximum.reduceat(recv, start) if len(ts) else recv,
                side=side[start], size=np.add.reduceat(size, start) if len(ts) else size,
                levels=np.bincount(group, level_change.astype(np.int64)) if len(ts) else size,
                first_price=price[start], last_price=price[last] if len(ts) else price)


def hold_delay_ns(params: dict[str, Any], book: dict[str, np.ndarray] | None) -> int:
    """How long after its print a block or sweep is decided (0: at the print)."""
    return int(params["hold_ns"]) if book is not None and params["max_hold_ticks"] > 0 else 0


def mid_moves(print_ts: np.ndarray, side: np.ndarray, book: dict[str, np.ndarray], delay_ns: int,
              tick: int) -> tuple[np.ndarray, np.ndarray]:
    """Per print, the mid's move its own way (ticks) from the last two-sided grid row before it to
    the last one at or before ``delay_ns`` after it (NaN where either is missing), and the capture
    time of that later row (the print's evidence is complete then; int64 min where none)."""
    bid, ask = book["bid_p"][:, 0], book["ask_p"][:, 0]
    ok = np.flatnonzero((bid > 0) & (ask > 0))
    ts, mid2 = book["ts"][ok], (bid[ok] + ask[ok]).astype(np.float64)
    before = np.searchsorted(ts, print_ts - 1, side="right") - 1
    after = np.searchsorted(ts, print_ts + delay_ns, side="right") - 1
    change = (mid2[np.maximum(after, 0)] - mid2[np.maximum(before, 0)]) / 2
    move = np.where((before >= 0) & (after >= 0), change * side / max(1, tick), np.nan)
    recv = np.where(after >= 0, book["recv"][ok][np.maximum(after, 0)], np.iinfo(np.int64).min)
    return move, recv


def detect(trades: dict[str, np.ndarray], params: dict[str, Any], venue: str, symbol: str, *,
           judged_from_ns: int | None = None, book: dict[str, np.ndarray] | None = None,
           tick: int = 1) -> Alerts:
    """Whale alerts of one instrument from its trades (arrays of the ``trade`` record).

    Args:
        book: the instrument's grid snapshots (``detect._grid_arrays``: ``ts``, ``bid_p``,
            ``ask_p``), for the hold check (``max_hold_ticks``); None: no check. ``tick``: its
            price increment.
        judged_from_ns: only alerts at or after this instant are wanted (the live stage, whose
            look-back starts on a whole baseline block, with ``refractory_ns`` 0): earlier ones are
            left out, and the print baseline is computed from the whole blocks the prints from the
            last one before it look back on, not for every print.
    """
    out = Alerts(venue, symbol, NAME, params)
    p = prints(trades["ts_event_ns"], trades["ts_recv_ns"], trades["price_nanos"], trades["size_nanos"],
               trades["aggressor_side"])
    if len(p["ts"]) == 0:
        return out
    block = max(1, params["baseline_trades"] // _LOOKBACK_BLOCKS)
    first = 0
    delay = hold_delay_ns(params, book)
    if judged_from_ns is not None:
        # a parent's bin reads the baseline of the last print at or before it: from that print on
        # (a block's or sweep's alert comes ``delay`` after its print)
        later = np.flatnonzero(p["ts"] >= judged_from_ns - _BIN_NS - delay)
        last_before = (int(later[0]) if len(later) else len(p["ts"])) - 1
        first = max(0, (last_before // block - _LOOKBACK_BLOCKS) * block)
    base = np.full((len(p["ts"]), 2), np.nan)
    base[first:] = block_quantiles(p["size"][first:].astype(np.float64), block, _LOOKBACK_BLOCKS,
                                   (0.5, params["block_quantile"]))
    median, high = base[:, 0], base[:, 1]
    size = p["size"].astype(np.float64)
    known = np.isfinite(median) & (median > 0)
    safe_median = np.where(known, median, 1.0)
    block_ratio = np.minimum(size / np.where(known, high, np.inf),
                             size / (params["block_x_median"] * safe_median))
    sweep_ratio = np.where(p["levels"] >= params["sweep_levels"],
                           size / (params["sweep_x_median"] * safe_median), 0.0)
    before = trailing_sums(p["ts"], size, params["local_window_ns"])
    after = _leading_sums(p["ts"], size, min(int(params["local_after_ns"]), delay))
    local_share = size / (size + before + after)
    stands_out = local_share >= params["min_local_share"]  # a gate, not part of the score
    ratio = np.where(known & stands_out, np.maximum(block_ratio, sweep_ratio), 0.0)
    found = np.flatnonzero(ratio >= 1.0)
    held = np.full(len(size), np.nan)
    recv = p["recv"].copy()
    if delay and len(found):
        # a jump's sweep: the mid moved its way and held there (a gate, not part of the score)
        held[found], row_recv = mid_moves(p["ts"][found], p["side"][found], book, delay, tick)
        recv[found] = np.maximum(recv[found], row_recv)
        found = found[~(held[found] >= params["max_hold_ticks"])]
    events = [(int(p["ts"][i]) + delay, "sweep" if sweep_ratio[i] >= block_ratio[i] else "block", i)
              for i in found]
    events += _parents(p, median, params)
    if judged_from_ns is not None:
        events = [e for e in events if e[0] >= judged_from_ns]
    events.sort(key=lambda e: e[:2])  # parents carry dicts: two at one instant must not be compared
    by_side: dict[int, list[tuple[int, str, Any]]] = {1: [], -1: []}
    for ev in events:
        by_side[_side_of(ev, p)].append(ev)
    for side, evs in by_side.items():
        keep = first_of_runs(np.array([e[0] for e in evs], np.int64), params["refractory_ns"])
        for k in keep:
            t, style, what = evs[k]
            if style == "parent":
                out.add(**{k: v for k, v in what.items() if k != "side"}, kind="whale", side=side)
                continue
            i = what
            at = int(p["ts"][i])
            evidence = dict(style=style, levels=int(p["levels"][i]),
                            size_x_median=round(float(size[i] / median[i]), 2),
                            local_share=round(float(local_share[i]), 3),
                            baseline_median_nanos=int(median[i]), baseline_high_nanos=int(high[i]))
            if delay:
                evidence["held_ticks"] = None if np.isnan(held[i]) else round(float(held[i]), 2)
            out.add(ts_event_ns=t, ts_recv_ns=int(recv[i]), kind="whale", side=side,
                    price_nanos=int(p["last_price"][i]), size_nanos=int(p["size"][i]), start_ns=at, end_ns=at,
                    score=float(ratio[i]), evidence=evidence)
    return out


def _leading_sums(ts: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    """Per print, the sum of ``x`` over the prints strictly after it and strictly before it +
    ``window`` (zeros for a window of 0): ``trailing_sums`` on the reversed, negated clock."""
    if window <= 0:
        return np.zeros(len(ts))
    return trailing_sums(-ts[::-1], x[::-1], window - 1)[::-1]


def _side_of(ev: tuple[int, str, Any], p: dict[str, np.ndarray]) -> int:
    return int(ev[2]["side"]) if ev[1] == "parent" else int(p["side"][ev[2]])


def _parents(p: dict[str, np.ndarray], median: np.ndarray, params: dict[str, Any]
             ) -> list[tuple[int, str, Any]]:
    t0 = int(p["ts"][0]) // _BIN_NS
    bins = (p["ts"] // _BIN_NS - t0).astype(np.int64)
    n = int(bins[-1]) + 1
    size = p["size"].astype(np.float64)
    signed = np.bincount(bins, size * p["side"], minlength=n)
    gross = np.bincount(bins, size, minlength=n)
    window = max(1, params["parent_window_ns"] // _BIN_NS)
    baseline = max(1, params["parent_baseline_ns"] // _BIN_NS)
    net, total, rms = flow_windows(signed, gross, window, baseline)
    buys, sells, _ = flow_windows(np.bincount(bins, p["side"] > 0, minlength=n).astype(np.float64),
                                  np.bincount(bins, p["side"] < 0, minlength=n).astype(np.float64), window, 1)
    last_print = np.searchsorted(bins, np.arange(n), side="right") - 1
    med = np.where(last_print >= 0, median[np.maximum(last_print, 0)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        # an institutional meta-order works its parent in children of about one median print
        # (tapeflow.signals.institutional claims it): a whale's children are larger. Judged against
        # the median before the window: a long parent's own children pull the rolling median down
        same_count = np.where(net > 0, buys, sells)
        med_before = med[np.maximum(0, np.arange(n) - window + 1)]
        child_x = (total + np.abs(net)) / 2 / np.maximum(same_count, 1) / med_before
        ratio = np.minimum.reduce([
            np.abs(net) / (params["parent_x_median"] * med),
            np.abs(net) / np.maximum(total, 1e-9) / params["parent_one_sided"],
            np.abs(net) / (params["parent_z"] * rms),
        ])
        large_children = child_x >= params["parent_min_child_x_median"]  # a gate, not part of the score
    ratio = np.where(np.isfinite(ratio), ratio, 0.0)
    on = (ratio >= 1.0) & large_children
    rising = on & ~np.r_[False, on[:-1]]
    events = []
    for b in np.flatnonzero(rising):
        i = int(last_print[b])
        side = 1 if net[b] > 0 else -1
        lo = np.searchsorted(bins, b - window + 1)
        same = np.flatnonzero(p["side"][lo:i + 1] == side) + lo
        start = int(p["ts"][same[0]]) if len(same) else int(p["ts"][i])
        t = int(p["ts"][i])
        events.append((t, "parent", dict(
            ts_event_ns=t, ts_recv_ns=int(p["recv"][i]), size_nanos=int(abs(net[b])), start_ns=start,
            end_ns=t,
            score=float(ratio[b]), side=side,
            evidence=dict(style="parent", window_s=window, net_x_median=round(float(abs(net[b]) / med[b]), 2),
                          one_sided=round(float(abs(net[b]) / total[b]), 3),
                          child_x_median=round(float(child_x[b]), 2),
                          net_z=round(float(abs(net[b]) / rms[b]), 2) if rms[b] > 0 else None))))
    return events
