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
  (:class:`tapeflow.signals.institutional.Baselines`), and :class:`BaselineStore` writes that
  day's record under the lake (``<lake>/_baselines/institutional/<venue>/<symbol>/<date>.json``,
  atomically, one file per day: a record the Dagster asset wrote meanwhile stays) and loads them at
  start: the 20-day baseline of a restarted stage is the one it had; the files of days before the
  next day's ``baseline_days`` are then deleted (``BaselineStore.prune``).

Known differences: a fill arriving with an event time in a second already judged is left out of
the windows (counted in ``late_fills``), and a fill of a day already rolled over is counted in
``late_fills`` and left out (the batch places both in time order). A restart inside a day resumes
the day from the flow's Bytewax recovery snapshot (this object is pickled with the stage); without
a recovery store it judges the rest of that day afresh (its order state, windows and median blocks
start again) and the day's baseline record is then that of the part after the restart.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import urllib.parse
from collections.abc import Iterable
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
from tapeflow.storage.parts import fsync_path

_BIN_NS = 1_000_000_000
_DAY_NS = 86_400 * _BIN_NS
_FILL_COLS = ("ts", "recv", "flow", "passive", "maker", "size", "median")
STORE_DIR = "_baselines"  # under the lake
_EPOCH = dt.date(1970, 1, 1)


Record = tuple[int, int, np.ndarray, np.ndarray]


class BaselineStore:
    """The institutional baselines under ``root`` (``<lake>/_baselines``): one JSON file per
    (instrument, UTC day), ``institutional/<venue>/<symbol>/<YYYY-MM-DD>.json``.

    Writers never rewrite each other's records, so the live stage and the Dagster ``signals``
    asset (separate processes) can add days to one instrument at the same time: each record is
    written to a temporary file in its directory, fsynced and renamed over that day's file only
    (the directory fsynced after), so a reader sees a day's old record or its new one, whole,
    and every other day untouched. Two writers of the same day: the last rename wins (both whole
    records). The one-file-per-instrument layout of before (``<symbol>.json``) is still read
    (its days under any per-day file's), and the first write to the instrument moves its days
    into per-day files (a day already written per day is kept) and deletes it. :meth:`prune`
    deletes the days no baseline reads any more (the live stage, at its day roll: the days before
    the next day's ``baseline_days``), so the store and the stage's read at start stay bounded.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, venue: str) -> Path:
        return self.root / "institutional" / urllib.parse.quote(venue, safe="")

    def path(self, venue: str, symbol: str) -> Path:
        """The instrument's directory (one ``<YYYY-MM-DD>.json`` per day)."""
        return self._dir(venue) / urllib.parse.quote(symbol, safe="")

    def legacy_path(self, venue: str, symbol: str) -> Path:
        """The one-file-per-instrument baseline of before (read, and migrated at the first write)."""
        return self._dir(venue) / f"{urllib.parse.quote(symbol, safe='')}.json"

    def load(self, venue: str, symbol: str, days: Iterable[int] | None = None) -> Baselines:
        """The stored days (only those in ``days`` when given; none when nothing is stored).

        Raises:
            StorageError: a file is not a baseline file (it names the file; delete it to
                recompute that day, or the instrument's baseline afresh).
        """
        wanted = None if days is None else set(days)
        out: dict[int, Record] = {}
        # the old file first, then the directory: a writer migrating it writes the per-day files
        # before it deletes it, so a day is in one of the two whichever moment this reads them
        out.update(self._legacy_days(venue, symbol))
        folder = self.path(venue, symbol)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        for name in names:
            if name.startswith("."):  # a writer's temporary file
                continue
            path = folder / name
            try:
                day = _day_of(name)
            except ValueError as exc:
                raise StorageError(f"{path}: not an institutional baseline file (a name other than "
                                   f"YYYY-MM-DD.json); move it away") from exc
            if wanted is not None and day not in wanted:
                continue
            try:
                raw = json.loads(path.read_text())
                if int(raw["day"]) != day:
                    raise ValueError(f"it holds day {raw['day']}, its name says {day}")
                out[day] = _record(raw)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise StorageError(f"{path}: not an institutional baseline file ({exc}); delete it to "
                                   f"recompute the day") from exc
        if wanted is not None:
            out = {d: r for d, r in out.items() if d in wanted}
        return Baselines(dict(sorted(out.items())))

    def put(self, venue: str, symbol: str, days: dict[int, Record]) -> None:
        """Write these days' records (each its own file, atomically); other days stay as they are."""
        if not days:
            return
        folder = self.path(venue, symbol)
        folder.mkdir(parents=True, exist_ok=True)
        self._migrate(venue, symbol, folder)
        for day, rec in sorted(days.items()):
            _write(folder, day, rec, replace=True)
        fsync_path(folder)

    def prune(self, venue: str, symbol: str, keep_from: int) -> list[int]:
        """Delete the instrument's day files of days before ``keep_from`` (a day number); returns
        the days deleted. Other files (a writer's temporary file, a name that is not a day) stay."""
        folder = self.path(venue, symbol)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        gone = []
        for name in names:
            try:
                day = _day_of(name)
            except ValueError:
                continue  # load() names it; pruning deletes day files only
            if day < keep_from:
                (folder / name).unlink(missing_ok=True)  # another pruner may have been first
                gone.append(day)
        if gone:
            fsync_path(folder)
        return sorted(gone)

    def save(self, venue: str, symbol: str, baselines: Baselines) -> None:
        """Write every day of ``baselines`` (:meth:`put`; days stored and not in it stay)."""
        self.put(venue, symbol, baselines.days)

    def _legacy_days(self, venue: str, symbol: str) -> dict[int, Record]:
        legacy = self.legacy_path(venue, symbol)
        try:
            text = legacy.read_text()
        except FileNotFoundError:
            return {}
        try:
            return {int(d): _record(v) for d, v in json.loads(text)["days"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"{legacy}: not an institutional baseline file ({exc}); delete it to "
                               f"start the baseline afresh") from exc

    def _migrate(self, venue: str, symbol: str, folder: Path) -> None:
        legacy = self.legacy_path(venue, symbol)
        old = self._legacy_days(venue, symbol)  # raises on a bad old file: nothing is lost
        if not old and not legacy.exists():
            return
        for day, rec in old.items():
            _write(folder, day, rec, replace=False)  # a day another writer stored per day wins
        fsync_path(folder)
        legacy.unlink(missing_ok=True)  # after its days are durable per day (readers read it first)


def _record(v: dict[str, Any]) -> Record:
    return (int(v["bucket_ns"]), int(v["window_ns"]), np.asarray(v["sq"], np.float64),
            np.asarray(v["cnt"], np.float64))


def _day_of(name: str) -> int:
    if not name.endswith(".json"):
        raise ValueError(name)
    return (dt.date.fromisoformat(name[:-5]) - _EPOCH).days


def _write(folder: Path, day: int, rec: Record, *, replace: bool) -> None:
    """One day's file: a temporary file, fsynced, renamed over it (``replace``) or linked to its
    name only where none is there yet."""
    b, w, sq, cnt = rec
    # floats as repr: JSON gives them back bit for bit
    raw = {"day": day, "bucket_ns": int(b), "window_ns": int(w), "sq": np.asarray(sq).tolist(),
           "cnt": np.asarray(cnt).tolist()}
    path = folder / f"{(_EPOCH + dt.timedelta(days=day)).isoformat()}.json"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(raw, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            Path(tmp).unlink()
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
            if self.store is not None:  # the day's own record only: other writers' days stay
                self.store.put(self.venue, self.symbol, {self.day: self.baselines.days[self.day]})
                # the next day reads the ``baseline_days`` before it: older files are never read again
                self.store.prune(self.venue, self.symbol, self.day + 1 - params["baseline_days"])
        self._new_day()
