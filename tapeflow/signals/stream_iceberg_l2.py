"""Icebergs on price-level venues (``tapeflow.signals.iceberg_l2``) over micro-batches.

:class:`StreamingIcebergL2` is registered in ``tapeflow.signals.stream.LIVE_DETECTORS``. Its rows
equal ``detect_tables``' L2 iceberg rows over the whole day, row for row:

* a grid row's refills (``iceberg_l2.traded_at_levels``, ``kernels.signals_hidden.level_refills``)
  read the row before it, the trades received up to it and the ``lag`` rows after it (a refill
  may land in the next grid interval): a row is judged once those rows are out (every row at the
  end of the stream), in order;
* the chains ``iceberg_l2._chains`` keeps in locals are carried per side: per (price, refilled
  amount) the chain's refill count, its last refill's row, the start, the hidden volume, the size
  shown at its start and the bad-book rows counted before it (the batch's flags over the whole
  chain, however long it runs); the quiet period per price; and the other side's refills of the
  last ``mm_window_ns`` (the two-sided look-alike);
* the look-back keeps the rows since ``max(chain_gap_ns, min_refill_gap_ns)`` before the newest
  judged row (the ``depleted`` test reads the touch from a chain's last refill on); a chain whose
  last refill is older is dropped, which the batch does too at its next refill (the gap breaks it).

The batch runs the L2 iceberg only for instruments without order ids (an L3 input gets the L3
iceberg instead): the live one stops for good at the instrument's first ``order_event`` row. An
L3 venue's book is built from its order events, so they arrive before its first grid row and
nothing is emitted. Known differences, as ``tapeflow.signals.stream``: the grid step (hence
``lag``) is the look-back's median step (the day's on a regular grid).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from kernels.signals_hidden import level_refills
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK
from tapeflow.signals import iceberg_l2
from tapeflow.signals.rows import Alerts
from tapeflow.signals.stream import Feed

_TRADE_COLS = ("ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side")
_GRID_COLS = ("ts", "recv", "flags", "bid_p", "bid_s", "ask_p", "ask_s")
_SIDES = ((1, "bid"), (-1, "ask"))


class StreamingIcebergL2:
    """The L2 iceberg of one instrument over micro-batches (picklable)."""

    def __init__(self, venue: str, symbol: str, preset: str | None = None) -> None:
        self.venue, self.symbol, self.preset = venue, symbol, preset
        self.has_order_ids = False
        self.grid: dict[str, np.ndarray] | None = None  # from the day's grid row ``first_row``
        self.first_row = 0
        self.next_row = 1  # the day's first row not judged (row 0 never refills)
        self.bad_before = 0  # bad-book rows of the day before ``first_row``
        self.trades: dict[str, np.ndarray] = {c: np.zeros(0, np.int64) for c in _TRADE_COLS}
        self.trades["aggressor_side"] = np.zeros(0, np.uint8)
        # per side: (price, amount) -> [refills, last refill's day row, start_ns, first refill's ns,
        # hidden volume, shown at start, bad rows before the start]
        self.chains: dict[int, dict[tuple[int, int], list[Any]]] = {1: {}, -1: {}}
        self.quiet_until: dict[int, dict[int, int]] = {1: {}, -1: {}}
        self.refills: dict[int, list[tuple[int, int]]] = {1: [], -1: []}  # recent (ns, amount)

    def add(self, feed: Feed) -> list[pa.Table]:
        """The batch's trades and grid rows in; the new L2 iceberg rows out."""
        if self.has_order_ids or (feed.events is not None and feed.events.num_rows):
            self.has_order_ids, self.grid = True, None  # the L3 iceberg's instrument
            return []
        if feed.trades is not None and feed.trades.num_rows:
            for c in _TRADE_COLS:
                self.trades[c] = np.concatenate([self.trades[c], feed.trades.column(c).to_numpy()])
        g = feed.grid
        if g is not None and len(g["ts"]):
            new = {k: g[k] for k in _GRID_COLS}
            self.grid = new if self.grid is None else {k: np.concatenate([self.grid[k], new[k]])
                                                       for k in new}
        if self.grid is None:
            return []
        book = self.grid
        params = feed.thresholds.for_instrument("iceberg_l2", self.symbol, self.preset)
        step_ns = int(np.median(np.diff(book["ts"]))) if len(book["ts"]) > 1 else 1
        lag = min(iceberg_l2._MAX_LAG_ROWS, -(-int(params["refill_ns"]) // max(step_ns, 1)))
        rows_here = len(book["ts"])
        upto = rows_here if feed.final else rows_here - lag  # look-back rows that can be judged
        lo = self.next_row - self.first_row
        if upto <= lo:
            return []
        out = Alerts(self.venue, self.symbol, iceberg_l2.NAME, params)
        traded = iceberg_l2.traded_at_levels(book, self.trades)
        cells = {}
        for sign, name in _SIDES:
            unexplained, _ = level_refills(book[f"{name}_p"], book[f"{name}_s"], traded[sign], lag)
            vol = traded[sign][lo:upto]
            u = unexplained[lo:upto]
            refill = (vol > 0) & (u > 0) & (u >= params["min_refill_share"] * vol)
            rows, levels = np.nonzero(refill)  # row-major: time order
            cells[sign] = (rows + lo, levels, unexplained)
            self.refills[sign] += [(int(book["ts"][k + lo]), int(round(u[k, j])))
                                   for k, j in zip(rows.tolist(), levels.tolist(), strict=True)]
        bad = self.bad_before + np.cumsum((book["flags"] & F_MAYBE_BAD_BOOK) != 0)
        for sign, name in _SIDES:
            other: dict[int, list[int]] = {}
            for t, amount in self.refills[-sign]:
                other.setdefault(amount, []).append(t)
            self._chains(out, book, bad, sign, name, cells[sign], params, lag,
                         {a: np.asarray(t, np.int64) for a, t in other.items()})
        self.next_row = self.first_row + upto
        self._cut(params)
        table = out.table()
        return [table] if table.num_rows else []

    def _chains(self, out: Alerts, book: dict[str, np.ndarray], bad: np.ndarray, sign: int, name: str,
                cells: tuple[np.ndarray, np.ndarray, np.ndarray], params: dict[str, Any], lag: int,
                other: dict[int, np.ndarray]) -> None:
        # iceberg_l2._chains, with its state carried and rows of the look-back (day row - first_row)
        prices, sizes = book[f"{name}_p"], book[f"{name}_s"]
        touch, ts, recv = prices[:, 0], book["ts"], book["recv"]
        chains, quiet_until = self.chains[sign], self.quiet_until[sign]
        rows, levels, unexplained = cells
        for k, j in zip(rows.tolist(), levels.tolist(), strict=True):
            p = int(prices[k - 1, j])
            key = (p, int(round(unexplained[k, j])))
            t = int(ts[k])
            chain = chains.get(key)
            if chain is not None:
                last = chain[1] - self.first_row
                gap = t - int(ts[last])
                span = touch[last:k + 1]
                depleted = iceberg_l2._longest_run((sign * (span - p) < 0) | (span == 0)) > lag
                if gap < params["min_refill_gap_ns"]:
                    chain[4] += float(unexplained[k, j])
                    continue
                if depleted or gap > params["chain_gap_ns"]:
                    chain = None
            if chain is None:
                chain = [0, 0, int(ts[k - 1]), t, 0.0, float(sizes[k - 1, j]),
                         int(bad[k - 2]) if k >= 2 else self.bad_before]
                chains[key] = chain
            chain[0] += 1
            chain[1] = k + self.first_row
            chain[4] += float(unexplained[k, j])
            ratio = chain[4] / max(chain[5], 1.0)
            if chain[0] < params["min_refills"] or ratio < params["min_hidden_x_shown"]:
                continue
            if t < quiet_until.get(p, t):
                continue
            seen = other.get(key[1], np.zeros(0, np.int64))
            recent = (np.searchsorted(seen, t, side="right")
                      - np.searchsorted(seen, t - params["mm_window_ns"]))
            if params["mm_window_ns"] and recent > 0:
                continue
            quiet_until[p] = t + params["refractory_ns"]
            out.add(ts_event_ns=t, ts_recv_ns=int(recv[k]), kind="iceberg", side=sign, price_nanos=p,
                    size_nanos=int(chain[4]), start_ns=chain[2], end_ns=t,
                    score=chain[0] / params["min_refills"],
                    flags=F_MAYBE_BAD_BOOK if int(bad[k]) > chain[6] else 0,
                    evidence=dict(refills=chain[0], hidden_nanos=int(chain[4]), refill_nanos=key[1],
                                  shown_at_start_nanos=int(chain[5]), hidden_x_shown=round(ratio, 2),
                                  span_s=round((t - chain[3]) / 1e9, 3)))

    def _cut(self, params: dict[str, Any]) -> None:
        assert self.grid is not None
        ts = self.grid["ts"]
        newest = int(ts[self.next_row - 1 - self.first_row])
        horizon = max(params["chain_gap_ns"], params["min_refill_gap_ns"])
        # a chain whose last refill is older than the horizon breaks at its next refill: drop it
        keep = min(int(np.searchsorted(ts, newest - horizon, side="left")),
                   self.next_row - 1 - self.first_row)
        for sign in (1, -1):
            self.chains[sign] = {key: c for key, c in self.chains[sign].items()
                                 if c[1] - self.first_row >= keep}
            self.quiet_until[sign] = {p: t for p, t in self.quiet_until[sign].items() if t > newest}
            since = newest - params["mm_window_ns"]
            self.refills[sign] = [(t, a) for t, a in self.refills[sign] if t > since]
        # the bad-book count before a chain's start row (the row before its first refill)
        keep = max(0, keep - 1)
        if keep <= 0:
            return
        self.bad_before += int(((self.grid["flags"][:keep] & F_MAYBE_BAD_BOOK) != 0).sum())
        self.grid = {k: v[keep:] for k, v in self.grid.items()}
        self.first_row += keep
        kept = self.trades["ts_recv_ns"] > int(self.grid["recv"][0])
        self.trades = {c: v[kept] for c, v in self.trades.items()}
