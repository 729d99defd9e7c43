"""Price creep and volatility contraction (``tapeflow.signals.stealth``) over micro-batches.

:class:`StreamingStealth` is registered in ``tapeflow.signals.stream.LIVE_DETECTORS``. It keeps a
look-back of the instrument's grid rows (top of book, flags, the snapshots' event sequence) and
trades, and per batch runs the batch statistics (``stealth.creep_windows``,
``stealth.contraction_windows``) over it, judging each one-second sample once, in order, so its rows
equal ``detect_tables``' over the whole day, row for row:

* the look-back starts on a whole baseline block (60 samples) of the day, ``baseline_blocks + 1``
  blocks before the block of the first sample not judged yet: each new sample's baseline reads the
  ``baseline_blocks`` blocks before its own, bit for bit (``block_quantiles``), and its windows
  (40 and 20 samples) lie inside the last two; the oldest block only absorbs what a cut look-back
  cannot know (the event count and the aggressor flow before its first sample);
* the runs and refractory periods of ``one_per_run`` are carried per kind and side (the last
  alert's time, whether a run is open and whether it has alerted), so a condition that holds across
  a batch cut alerts once, where the batch alerts.

Every sample is judged when its grid row arrives (a sample reads nothing after its row), so
nothing waits for the end of the stream. Known differences, as ``tapeflow.signals.stream``: the
price increment is the finest gap seen so far; the sample step is the look-back's median grid step
(the day's on a regular grid); a book one-sided for longer than the look-back carries its last
two-sided mid from inside the look-back only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.signals import stealth
from tapeflow.signals.rows import Alerts
from tapeflow.signals.stream import Feed

_BLOCK_SAMPLES = 60  # stealth._BLOCK_S: one-minute baseline blocks of one-second samples
_TRADE_COLS = ("ts_event_ns", "ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side")
_KINDS = ("creep", "contraction")


class StreamingStealth:
    """Creep and contraction of one instrument over micro-batches (picklable)."""

    def __init__(self, venue: str, symbol: str, preset: str | None = None) -> None:
        self.venue, self.symbol, self.preset = venue, symbol, preset
        self.grid: dict[str, np.ndarray] | None = None  # from the day's grid row ``first_row``
        self.first_row = 0
        self.trades: dict[str, np.ndarray] = {c: np.zeros(0, np.int64) for c in _TRADE_COLS}
        self.trades["aggressor_side"] = np.zeros(0, np.uint8)
        self.next_sample = dict.fromkeys(_KINDS, 0)  # the day's first sample not judged, per kind
        self.rows_per_sample = dict.fromkeys(_KINDS, 1)
        # per (kind, side): [last alert's time or None, a run is open, the open run has alerted]
        self.runs: dict[tuple[str, int], list[Any]] = {}

    def add(self, feed: Feed) -> list[pa.Table]:
        """The batch's trades and grid rows in; the new creep and contraction rows out."""
        if feed.trades is not None and feed.trades.num_rows:
            for c in _TRADE_COLS:
                self.trades[c] = np.concatenate([self.trades[c], feed.trades.column(c).to_numpy()])
        g = feed.grid
        if g is None or not len(g["ts"]):
            return []
        new = {"ts": g["ts"], "recv": g["recv"], "flags": g["flags"], "bid_p": g["bid_p"][:, :1],
               "ask_p": g["ask_p"][:, :1], "seq": g["seq"]}
        self.grid = new if self.grid is None else {k: np.concatenate([self.grid[k], new[k]]) for k in new}
        out = []
        blocks = {}
        for kind in _KINDS:
            params = feed.thresholds.for_instrument(kind, self.symbol, self.preset)
            blocks[kind] = params["baseline_blocks"]
            table = self._judge(kind, params, feed.tick)
            if table is not None and table.num_rows:
                out.append(table)
        self._cut(blocks)
        return out

    def _judge(self, kind: str, params: dict[str, Any], tick: int) -> pa.Table | None:
        assert self.grid is not None
        book = self.grid
        if kind == "creep":
            w = stealth.creep_windows(book, book["seq"], self.trades, tick, params)
            out = Alerts(self.venue, self.symbol, stealth.CREEP, params)
        else:
            w = stealth.contraction_windows(book, book["seq"], tick, params)
            out = Alerts(self.venue, self.symbol, stealth.CONTRACTION, params)
        if w is None:
            return None
        ts = book["ts"]
        step = max(1, int(np.median(np.diff(ts)))) if len(ts) > 1 else 1
        k = max(1, params["sample_ns"] // step)  # as stealth.sample: a sample every k grid rows
        self.rows_per_sample[kind] = k
        base = self.first_row // k  # the look-back starts on a whole block of samples
        sides = (1, -1) if kind == "creep" else (0,)
        sample_ts = ts[w["rows"]]
        for i in range(max(0, self.next_sample[kind] - base), len(w["rows"])):
            for side in sides:
                ok = bool(w["ok"][i]) and (side == 0 or np.sign(w["move"][i]) == side)
                state = self.runs.setdefault((kind, side), [None, False, False])
                if not ok:
                    state[1] = False
                    continue
                if not state[1]:
                    state[1], state[2] = True, False
                if not state[2] and (state[0] is None or sample_ts[i] - state[0] >= params["refractory_ns"]):
                    if kind == "creep":
                        stealth.add_creep(out, book, w, i, side, params)
                    else:
                        stealth.add_contraction(out, book, w, i, params)
                    state[0], state[2] = int(sample_ts[i]), True
        self.next_sample[kind] = base + len(w["rows"])
        return out.table()

    def _cut(self, baseline_blocks: dict[str, int]) -> None:
        assert self.grid is not None
        keep = []
        for kind in _KINDS:
            block = self.next_sample[kind] // _BLOCK_SAMPLES
            first_sample = max(0, (block - baseline_blocks[kind] - 1) * _BLOCK_SAMPLES)
            keep.append(first_sample * self.rows_per_sample[kind])
        cut = min(keep) - self.first_row
        if cut <= 0 or cut >= len(self.grid["ts"]):
            return
        self.grid = {k: v[cut:] for k, v in self.grid.items()}
        self.first_row += cut
        # the trades the first sample's flow reads back to (what came before reaches no later sample)
        kept = self.trades["ts_recv_ns"] >= int(self.grid["recv"][0])
        self.trades = {c: v[kept] for c, v in self.trades.items()}
