"""The ``stealth`` composite (``tapeflow.signals.stealth.detect_composite``) over micro-batches.

:class:`StreamingComposite` is registered last in ``tapeflow.signals.stream.LIVE_DETECTORS``: it
reads the component rows (absorption, creep, hidden, withdrawal, contraction) the stage's other
detectors gave in the same batch (``Feed.signals``) and judges each component alert once every
component alert at or before its time is out, so its rows equal ``detect_tables``' over the day:

* the withdrawal, absorption, creep and contraction rows leave with the grid row they alert on, so
  those up to the newest grid row are out; a hidden execution leaves once its print is complete
  and a grid row follows it (``stream_l2``), so the trades of prints not judged yet are followed
  here with the same rule and hold back every component alert at or after the earliest of them;
* the component alerts are put in the batch's order: time, then the order ``detect_tables``
  concatenates the kinds in (withdrawal, hidden, absorption, creep, contraction), then side
  (bids first, as each detector loops its sides) and capture time; an alert's window reads the
  alerts before it in that order, so two at the same instant give the batch's rows;
* the alerts of the last ``window_ns`` before the newest judged one are kept (a later candidate's
  window reaches no further back) and the refractory chain's last alert is carried.

Known difference, as ``tapeflow.signals.stream``: a trade received after a grid row whose event
time lies before that row's (a late print) is judged by the hidden detector where it arrives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.schemas.core import concat
from tapeflow.schemas.records import SIGNAL
from tapeflow.signals import stealth
from tapeflow.signals.rows import Alerts
from tapeflow.signals.stream import Feed

_RANK = {"withdrawal": 0, "hidden": 1, "absorption": 2, "creep": 3, "contraction": 4}
_COLS = ("ts", "kind", "side", "conf", "flags", "recv")
_TRADE_COLS = ("ts_event_ns", "ts_recv_ns", "price_nanos", "aggressor_side")


class StreamingComposite:
    """The stealth composite of one instrument over micro-batches (picklable)."""

    def __init__(self, venue: str, symbol: str, preset: str | None = None) -> None:
        self.venue, self.symbol, self.preset = venue, symbol, preset
        self.rows: dict[str, np.ndarray] = _empty()  # judged (the window's) and waiting alerts, in order
        self.judged = 0  # how many of ``rows`` are judged
        self.last_alert: int | None = None
        self.newest_grid = (np.iinfo(np.int64).min, np.iinfo(np.int64).min)  # (ts, recv)
        self.waiting: dict[str, np.ndarray] = {c: np.zeros(0, np.int64) for c in _TRADE_COLS}

    def add(self, feed: Feed) -> list[pa.Table]:
        """The batch's component rows (``feed.signals``) in; the new ``stealth`` rows out."""
        params = feed.thresholds.for_instrument("stealth", self.symbol, self.preset)
        self._take(feed.signals)
        if feed.grid is not None and len(feed.grid["ts"]):
            self.newest_grid = (int(feed.grid["ts"][-1]), int(feed.grid["recv"][-1]))
        if feed.trades is not None and feed.trades.num_rows:
            for c in _TRADE_COLS:
                self.waiting[c] = np.concatenate([self.waiting[c], feed.trades.column(c).to_numpy()])
        until = np.iinfo(np.int64).max if feed.final else self._watermark()
        r = self.rows
        ready = self.judged + int(np.searchsorted(r["ts"][self.judged:], until, side="right"))
        out = Alerts(self.venue, self.symbol, stealth.STEALTH, params)
        if ready > self.judged:
            ts = r["ts"][:ready]
            lo = np.searchsorted(ts, ts - params["window_ns"], side="left")
            for i in range(self.judged, ready):
                if len(set(r["kind"][lo[i]:i + 1])) < params["min_components"]:
                    continue
                t = int(ts[i])
                if self.last_alert is None or t - self.last_alert >= params["refractory_ns"]:
                    stealth.add_composite(out, r, int(lo[i]), i, params)
                    self.last_alert = t
            self.judged = ready
            # a later alert's window reaches back ``window_ns`` from its time, at or after this one's
            keep = int(np.searchsorted(r["ts"], int(r["ts"][ready - 1]) - params["window_ns"], side="left"))
            self.rows = {c: v[keep:] for c, v in r.items()}
            self.judged -= keep
        table = out.table()
        return [table] if table.num_rows else []

    def _take(self, tables: tuple[pa.Table, ...]) -> None:
        every = concat(SIGNAL, list(tables)) if tables else SIGNAL.empty_table()
        kinds = every.column("kind").to_pylist()
        keep = [i for i, k in enumerate(kinds) if k in _RANK]
        if not keep:
            return
        new = {"ts": every.column("ts_event_ns").to_numpy()[keep],
               "kind": np.asarray(kinds, dtype=object)[keep],
               "side": every.column("side").to_numpy()[keep],
               "conf": every.column("confidence").to_numpy()[keep],
               "flags": every.column("flags").to_numpy()[keep],
               "recv": every.column("ts_recv_ns").to_numpy()[keep]}
        waiting = {c: v[self.judged:] for c, v in self.rows.items()}
        both = {c: np.concatenate([waiting[c], new[c]]) for c in _COLS}
        rank = np.array([_RANK[k] for k in both["kind"]], np.int64)
        # hidden rows keep their print order (capture time); the others list bids first
        side_key = np.where(rank == _RANK["hidden"], 0, -both["side"])
        order = np.lexsort((both["recv"], side_key, rank, both["ts"]))
        self.rows = {c: np.concatenate([self.rows[c][:self.judged], both[c][order]]) for c in _COLS}

    def _watermark(self) -> int:
        # the hidden detector's rule (stream_l2._hidden): prints complete and followed by a grid
        # row are judged; the earliest print still waiting holds back every alert from its time on
        w = self.waiting
        grid_ts, grid_recv = self.newest_grid
        if len(w["ts_recv_ns"]):
            order = np.argsort(w["ts_recv_ns"], kind="stable")
            w = {c: v[order] for c, v in w.items()}
            ts, px, ag = w["ts_event_ns"], w["price_nanos"], w["aggressor_side"]
            starts = np.flatnonzero(np.r_[True, (ts[1:] != ts[:-1]) | (px[1:] != px[:-1])
                                          | (ag[1:] != ag[:-1])])
            ends = np.r_[starts[1:], len(ts)] - 1
            complete = np.arange(len(starts)) < len(starts) - 1
            stop = np.flatnonzero(~(complete & (w["ts_recv_ns"][ends] <= grid_recv)))
            k = int(stop[0]) if len(stop) else len(starts)
            ready = int(starts[k]) if k < len(starts) else len(ts)
            self.waiting = w = {c: v[ready:] for c, v in w.items()}
        if len(w["ts_event_ns"]):
            return min(grid_ts, int(w["ts_event_ns"].min()) - 1)
        return grid_ts


def _empty() -> dict[str, Any]:
    return {"ts": np.zeros(0, np.int64), "kind": np.zeros(0, object), "side": np.zeros(0, np.int32),
            "conf": np.zeros(0), "flags": np.zeros(0, np.int32), "recv": np.zeros(0, np.int64)}
