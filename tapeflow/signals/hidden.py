"""Hidden executions from trades and the level book only: prints inside the spread, or larger than
the size displayed at their price.

No order ids and no trade types are read: a price-level venue gives neither. A print (trades at
one venue time and price, summed) is judged against the book row received before it
(``kernels.signals_hidden.hidden_flags``, JAX):

* strictly inside that row's spread: nobody displayed that price, so the resting side was hidden
  (a midpoint or non-displayed limit order);
* at a displayed price but for more than ``beyond_x_shown`` times what was displayed there: the
  excess rested hidden behind the display.

A book sampled on a grid is stale by up to one interval: a displayed order that improved the
touch and traded before the next row looks hidden. The row after the print confirms: the price
still inside the spread (or still displayed, for a print beyond the display) scores 2, an
unconfirmed print 1; ``require_after`` drops the unconfirmed ones. Side: the hidden resting side,
the opposite of the aggressor where the trade says; else the quote rule (above the mid the buyer
was the aggressor, so the hidden order was an ask).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_hidden import hidden_flags
from tapeflow.schemas.records import ASK, BID, F_MAYBE_BAD_BOOK
from tapeflow.signals.rows import Alerts

NAME = "hidden/1"


def prints(tr: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Trades merged into prints: consecutive trades (arrival order) at one venue time, price and
    aggressor side; per print its first trade's times, the price, the summed size and the side."""
    order = np.argsort(tr["ts_recv_ns"], kind="stable")
    ts, px, ag = tr["ts_event_ns"][order], tr["price_nanos"][order], tr["aggressor_side"][order]
    new = np.ones(len(ts), bool)
    new[1:] = (ts[1:] != ts[:-1]) | (px[1:] != px[:-1]) | (ag[1:] != ag[:-1])
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(ts)] - 1
    size = np.add.reduceat(tr["size_nanos"][order], starts) if len(starts) else np.zeros(0, np.int64)
    return {"ts_event_ns": ts[starts], "ts_recv_ns": tr["ts_recv_ns"][order][ends], "price_nanos": px[starts],
            "size_nanos": size.astype(np.int64), "aggressor_side": ag[starts], "trades": ends - starts + 1}


def detect(tr: dict[str, np.ndarray], book: dict[str, np.ndarray], params: dict[str, Any], venue: str,
           symbol: str) -> Alerts:
    """Hidden-execution alerts of one instrument.

    Args:
        tr: trade columns (``ts_event_ns``, ``ts_recv_ns``, ``price_nanos``, ``size_nanos``,
            ``aggressor_side``); nothing else of a trade is read.
        book: the level book (``tapeflow.signals.detect._grid_arrays``: ``recv``, ``flags``,
            ``bid_p``, ``bid_s``, ``ask_p``, ``ask_s``), on a grid or one row per book change.
        params: the ``hidden`` thresholds.
        venue, symbol: the instrument.
    """
    out = Alerts(venue, symbol, NAME, params)
    pr = prints(tr)
    if not len(pr["price_nanos"]) or not len(book["recv"]):
        return out
    before = np.searchsorted(book["recv"], pr["ts_recv_ns"], side="left") - 1
    after = np.searchsorted(book["recv"], pr["ts_recv_ns"], side="left")
    after = np.where(after < len(book["recv"]), after, -1)
    inside_b, inside_a, shown = hidden_flags(pr["price_nanos"], before, after, book["bid_p"], book["bid_s"],
                                             book["ask_p"], book["ask_s"])
    size = pr["size_nanos"].astype(np.float64)
    beyond = ~inside_b & (shown > 0) & (size > params["beyond_x_shown"] * shown)
    # a print beyond the display is confirmed when its price is still displayed after it
    rb, ra = np.maximum(before, 0), np.maximum(after, 0)
    p = pr["price_nanos"]
    still = (after >= 0) & (((book["bid_p"][ra] == p[:, None]) & (book["bid_s"][ra] > 0)).any(axis=1)
                            | ((book["ask_p"][ra] == p[:, None]) & (book["ask_s"][ra] > 0)).any(axis=1))
    confirmed = np.where(inside_b, inside_a, still)
    keep = (inside_b | beyond) & (confirmed | (params["require_after"] == 0))
    mid2 = book["bid_p"][rb, 0] + book["ask_p"][rb, 0]
    for i in np.flatnonzero(keep).tolist():
        side = _resting_side(int(pr["aggressor_side"][i]), int(p[i]) * 2 - int(mid2[i]), bool(inside_b[i]),
                             int(p[i]) <= int(book["bid_p"][rb[i], 0]))
        r = int(rb[i])
        out.add(ts_event_ns=int(pr["ts_event_ns"][i]), ts_recv_ns=int(pr["ts_recv_ns"][i]), kind="hidden",
                side=side, price_nanos=int(p[i]), size_nanos=int(pr["size_nanos"][i]),
                start_ns=int(pr["ts_event_ns"][i]), end_ns=int(pr["ts_event_ns"][i]),
                score=2.0 if confirmed[i] else 1.0,
                flags=F_MAYBE_BAD_BOOK if int(book["flags"][r]) & F_MAYBE_BAD_BOOK else 0,
                evidence=dict(rule="inside" if inside_b[i] else "beyond_display",
                              bid_nanos=int(book["bid_p"][r, 0]), ask_nanos=int(book["ask_p"][r, 0]),
                              shown_nanos=int(shown[i]), trades=int(pr["trades"][i]),
                              book_age_ms=round((int(pr["ts_recv_ns"][i]) - int(book["recv"][r])) / 1e6, 3),
                              confirmed=bool(confirmed[i])))
    return out


def _resting_side(aggressor: int, from_mid: int, inside: bool, at_or_below_bid: bool) -> int:
    if aggressor == BID:
        return -1
    if aggressor == ASK:
        return 1
    if not inside:
        return 1 if at_or_below_bid else -1
    return -1 if from_mid > 0 else (1 if from_mid < 0 else 0)
