"""Institutional pressure over micro-batches of one instrument's ``order_event`` rows, with a
20-day baseline that survives restarts.

:class:`StreamingInstitutional` gives, batch by batch, the rows ``institutional.detect`` gives over
the whole input, row for row, across restarts at a day boundary:

* each UTC day is judged on its own (``institutional``'s docstring): the fill attribution
  (``kernels.signals_institutional.FillFlowState``: ``fill_flow``'s numba pass, its state
  carried), the median fill size (a 500-fill block's median is computed once, from the 4
  blocks before it, with ``block_quantiles``' arithmetic: ``withdrawal._median``), the
  per-second signed, gross and passive sums of the seconds not judged yet, the window sums and the own-day RMS
  (``kernels.signals_institutional.RunningWindows``: sequential running sums, the batch's bits
  whatever the cuts), the day's baseline record so far, the rising-edge and refractory state;
* a second is judged once a fill of a later second arrived (its window and its last fill are
  final then); the day's last seconds at the day roll or the end of the stream;
* at the day roll (or the end of the stream) the day's per-bucket totals join the baseline
  (:class:`tapeflow.signals.institutional.Baselines`), which :class:`BaselineStore` writes under
  the lake (``<lake>/_baselines/institutional/<venue>/<symbol>.json``, atomically) and loads at
  start: the 20-day baseline of a restarted stage is the one it had.

Known differences: a fill arriving with an event time in a second already judged is left out of
the windows (counted in ``late_fills``), and a fill of a day already rolled over is counted in
``late_fills`` and left out (the batch places both in time order). A restart inside a day resumes
the day from the flow's Bytewax recovery snapshot (this object is pickled with the stage); without
a recovery store it judges the rest of that day afresh (its order state, windows and median blocks
start again) and the day's baseline record is then that of the part after the restart.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kernels.codes import L3_FILL
from kernels.signals_institutional import FillFlowState
from tapeflow.errors import StorageError
from tapeflow.signals.institutional import (
    LOOKBACK_BLOCKS,
    MEDIAN_FILLS,
    NAME,
    Baselines,
    DayFills,
    add_totals,
    day_windows,
    judge,
    new_totals,
    running_windows,
)
from tapeflow.signals.rows import Alerts
from tapeflow.signals.withdrawal import _median

_BIN_NS = 1_000_000_000
_DAY_NS = 86_400 * _BIN_NS
_FILL_COLS = ("ts", "recv", "flow", "passive", "maker", "size", "median")
STORE_DIR = "_baselines"  # under the lake


class BaselineStore:
    """The institutional baselines under ``root`` (``<lake>/_baselines``), one JSON file per instrument."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, venue: str, symbol: str) -> Path:
        def safe(x: str) -> str:
            return urllib.parse.quote(x, safe="")

        return self.root / "institutional" / safe(venue) / f"{safe(symbol)}.json"

    def load(self, venue: str, symbol: str) -> Baselines:
        """The stored days (none when the file does not exist).

        Raises:
            StorageError: the file is not a baseline file (it names the file; delete it to start
                the baseline afresh).
        """
        path = self.path(venue, symbol)
        if not path.exists():
            return Baselines()
        try:
            raw = json.loads(path.read_text())
            days = {int(d): (int(v["bucket_ns"]), int(v["window_ns"]), np.asarray(v["sq"], np.float64),
                             np.asarray(v["cnt"], np.float64)) for d, v in raw["days"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"{path}: not an institutional baseline file ({exc}); delete it to start "
                               f"the baseline afresh") from exc
        return Baselines(days)

    def save(self, venue: str, symbol: str, baselines: Baselines) -> None:
        """Write the days atomically (a temporary file renamed over the old one)."""
        path = self.path(venue, symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        # floats as repr: JSON gives them back bit for bit
        raw = {"days": {str(d): {"bucket_ns": b, "window_ns": w, "sq": sq.tolist(), "cnt": cnt.tolist()}
                        for d, (b, w, sq, cnt) in sorted(baselines.days.items())}}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(raw, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class StreamingInstitutional:
    """Institutional pressure of one instrument over micro-batches (picklable).

    Args:
        venue, symbol: the instrument.
        store: where the baseline lives (None: in memory only, as long as this object).
    """

    def __init__(self, venue: str, symbol: str, store: BaselineStore | None = None) -> None:
        self.venue, self.symbol, self.store = venue, symbol, store
        self.baselines: Baselines | None = None  # loaded at the first batch
        self.day: int | None = None
        self.late_fills = 0  # fills of a day already rolled over: left out
        self._new_day()

    def _new_day(self) -> None:
        self.flow = FillFlowState()
        self.t0 = 0
        self.n_fills = 0  # fills of the day so far (their index picks the median block)
        self.sizes = np.zeros(0)  # the sizes of the last median blocks, from fill ``sizes_first``
        self.sizes_first = 0
        self.block_median: dict[int, float] = {}
        self.sums = np.zeros((3, 0))  # per second from ``judged`` on: signed, gross, passive
        self.running: Any = None  # the day's RunningWindows (made with the day's first fill)
        self.totals: tuple[np.ndarray, np.ndarray] | None = None  # the day's baseline record so far
        kinds = {"maker": bool, "ts": np.int64, "recv": np.int64}
        self.fills = {c: np.zeros(0, kinds.get(c, np.float64)) for c in _FILL_COLS}
        self.judged = 0  # seconds of the day judged
        self.state: dict[str, Any] = {}

    def add(self, ev: dict[str, np.ndarray], at_touch: np.ndarray, params: dict[str, Any], *,
            final: bool = False) -> list[pa.Table]:
        """One batch's events (``institutional.detect``'s columns, arrival order) and their touch
        flags in; the new ``signal`` tables out (``final``: the end of the stream)."""
        if self.baselines is None:
            self.baselines = (self.store.load(self.venue, self.symbol) if self.store is not None
                              else Baselines())
        out = Alerts(self.venue, self.symbol, NAME, params)
        days = np.asarray(ev["ts_event_ns"]) // _DAY_NS
        start = 0
        while start < len(days):  # runs of one day, in arrival order
            day = int(days[start])
            stop = start + int(np.argmax(days[start:] != day)) if (days[start:] != day).any() else len(days)
            if self.day is not None and day < self.day:
                fills = (ev["action"][start:stop] == L3_FILL) & (ev["side_code"][start:stop] >= 0)
                self.late_fills += int(fills.sum())
            else:
                if self.day is not None and day > self.day:
                    self._finish(out, params)
                self.day = day
                self._take({c: v[start:stop] for c, v in ev.items()}, at_touch[start:stop], params)
                self._judge(out, params, self._last_bin())
            start = stop
        if final and self.day is not None:
            self._finish(out, params)
        return [out.table()] if out.cols["ts_event_ns"] else []  # most batches alert nothing

    def _take(self, ev: dict[str, np.ndarray], at_touch: np.ndarray, params: dict[str, Any]) -> None:
        ff = self.flow.step(ev["ts_event_ns"], ev["order_id"], ev["action"], ev["side_code"],
                            ev["size_nanos"], at_touch, pair_ns=params["mm_pair_ns"],
                            child_fill_ns=params["child_fill_ns"], passive_weight=params["passive_weight"])
        flow, passive, maker = ff["flow"], ff["passive"], ff["maker"]
        fills = np.flatnonzero((ev["action"] == L3_FILL) & (ev["side_code"] >= 0) & (ev["order_id"] != 0))
        if not len(fills):
            return
        ts = ev["ts_event_ns"][fills].astype(np.int64)
        size = ev["size_nanos"][fills].astype(np.float64)
        if self.n_fills == 0:
            self.t0 = int(ts[0]) // _BIN_NS
        new = {"ts": ts, "recv": ev["ts_recv_ns"][fills].astype(np.int64), "flow": flow[fills],
               "passive": passive[fills], "maker": maker[fills], "size": size, "median": self._medians(size)}
        self.fills = {c: np.r_[self.fills[c], new[c]] for c in _FILL_COLS}
        bins = ts // _BIN_NS - self.t0 - self.judged  # from the first second not judged
        late = bins < 0  # a second already judged: its windows are out
        self.late_fills += int(late.sum())
        bins = bins[~late]
        if not len(bins):
            return
        need = int(bins.max()) + 1
        if need > self.sums.shape[1]:
            grown = np.zeros((3, need))
            grown[:, :self.sums.shape[1]] = self.sums
            self.sums = grown
        # one at a time, in order: the batch's bincount adds a second's fills in the same order
        np.add.at(self.sums[0], bins, new["flow"][~late])
        np.add.at(self.sums[1], bins, size[~late])
        np.add.at(self.sums[2], bins, new["passive"][~late])

    def _medians(self, size: np.ndarray) -> np.ndarray:
        """The median fill size of each new fill's block: of the 4 whole blocks before it."""
        first = self.n_fills
        self.sizes = np.r_[self.sizes, size]
        self.n_fills += len(size)
        out = np.empty(len(size))
        for k in range(len(size)):
            block = (first + k) // MEDIAN_FILLS
            value = self.block_median.get(block)
            if value is None:
                lo = max(0, block - LOOKBACK_BLOCKS) * MEDIAN_FILLS - self.sizes_first
                value = _median(self.sizes[lo:block * MEDIAN_FILLS - self.sizes_first])
                self.block_median = {block: value}
            out[k] = value
        cut = max(0, ((self.n_fills - 1) // MEDIAN_FILLS - LOOKBACK_BLOCKS) * MEDIAN_FILLS - self.sizes_first)
        self.sizes, self.sizes_first = self.sizes[cut:], self.sizes_first + cut
        return out

    def _last_bin(self) -> int:
        return int(self.fills["ts"].max()) // _BIN_NS - self.t0 if len(self.fills["ts"]) else 0

    def _judge(self, out: Alerts, params: dict[str, Any], hi: int) -> None:
        """Judge the seconds up to ``hi`` (not included) and forget what no later second needs."""
        if hi <= self.judged:
            return
        if self.running is None:
            self.running, self.totals = running_windows(params), new_totals(params)
        k = hi - self.judged
        sums = np.zeros((3, k))
        have = min(k, self.sums.shape[1])
        sums[:, :have] = self.sums[:, :have]
        self.sums = self.sums[:, k:]
        w = day_windows(self.running, sums, self.t0, params)
        assert self.baselines is not None and self.day is not None and self.totals is not None
        add_totals(self.totals, w)
        judge(out, w, self._day_fills(), self.judged, hi, params, self.baselines.base(self.day, params),
              self.state)
        self.judged = hi
        window = max(1, params["window_ns"] // _BIN_NS)
        bins = self.fills["ts"] // _BIN_NS - self.t0
        keep = max(0, int(np.searchsorted(bins, self.judged - window + 1)) - 1)
        if keep:
            self.fills = {c: v[keep:] for c, v in self.fills.items()}

    def _day_fills(self) -> DayFills:
        f = self.fills
        return DayFills(ts=f["ts"], recv=f["recv"], flow=f["flow"], passive=f["passive"], maker=f["maker"],
                        size=f["size"], median=f["median"], t0=self.t0)

    def _finish(self, out: Alerts, params: dict[str, Any]) -> None:
        """The day's last seconds judged; its totals join the baseline, which is saved."""
        assert self.baselines is not None and self.day is not None
        if self.n_fills:
            self._judge(out, params, self._last_bin() + 1)
            assert self.totals is not None
            self.baselines.add(self.day, params, *self.totals)
            if self.store is not None:
                self.store.save(self.venue, self.symbol, self.baselines)
        self._new_day()
