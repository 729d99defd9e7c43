"""The L2 detectors without a long look-back (spikes, hidden executions) over micro-batches.

:class:`StreamingL2` is registered in ``tapeflow.signals.stream.LIVE_DETECTORS``; it keeps one
look-back of the instrument's grid rows and trades and, per batch, runs the batch detectors over
it, so that its rows equal ``detect_tables``' over the whole day, row for row:

* the look-back starts on a whole 600-row block of the day and keeps the 4 blocks before the
  newest row's block: ``walls.usual_depth`` (the spikes' sweep yardstick) takes its median from
  those 4 blocks, ``block_quantiles`` bit for bit; the spikes' windows (``window_ns`` +
  ``baseline_ns``: 103 rows equity, 305 crypto) and held moves are far shorter;
* spikes run with ``refractory_ns = 0`` and only the alerts on the batch's new grid rows are
  kept; the refractory chain is carried (``stream.refractory_chain``); a move that must still
  stand ``hold_ns`` later is judged when that later row arrives;
* a hidden execution is judged once its print is complete (a trade of another print came after
  it) and the grid row after it arrived (the confirmation), or at the end of the stream; the
  trades of prints not yet judged wait.

The per-batch cost is the new rows and trades plus the look-back (at most 5 blocks of grid rows
and the trades received since its first row).

Known differences, as ``tapeflow.signals.stream``: the price increment is the finest gap seen so
far; a spike's grid step is the median step of the look-back (the day's on a regular grid); trades
received before an already-judged print are judged where they arrive.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tapeflow.signals import hidden, spikes
from tapeflow.signals.stream import Feed, refractory_chain

_BLOCK = 600  # grid rows per depth baseline block, as ``walls._BASELINE_ROWS``
_LOOKBACK_BLOCKS = 4
_TRADE_COLS = ("ts_event_ns", "ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side")


class StreamingL2:
    """Spikes and hidden executions of one instrument over micro-batches (picklable)."""

    def __init__(self, venue: str, symbol: str, preset: str | None = None) -> None:
        self.venue, self.symbol, self.preset = venue, symbol, preset
        self.grid: dict[str, np.ndarray] | None = None  # grid rows of the day from ``first_row``
        self.first_row = 0
        self.trades: dict[str, np.ndarray] = {c: np.zeros(0, np.int64) for c in _TRADE_COLS}
        self.trades["aggressor_side"] = np.zeros(0, np.uint8)
        self.waiting: dict[str, np.ndarray] = {c: v[:0] for c, v in self.trades.items()}  # unjudged prints
        self.last_alert: dict[tuple[str, int], int] = {}

    def add(self, feed: Feed) -> list[pa.Table]:
        """The batch's trades and grid rows in; the new spike and hidden rows out."""
        new_rows = 0
        if feed.grid is not None and len(feed.grid["ts"]):
            g = feed.grid
            self.grid = g if self.grid is None else {k: np.concatenate([self.grid[k], g[k]]) for k in g}
            new_rows = len(g["ts"])
        if feed.trades is not None and feed.trades.num_rows:
            new = {c: feed.trades.column(c).to_numpy() for c in _TRADE_COLS}
            self.trades = {c: np.concatenate([self.trades[c], new[c]]) for c in _TRADE_COLS}
            self.waiting = {c: np.concatenate([self.waiting[c], new[c]]) for c in _TRADE_COLS}
        if self.grid is None:
            return []
        out = [self._hidden(feed)]
        if new_rows:
            out.append(self._spikes(feed, len(self.grid["ts"]) - new_rows))
            self._cut()
        return [t for t in out if t is not None and t.num_rows]

    def _spikes(self, feed: Feed, first_new: int) -> pa.Table:
        assert self.grid is not None
        params = feed.thresholds.for_instrument("spike", self.symbol, self.preset)
        rows = spikes.detect(self.grid, self.trades, feed.tick, {**params, "refractory_ns": 0}, self.venue,
                             self.symbol).table()
        return refractory_chain(rows, params, self.last_alert, int(self.grid["ts"][first_new]))

    def _hidden(self, feed: Feed) -> pa.Table | None:
        assert self.grid is not None
        w = self.waiting
        if not len(w["ts_recv_ns"]):
            return None
        order = np.argsort(w["ts_recv_ns"], kind="stable")
        w = {c: v[order] for c, v in w.items()}
        ts, px, ag = w["ts_event_ns"], w["price_nanos"], w["aggressor_side"]
        starts = np.flatnonzero(np.r_[True, (ts[1:] != ts[:-1]) | (px[1:] != px[:-1]) | (ag[1:] != ag[:-1])])
        if feed.final:
            ready = len(ts)
        else:
            # a print is complete once another one follows it, confirmed once a row follows it
            ends = np.r_[starts[1:], len(ts)] - 1
            complete = np.arange(len(starts)) < len(starts) - 1
            seen = w["ts_recv_ns"][ends] <= int(self.grid["recv"][-1])
            stop = np.flatnonzero(~(complete & seen))
            k = int(stop[0]) if len(stop) else len(starts)
            ready = int(starts[k]) if k < len(starts) else len(ts)
        if not ready:
            return None
        judged = {c: v[:ready] for c, v in w.items()}
        self.waiting = {c: v[ready:] for c, v in w.items()}
        params = feed.thresholds.for_instrument("hidden", self.symbol, self.preset)
        return hidden.detect(judged, self.grid, params, self.venue, self.symbol).table()

    def _cut(self) -> None:
        # keep the 4 whole blocks before the newest row's block: the next batch's rows look back on them
        assert self.grid is not None
        newest = self.first_row + len(self.grid["ts"]) - 1
        cut = max(0, (newest // _BLOCK - _LOOKBACK_BLOCKS) * _BLOCK) - self.first_row
        if cut <= 0:
            return
        self.grid = {k: v[cut:] for k, v in self.grid.items()}
        self.first_row += cut
        # the trades received since the look-back's first row (those before reach no row after it)
        keep = self.trades["ts_recv_ns"] > int(self.grid["recv"][0])
        self.trades = {c: v[keep] for c, v in self.trades.items()}

