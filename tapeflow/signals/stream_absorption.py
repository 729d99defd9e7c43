"""Absorption (``tapeflow.signals.absorption``) over micro-batches.

:class:`StreamingAbsorption` is registered in ``tapeflow.signals.stream.LIVE_DETECTORS``. It keeps a
look-back of the instrument's grid rows and trades and, per batch, runs the batch statistics
(``absorption.side_windows``) over it, judging each grid row once, in order, so its rows equal
``detect_tables``' over the whole day, row for row:

* the look-back starts on a whole baseline block of the day (300 grid rows), at least the
  ``_LOOKBACK_BLOCKS`` (8) blocks before the block of the first row not judged and at least one
  ``window`` of rows before that row: each new row's usual depth (``block_quantiles`` over the
  blocks before its own) and its held volume and pushes (the run's rows within the window) read
  exactly the day's values;
* what a run at one touch price carries from before the look-back (its length, the most size the
  price showed since it became the touch) is carried per side at the look-back's first row and
  folded into the look-back's first run;
* the runs and refractory period of ``one_per_run`` are carried per side (the last alert's time,
  whether a run is open and whether it has alerted);
* each block's usual depth is computed once per side, when the block first shows, from the
  blocks before it (``withdrawal._median``: ``block_quantiles``' arithmetic bit for bit), not
  over the whole look-back each batch (that was ~70 % of the detector's cost).

A grid row is judged when it arrives: its volume is the trades received up to its capture time,
which arrive with it. Known differences, as ``tapeflow.signals.stream``: the price increment is the
finest gap seen so far (evidence only); the grid step is the look-back's median step (the day's on
a regular grid).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.signals import absorption
from tapeflow.signals.rows import Alerts
from tapeflow.signals.stream import Feed
from tapeflow.signals.withdrawal import _median

_BLOCK = absorption._BASELINE_ROWS
_LOOKBACK_BLOCKS = absorption._LOOKBACK_BLOCKS
_TRADE_COLS = ("ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side")
_GRID_COLS = ("ts", "recv", "flags", "bid_p", "bid_s", "ask_p", "ask_s")


class StreamingAbsorption:
    """Absorption of one instrument over micro-batches (picklable)."""

    def __init__(self, venue: str, symbol: str, preset: str | None = None) -> None:
        self.venue, self.symbol, self.preset = venue, symbol, preset
        self.grid: dict[str, np.ndarray] | None = None  # from the day's grid row ``first_row``
        self.first_row = 0
        self.next_row = 0  # the day's first grid row not judged
        self.trades: dict[str, np.ndarray] = {c: np.zeros(0, np.int64) for c in _TRADE_COLS}
        self.trades["aggressor_side"] = np.zeros(0, np.uint8)
        # per side, the run at the look-back's first row: (its length in rows, its peak shown size)
        self.carry: dict[int, tuple[int, float] | None] = {1: None, -1: None}
        # per side: [last alert's time or None, a run is open, the open run has alerted]
        self.runs: dict[int, list[Any]] = {}
        self.usual: dict[int, dict[int, float]] = {1: {}, -1: {}}  # per side, block -> usual depth

    def add(self, feed: Feed) -> list[pa.Table]:
        """The batch's trades and grid rows in; the new absorption rows out."""
        if feed.trades is not None and feed.trades.num_rows:
            for c in _TRADE_COLS:
                self.trades[c] = np.concatenate([self.trades[c], feed.trades.column(c).to_numpy()])
        g = feed.grid
        if g is None or not len(g["ts"]):
            return []
        new = {k: g[k] for k in _GRID_COLS}
        self.grid = new if self.grid is None else {k: np.concatenate([self.grid[k], new[k]]) for k in new}
        book = self.grid
        if self.first_row + len(book["ts"]) < 2:
            return []  # the batch detector judges nothing on fewer than two rows
        params = feed.thresholds.for_instrument("absorption", self.symbol, self.preset)
        step = absorption.grid_step_ns(book["ts"])
        out = Alerts(self.venue, self.symbol, absorption.NAME, params)
        windows = {}
        for side in (1, -1):
            w = absorption.side_windows(book, self.trades, side, params, step, usual=self._usual(side))
            self._fold_carry(side, w, params)
            windows[side] = w
            state = self.runs.setdefault(side, [None, False, False])
            for t in range(self.next_row - self.first_row, len(book["ts"])):
                if not w["ok"][t]:
                    state[1] = False
                    continue
                if not state[1]:
                    state[1], state[2] = True, False
                ts = int(book["ts"][t])
                if not state[2] and (state[0] is None or ts - state[0] >= params["refractory_ns"]):
                    absorption.add_alert(out, book, w, t, side, params, feed.tick)
                    state[0], state[2] = ts, True
        self.next_row = self.first_row + len(book["ts"])
        self._cut(windows)
        table = out.table()
        return [table] if table.num_rows else []

    def _usual(self, side: int) -> np.ndarray:
        """Per look-back row, its block's usual depth: known blocks from the cache, a new one
        computed once where every block it looks back on is in the look-back (or the day's
        start); NaN for the old rows whose blocks reach before the look-back (judged already)."""
        assert self.grid is not None
        best = self.grid["bid_s" if side == 1 else "ask_s"][:, 0].astype(np.float64)
        best = np.where(best > 0, best, np.nan)
        known = self.usual[side]
        n = len(best)
        out = np.empty(n)
        first_block = self.first_row // _BLOCK
        for block in range(first_block, (self.first_row + n - 1) // _BLOCK + 1):
            value = known.get(block)
            if value is None:
                lo = max(0, block - _LOOKBACK_BLOCKS) * _BLOCK
                if lo >= self.first_row or self.first_row == 0:
                    value = _median(best[lo - self.first_row:block * _BLOCK - self.first_row])
                    known[block] = value
                else:
                    value = float("nan")
            a = max(0, block * _BLOCK - self.first_row)
            out[a:min(n, (block + 1) * _BLOCK - self.first_row)] = value
        for block in [b for b in known if b < first_block]:
            del known[block]
        return out

    def _fold_carry(self, side: int, w: dict[str, Any], params: dict[str, Any]) -> None:
        # the look-back's first run began before it: its length and peak reach back further
        carry = self.carry[side]
        if carry is None:
            return
        touch = w["touch"]
        changed = np.flatnonzero(touch[1:] != touch[:-1])
        end = int(changed[0]) + 1 if len(changed) else len(touch)
        run, peak = carry
        w["run"], w["peak"] = np.array(w["run"]), np.array(w["peak"])  # JAX's arrays are read-only
        w["run"][:end] += run - 1
        w["peak"][:end] = np.maximum(w["peak"][:end], peak)
        w["ok"] = absorption.ok_rows(w, params)

    def _cut(self, windows: dict[int, dict[str, Any]]) -> None:
        assert self.grid is not None
        window = max(w["window"] for w in windows.values())
        block = self.next_row // _BLOCK
        keep = min((block - _LOOKBACK_BLOCKS) * _BLOCK, (self.next_row - window - 1) // _BLOCK * _BLOCK)
        cut = keep - self.first_row
        if cut <= 0:
            return
        for side, w in windows.items():
            self.carry[side] = (int(w["run"][cut]), float(w["peak"][cut]))
        self.grid = {k: v[cut:] for k, v in self.grid.items()}
        self.first_row += cut
        # a trade counts at the first row captured at or after it, against the row before that
        kept = self.trades["ts_recv_ns"] > int(self.grid["recv"][0])
        self.trades = {c: v[kept] for c, v in self.trades.items()}
