"""The L2 detectors without a long look-back (spikes, hidden executions, walls) over micro-batches.

:class:`StreamingL2` is registered in ``tapeflow.signals.stream.LIVE_DETECTORS``; it keeps one
look-back of the instrument's grid rows and trades and, per batch, runs the batch detectors over
it, so that its rows equal ``detect_tables``' over the whole day, row for row:

* the look-back starts on a whole 600-row block of the day and keeps the 5 blocks before the
  newest row's block: ``walls.usual_depth`` (the walls' threshold, the spikes' sweep yardstick)
  takes each block's median from the 4 blocks before it (``block_quantiles``, bit for bit), so
  the rows from the newest-but-one block on read the day's values; the spikes' windows
  (``window_ns`` + ``baseline_ns``: 103 rows equity, 305 crypto) and held moves are far shorter;
* spikes run with ``refractory_ns = 0`` and only the alerts on the batch's new grid rows are
  kept; the refractory chain is carried (``stream.refractory_chain``); a move that must still
  stand ``hold_ns`` later is judged when that later row arrives;
* a hidden execution is judged once its print is complete (a trade of another print came after
  it) and the grid row after it arrived (the confirmation), or at the end of the stream; the
  trades of prints not yet judged wait;
* walls run with no refractory (every candidate, followed to its end within the look-back); per
  side and price the latest candidate and its end (open while it stands) are carried, which is
  all the batch's refractory rule reads, and a standing candidate keeps its rows in the
  look-back (from 4 blocks before it first showed) until it is gone and its outcome row is out.

The per-batch cost is the new rows and trades plus the look-back: at most 6 blocks of grid rows
and the trades received since its first row, more only while a wall candidate stands.

Known differences, as ``tapeflow.signals.stream``: the price increment is the finest gap seen so
far; the grid step (spikes, walls) is the median step of the look-back (the day's on a regular
grid); trades received before an already-judged print are judged where they arrive.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tapeflow.signals import hidden, spikes, walls
from tapeflow.signals.config import params_hash
from tapeflow.signals.stream import Feed, refractory_chain

_BLOCK = 600  # grid rows per depth baseline block, as ``walls._BASELINE_ROWS``
_LOOKBACK_BLOCKS = 4
_NEVER = -(1 << 62)  # a refractory period no candidate falls within
_OPEN = 1 << 62  # the end of a wall still standing: later than any row
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
        # walls: per (side, price) the latest candidate (side, price, start_ns) and its end (_OPEN
        # while it stands); the candidates still standing (emitted or suppressed)
        self.latest: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.last_end: dict[tuple[int, int], int] = {}
        self.open_walls: dict[tuple[int, int, int], bool] = {}

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
            usual = walls.usual_depth(self.grid)  # the depth yardstick of both, once per batch
            out.append(self._spikes(feed, len(self.grid["ts"]) - new_rows, usual))
            out.append(self._walls(feed, len(self.grid["ts"]) - new_rows, usual))
            self._cut()
        return [t for t in out if t is not None and t.num_rows]

    def _spikes(self, feed: Feed, first_new: int, usual: np.ndarray) -> pa.Table:
        assert self.grid is not None
        params = feed.thresholds.for_instrument("spike", self.symbol, self.preset)
        rows = spikes.detect(self.grid, self.trades, feed.tick, {**params, "refractory_ns": 0}, self.venue,
                             self.symbol, usual=usual, from_row=first_new).table()
        return refractory_chain(rows, params, self.last_alert, int(self.grid["ts"][first_new]))

    def _walls(self, feed: Feed, first_new: int, usual: np.ndarray) -> pa.Table | None:
        assert self.grid is not None
        params = feed.thresholds.for_instrument("wall", self.symbol, self.preset)
        # every candidate, none suppressed (a refractory that never holds): the chain is applied here
        every = {**params, "refractory_ns": _NEVER}
        rows = walls.detect(self.grid, self.trades, feed.tick, every, self.venue, self.symbol,
                            usual=usual).table()
        if not rows.num_rows:
            return None
        cols = {c: rows.column(c).to_numpy(zero_copy_only=False) for c in
                ("ts_event_ns", "side", "price_nanos", "start_ns")}
        appeared = np.array(['"event": "appeared"' in e for e in rows.column("evidence").to_pylist()])
        key = list(zip(cols["side"].tolist(), cols["price_nanos"].tolist(), cols["start_ns"].tolist(),
                       strict=True))
        ts = cols["ts_event_ns"].tolist()
        ends = {k: int(t) for k, t, a in zip(key, ts, appeared, strict=True) if not a}
        keep: list[int] = []
        # the walls followed from an earlier batch that are gone now: their end is known
        for k, emitted in list(self.open_walls.items()):
            if k in ends:
                del self.open_walls[k]
                if self.latest.get(k[:2]) == k:
                    self.last_end[k[:2]] = ends[k]
                if emitted:
                    keep.append(_outcome_row(key, appeared, k))
        lo = int(self.grid["ts"][first_new])
        new = np.flatnonzero(appeared & (cols["ts_event_ns"] >= lo))
        # the batch detector's order: per side, bids first, then by the row the wall appeared on
        for i in sorted(new.tolist(), key=lambda i: (-int(cols["side"][i]), int(cols["ts_event_ns"][i]))):
            k = key[i]
            end = ends.get(k)
            last = self.last_end.get(k[:2])
            emitted = last is None or k[2] - last >= params["refractory_ns"]
            self.last_end[k[:2]] = end if end is not None else _OPEN
            self.latest[k[:2]] = k
            if emitted:
                keep.append(i)
                if end is not None:
                    keep.append(_outcome_row(key, appeared, k))
            if end is None:
                self.open_walls[k] = emitted
        kept = rows.take(pa.array(sorted(keep), pa.int64()))
        index = kept.schema.get_field_index("params_hash")
        return kept.set_column(index, kept.schema.field(index),
                               pa.array([params_hash(params)] * kept.num_rows, pa.string()))

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
        # the rows from the one before the first print to the one at or after the last (the rows
        # the detector reads; none cut where a print has no row before it): the same rows out, and
        # the JAX kernel pads a few rows, not the look-back
        recv = self.grid["recv"]
        lo = max(0, int(np.searchsorted(recv, judged["ts_recv_ns"].min(), side="left")) - 1)
        hi = int(np.searchsorted(recv, judged["ts_recv_ns"].max(), side="left")) + 1
        book = {k: v[lo:hi] for k, v in self.grid.items()} if lo or hi < len(recv) else self.grid
        return hidden.detect(judged, book, params, self.venue, self.symbol).table()

    def _cut(self) -> None:
        # keep 5 whole blocks before the newest row's block: the rows of the last one (which the
        # next batch's rows and held moves look back on) have the 4 their depth baseline reads;
        # and a standing wall's rows from the block before it first showed on (followed to its end)
        assert self.grid is not None
        newest = self.first_row + len(self.grid["ts"]) - 1
        keep_from = (newest // _BLOCK - _LOOKBACK_BLOCKS - 1) * _BLOCK
        for _, _, start_ns in self.open_walls:
            first = self.first_row + int(np.searchsorted(self.grid["ts"], start_ns))
            keep_from = min(keep_from, ((first - 1) // _BLOCK - _LOOKBACK_BLOCKS) * _BLOCK)
        if len(self.waiting["ts_recv_ns"]):  # and the row before a print not judged yet
            before = int(np.searchsorted(self.grid["recv"], self.waiting["ts_recv_ns"].min())) - 1
            keep_from = min(keep_from, (self.first_row + max(before, 0)) // _BLOCK * _BLOCK)
        cut = max(0, keep_from) - self.first_row
        if cut <= 0:
            return
        self.grid = {k: v[cut:] for k, v in self.grid.items()}
        self.first_row += cut
        # the trades received since the look-back's first row (those before reach no row after it)
        keep = self.trades["ts_recv_ns"] > int(self.grid["recv"][0])
        self.trades = {c: v[keep] for c, v in self.trades.items()}


def _outcome_row(key: list[tuple[int, int, int]], appeared: np.ndarray, wall: tuple[int, int, int]) -> int:
    return next(i for i, k in enumerate(key) if k == wall and not appeared[i])
