"""Icebergs on price-level venues (no order ids): executed volume at a level beyond its displayed
size, without the level depleting.

On the book grid, each interval's trades are put on the level of the row before that they
traded against (their price on the resting side: the aggressor's opposite where the trade says,
else whichever side shows that price). ``kernels.signals_hidden.level_refills`` (JAX) gives the
part of that volume the level's displayed size does not account for: an iceberg's peak is filled
and the next one shows at once, so the level trades and does not fall. An interval where at
least ``min_refill_share`` of the volume traded there is unaccounted for is a refill (the size
after is the largest within ``refill_ns``: a refill can land in the next grid interval). Refills at
one price and side chain while the level stays displayed (the touch never passes through it) and
come ``min_refill_gap_ns``..``chain_gap_ns`` apart; an alert opens at the ``min_refills``-th when
the chain's unaccounted volume is at least ``min_hidden_x_shown`` times the size displayed at its
start; then ``refractory_ns`` of quiet at that price.

The look-alike, traders joining a price one after another, shows each join as the level growing
before it trades: the fall explains the volume and the joins run out, so the level depletes. A
join and a fill in one grid interval look like a refill; the chain needs several.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_hidden import level_refills
from tapeflow.schemas.records import ASK, BID, F_MAYBE_BAD_BOOK
from tapeflow.signals.rows import Alerts

NAME = "iceberg_l2/1"
_MAX_LAG_ROWS = 10  # a book with one row per change has no grid step: look no further than this


def traded_at_levels(book: dict[str, np.ndarray], tr: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Per side (+1 bids, -1 asks), (grid rows, levels): at row ``k``, level ``j``, the volume
    traded against that side at the price of level ``j`` in row ``k - 1``, between the two rows."""
    g, levels = book["bid_p"].shape
    row = np.searchsorted(book["recv"], tr["ts_recv_ns"], side="left")
    ok = (row >= 1) & (row < g)
    out = {}
    for sign, prices, sizes, aggressor in ((1, book["bid_p"], book["bid_s"], ASK),
                                           (-1, book["ask_p"], book["ask_s"], BID)):
        k = row[ok]
        p = tr["price_nanos"][ok]
        eq = (prices[k - 1] == p[:, None]) & (sizes[k - 1] > 0)
        mine = eq.any(axis=1) & ((tr["aggressor_side"][ok] == aggressor)
                                 | ((tr["aggressor_side"][ok] != BID) & (tr["aggressor_side"][ok] != ASK)))
        traded = np.zeros((g, levels))
        np.add.at(traded, (k[mine], eq[mine].argmax(axis=1)), tr["size_nanos"][ok][mine].astype(np.float64))
        out[sign] = traded
    return out


def detect(tr: dict[str, np.ndarray], book: dict[str, np.ndarray], params: dict[str, Any], venue: str,
           symbol: str) -> Alerts:
    """L2 iceberg alerts of one instrument (``tr``, ``book`` as in :func:`tapeflow.signals.hidden.detect`)."""
    out = Alerts(venue, symbol, NAME, params)
    if not len(book["recv"]) or not len(tr["price_nanos"]):
        return out
    traded = traded_at_levels(book, tr)
    step_ns = int(np.median(np.diff(book["ts"]))) if len(book["ts"]) > 1 else 1
    lag = min(_MAX_LAG_ROWS, -(-int(params["refill_ns"]) // max(step_ns, 1)))
    cells = {}
    for sign, name in ((1, "bid"), (-1, "ask")):
        unexplained, _ = level_refills(book[f"{name}_p"], book[f"{name}_s"], traded[sign], lag)
        vol = traded[sign]
        refill = (vol > 0) & (unexplained > 0) & (unexplained >= params["min_refill_share"] * vol)
        rows, levels = np.nonzero(refill)  # row-major: time order
        cells[sign] = (rows, levels, unexplained)
    for sign, name in ((1, "bid"), (-1, "ask")):
        rows, levels, unexplained = cells[sign]
        other_rows, other_levels, other_u = cells[-sign]
        # the other side's refills by amount: a market maker re-quotes both sides alike
        other = {}
        for k, j in zip(other_rows.tolist(), other_levels.tolist(), strict=True):
            other.setdefault(int(round(other_u[k, j])), []).append(int(book["ts"][k]))
        _chains(out, book, sign, book[f"{name}_p"], book[f"{name}_s"], rows, levels, unexplained, params, lag,
                {a: np.asarray(t, np.int64) for a, t in other.items()})
    return out


def _longest_run(flags: np.ndarray) -> int:
    if not flags.any():
        return 0
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _chains(out: Alerts, book: dict[str, np.ndarray], sign: int, prices: np.ndarray, sizes: np.ndarray,
            rows: np.ndarray, levels: np.ndarray, unexplained: np.ndarray, params: dict[str, Any],
            lag: int, other: dict[int, np.ndarray]) -> None:
    touch = prices[:, 0]
    ts, recv = book["ts"], book["recv"]
    # (price, refilled amount) -> refill rows of the open chain: an iceberg refills one peak size
    chains: dict[tuple[int, int], list[int]] = {}
    hidden: dict[tuple[int, int], float] = {}
    shown_at_start: dict[tuple[int, int], float] = {}
    quiet_until: dict[int, int] = {}
    for k, j in zip(rows.tolist(), levels.tolist(), strict=True):  # a few per minute: a loop is fine
        p = int(prices[k - 1, j])
        key = (p, int(round(unexplained[k, j])))
        t = int(ts[k])
        chain = chains.get(key, [])
        if chain:
            last = chain[-1]
            gap = t - int(ts[last])
            # the level depleted in between: the touch passed through its price for longer than
            # a refill takes (an iceberg's peak alone at the touch empties it for a moment)
            span = touch[last:k + 1]
            depleted = _longest_run((sign * (span - p) < 0) | (span == 0)) > lag
            if gap < params["min_refill_gap_ns"]:
                hidden[key] += float(unexplained[k, j])
                continue
            if depleted or gap > params["chain_gap_ns"]:
                chain = []
        if not chain:
            hidden[key] = 0.0
            shown_at_start[key] = float(sizes[k - 1, j])
        chain.append(k)
        chains[key] = chain
        hidden[key] += float(unexplained[k, j])
        ratio = hidden[key] / max(shown_at_start[key], 1.0)
        if len(chain) < params["min_refills"] or ratio < params["min_hidden_x_shown"]:
            continue
        if t < quiet_until.get(p, t):
            continue
        seen = other.get(key[1], np.zeros(0, np.int64))
        recent = np.searchsorted(seen, t, side="right") - np.searchsorted(seen, t - params["mm_window_ns"])
        if params["mm_window_ns"] and recent > 0:
            continue  # the other side refilled the same amount meanwhile: two-sided quoting
        quiet_until[p] = t + params["refractory_ns"]
        first = chain[0]
        bad = int(np.bitwise_or.reduce(book["flags"][first - 1:k + 1])) & F_MAYBE_BAD_BOOK
        out.add(ts_event_ns=t, ts_recv_ns=int(recv[k]), kind="iceberg", side=sign, price_nanos=p,
                size_nanos=int(hidden[key]), start_ns=int(ts[first - 1]), end_ns=t,
                score=len(chain) / params["min_refills"],
                flags=F_MAYBE_BAD_BOOK if bad else 0,
                evidence=dict(refills=len(chain), hidden_nanos=int(hidden[key]), refill_nanos=key[1],
                              shown_at_start_nanos=int(shown_at_start[key]), hidden_x_shown=round(ratio, 2),
                              span_s=round((t - int(ts[first])) / 1e9, 3)))
