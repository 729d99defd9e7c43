"""The detectors over micro-batches: one instrument's trades and grid snapshots as they arrive.

:class:`StreamingSignals` keeps a bounded look-back of the instrument's trades and book grid rows
and, per batch, runs the batch detectors (``whale.detect``, ``withdrawal.detect``) over it and
emits the alerts that became final, so that the rows equal ``detect_tables`` over the whole day:

* the detectors' rolling baselines move a block at a time (``block_quantiles``), so the look-back
  is cut at a whole block of the day (prints for whales, grid rows for withdrawals) and keeps the
  4 blocks the newest rows look back on, plus the parent-order windows (``2 x window + baseline``);
* the refractory periods chain from alert to alert over the whole day, so the detectors run with
  ``refractory_ns = 0`` (every candidate) and the chain is applied here with the last alert's time
  per detector and side carried across batches;
* a whale alert is final once its second has passed (a print may still grow, a parent bin still
  fill); with the hold check (``whale.max_hold_ticks``: a block or sweep is decided ``hold_ns``
  after its print, from the grid's mid) also once a grid row at or after it is in, and the grid is
  then a clock too (its rows come after every trade before them); a withdrawal alert on a grid row
  is final when the row is.

Other detectors plug in at ``LIVE_DETECTORS``: a factory per name, called once per instrument,
giving an object whose ``add(feed)`` takes each batch's :class:`Feed` (the batch's new trades,
grid rows and order events, the price increment, the thresholds in force, whether the stream
ended) and returns its new ``signal`` tables; it keeps what it needs across batches itself and
must stay picklable. The L3 detectors (spoofing, icebergs: ``tapeflow.signals.stream_orders``)
are the first.

What the look-back cannot carry: the price increment (``detect._tick``) is the smallest gap seen so
far, where the day's batch sees the whole day; the two differ only when a finer gap first shows
late in the day. Trades arriving with event times before an already-final second are judged where
they arrive, not re-judged back in time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from tapeflow.schemas.core import concat
from tapeflow.schemas.records import ASK, BID, BOOK_DELTA, BOOK_SNAPSHOT, ORDER_EVENT, SIGNAL, TRADE
from tapeflow.signals import whale, withdrawal
from tapeflow.signals.config import Thresholds, params_hash
from tapeflow.signals.detect import _grid_arrays, _tick, _traded_into, grid_and_levels
from tapeflow.signals.reload import ThresholdsReloader

_S = 1_000_000_000
_TRADE_COLS = ("ts_event_ns", "ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side")
_LOOKBACK_BLOCKS = 4
_GRID_BLOCK = 600  # withdrawal's baseline block in grid rows


@dataclass(frozen=True)
class Feed:
    """One micro-batch as a registered live detector sees it (only what is new in it)."""

    trades: pa.Table | None  # ``trade`` rows, arrival order
    grid: dict[str, np.ndarray] | None  # the new grid rows (``detect._grid_arrays``)
    events: pa.Table | None  # ``order_event`` rows, arrival order
    tick: int  # the price increment: the finest gap between levels seen so far
    thresholds: Thresholds
    final: bool  # the end of the stream: every pending alert is final
    signals: tuple[pa.Table, ...] = ()  # the rows the detectors before this one gave this batch
    baselines: Path | None = None  # where baselines that outlive the process go (``<lake>/_baselines``)


class LiveDetector(Protocol):
    """What ``LIVE_DETECTORS`` factories make: one per instrument, picklable."""

    def add(self, feed: Feed) -> list[pa.Table]:
        """The batch in; the ``signal`` tables that became final out."""
        ...


def _orders(venue: str, symbol: str, preset: str | None) -> LiveDetector:
    from tapeflow.signals.stream_orders import StreamingOrders

    return StreamingOrders(venue, symbol, preset)


def _l2(venue: str, symbol: str, preset: str | None) -> LiveDetector:
    from tapeflow.signals.stream_l2 import StreamingL2

    return StreamingL2(venue, symbol, preset)


def _stealth(venue: str, symbol: str, preset: str | None) -> LiveDetector:
    from tapeflow.signals.stream_stealth import StreamingStealth

    return StreamingStealth(venue, symbol, preset)


def _absorption(venue: str, symbol: str, preset: str | None) -> LiveDetector:
    from tapeflow.signals.stream_absorption import StreamingAbsorption

    return StreamingAbsorption(venue, symbol, preset)


def _iceberg_l2(venue: str, symbol: str, preset: str | None) -> LiveDetector:
    from tapeflow.signals.stream_iceberg_l2 import StreamingIcebergL2

    return StreamingIcebergL2(venue, symbol, preset)


def _composite(venue: str, symbol: str, preset: str | None) -> LiveDetector:
    from tapeflow.signals.stream_composite import StreamingComposite

    return StreamingComposite(venue, symbol, preset)


# the registration point of live detectors beyond whale and withdrawal: name -> factory
LIVE_DETECTORS: dict[str, Callable[[str, str, str | None], LiveDetector]] = {
    "orders": _orders,  # spoofing, iceberg, institutional (its baseline store: Feed.baselines)
    "l2": _l2,  # spike, hidden
    "stealth": _stealth,  # creep, contraction
    "absorption": _absorption,
    "iceberg_l2": _iceberg_l2,  # iceberg, only where the instrument has no order events
    "composite": _composite,  # stealth: reads the rows of the detectors above, so it comes last
}


class StreamingSignals:
    """One instrument's detectors over micro-batches (picklable: Bytewax snapshots it).

    Args:
        venue, symbol: the instrument.
        preset: the thresholds preset (None: the instrument's own or the file's default).
        baselines: the baseline store's root (``<lake>/_baselines``; None: baselines in memory).
    """

    def __init__(self, venue: str, symbol: str, preset: str | None = None, *,
                 baselines: Path | None = None) -> None:
        self.venue, self.symbol, self.preset = venue, symbol, preset
        self.baselines = baselines
        self.trades: dict[str, np.ndarray] = {c: np.zeros(0, np.int64) for c in _TRADE_COLS}
        self.trades["aggressor_side"] = np.zeros(0, np.uint8)
        self.grid: dict[str, np.ndarray] | None = None
        self.dropped_prints = 0  # prints of the day cut from the look-back (whole blocks)
        self.dropped_rows = 0  # grid rows of the day cut from the look-back (whole blocks)
        self.whale_done_ns = np.iinfo(np.int64).min  # whale alerts before this are emitted
        self.whale_hold_ns = 0  # the whale's hold check's delay in force (``whale.hold_delay_ns``)
        self.rows_done = 0  # grid rows (of the day) whose alerts are emitted
        self.tick = 0  # the finest gap between levels seen so far (0: none yet, read as 1)
        self.baseline = CarriedBand()  # the band depths' usual per block and side, carried
        self.last_alert: dict[tuple[str, int], int] = {}
        self.detectors = {name: make(venue, symbol, preset) for name, make in LIVE_DETECTORS.items()}

    def add(self, trades: pa.Table | None, snapshots: pa.Table | None, thresholds: Thresholds,
            *, events: pa.Table | None = None, final: bool = False) -> pa.Table:
        """Take one batch's trades and order events (arrival order) and grid snapshots; returns the
        new ``signal`` rows.

        Args:
            final: the end of the stream: every pending alert is final.
        """
        if trades is not None and trades.num_rows:
            for c in _TRADE_COLS:
                self.trades[c] = np.concatenate([self.trades[c], trades.column(c).to_numpy()])
        g = None
        if snapshots is not None and snapshots.num_rows:
            g = _grid_arrays(snapshots)
            g["seq"] = snapshots.column("sequence").to_numpy()  # events applied: creep and contraction
            self.grid = g if self.grid is None else {k: np.concatenate([self.grid[k], g[k]]) for k in g}
            gap = _finest_gap(g)
            self.tick = min(self.tick, gap) if self.tick and gap else self.tick or gap
        out = [self._whale(thresholds.for_instrument("whale", self.symbol, self.preset), final),
               self._withdrawal(thresholds.for_instrument("withdrawal", self.symbol, self.preset))]
        feed = Feed(trades, g, events, self.tick or 1, thresholds, final, baselines=self.baselines)
        for detector in self.detectors.values():
            out.extend(detector.add(replace(feed, signals=tuple(t for t in out if t is not None))))
        table = concat(SIGNAL, [t for t in out if t is not None])
        if not table.num_rows:
            return table
        return table.sort_by([("ts_event_ns", "ascending"), ("kind", "ascending")])

    def _whale(self, params: dict[str, Any], final: bool) -> pa.Table | None:
        tr = self.trades
        if not len(tr["ts_event_ns"]):
            return None
        done = np.iinfo(np.int64).max if final else int(tr["ts_event_ns"][-1]) // _S * _S
        book = self.grid if self.grid is not None and len(self.grid["ts"]) else None
        if whale.hold_delay_ns(params, book) and not final:
            # a block's or sweep's alert reads the mid at its own time: final once a grid row at or
            # after it is in. The grid is a clock too: a grid row comes after every trade before it
            # (one event stream), so a second the grid has passed is final without a later trade
            grid_last = int(book["ts"][-1])
            done = min(max(done, grid_last // _S * _S), grid_last + 1)
        if done <= self.whale_done_ns:
            return None  # no second became final: no alert did
        judged = None if self.whale_done_ns == np.iinfo(np.int64).min else self.whale_done_ns
        rows = whale.detect(tr, {**params, "refractory_ns": 0}, self.venue, self.symbol,
                            judged_from_ns=judged, book=book, tick=self.tick or 1).table()
        table = refractory_chain(rows, params, self.last_alert, self.whale_done_ns, done)
        self.whale_done_ns = max(self.whale_done_ns, done)
        self.whale_hold_ns = whale.hold_delay_ns(params, book)
        self._cut_trades(params)
        return table

    def _withdrawal(self, params: dict[str, Any]) -> pa.Table | None:
        g = self.grid
        first_new = self.rows_done - self.dropped_rows
        if g is None or first_new >= len(g["ts"]):
            return None  # no new grid row: nothing to judge
        lag = max(1, params["window_ns"] // params["grid_ns"])
        # the new rows, their reference rows ``lag`` back, and the row before them (its candidate
        # state opens or continues a run); the whole look-back when the band depths' inputs changed
        tick = self.tick or 1
        same = self.baseline.key == (tick, params["within_ticks"], lag)
        start = max(0, first_new - lag - 1) if same else 0
        if start:
            g = {k: v[start:] for k, v in g.items()}
        # the volume traded between two rows of the slice: the trades received after its first row
        after = self.trades["ts_recv_ns"] > g["recv"][0]
        traded = _traded_into(g["recv"], {c: v[after] for c, v in self.trades.items()})
        every = {**params, "refractory_ns": 0}
        rows = withdrawal.detect(g, traded, tick, every, self.venue, self.symbol,
                                 baseline=self.baseline, first_row=self.dropped_rows + start).table()
        lo = int(self.grid["ts"][first_new])
        table = refractory_chain(rows, params, self.last_alert, lo)
        g = self.grid
        self.rows_done = self.dropped_rows + len(g["ts"])
        self._cut_grid(params)
        return table

    def _cut_trades(self, params: dict[str, Any]) -> None:
        tr = self.trades
        known = np.flatnonzero((tr["aggressor_side"] == BID) | (tr["aggressor_side"] == ASK))
        if not len(known):
            return
        ts, side = tr["ts_event_ns"][known], tr["aggressor_side"][known]
        new = np.ones(len(ts), bool)
        new[1:] = (ts[1:] != ts[:-1]) | (side[1:] != side[:-1])
        starts = known[np.flatnonzero(new)]  # trade index of each print's first trade
        print_ts = tr["ts_event_ns"][starts]
        block = max(1, params["baseline_trades"] // _LOOKBACK_BLOCKS)
        pending = int(np.searchsorted(print_ts, self.whale_done_ns))  # first print not yet final
        back_ns = max(2 * params["parent_window_ns"] + params["parent_baseline_ns"],
                      params["local_window_ns"] + params["hold_ns"]) + 2 * _S
        need = min(pending - (_LOOKBACK_BLOCKS + 1) * block,
                   int(np.searchsorted(print_ts, self.whale_done_ns - back_ns)))
        # the withdrawal's traded volume needs the trades since the look-back's first grid row
        if self.grid is not None and len(self.grid["recv"]):
            order_ok = np.flatnonzero(tr["ts_recv_ns"][starts] >= int(self.grid["recv"][0]))
            need = min(need, int(order_ok[0]) if len(order_ok) else len(starts))
        cut = (self.dropped_prints + need) // block * block - self.dropped_prints
        if cut <= 0:
            return
        at = int(starts[cut])
        self.trades = {c: v[at:] for c, v in tr.items()}
        self.dropped_prints += cut

    def _cut_grid(self, params: dict[str, Any]) -> None:
        assert self.grid is not None
        lag = max(1, params["window_ns"] // params["grid_ns"])
        pending = self.rows_done  # every row's alerts are out: the next batch's rows look back
        need = (pending // _GRID_BLOCK - _LOOKBACK_BLOCKS) * _GRID_BLOCK - lag
        # the whale's pending prints read the mid from just before them (``whale.mid_moves``):
        # the rows from the last two-sided one before its first undecided instant are kept
        g, tr = self.grid, self.trades["ts_event_ns"]
        undecided = self.whale_done_ns if self.whale_done_ns > np.iinfo(np.int64).min else (
            int(tr[0]) if len(tr) else None)
        if undecided is not None:
            wait = undecided - self.whale_hold_ns - 2 * _S
            two_sided = np.flatnonzero((g["ts"] <= wait) & (g["bid_p"][:, 0] > 0) & (g["ask_p"][:, 0] > 0))
            need = min(need, self.dropped_rows + (int(two_sided[-1]) if len(two_sided) else 0))
        cut = need // _GRID_BLOCK * _GRID_BLOCK - self.dropped_rows
        if cut <= 0:
            return
        self.grid = {k: v[cut:] for k, v in self.grid.items()}
        self.dropped_rows += cut


def _finest_gap(grid: dict[str, np.ndarray]) -> int:
    # detect._tick of these rows alone, 0 where they show no gap (a few rows of a thin book may
    # not; _tick's fallback of 1 would then stick as the finest tick of the day)
    for name in ("bid_p", "ask_p"):
        p = grid[name]
        if ((p[:, 1:] > 0) & (p[:, :-1] > 0) & (p[:, 1:] != p[:, :-1])).any():
            return _tick(grid)
    return 0


class CarriedBand(withdrawal.BlockBaseline):
    """The withdrawal baseline over slices of the day (``withdrawal.detect`` run on the new grid
    rows and the rows they look back on, not the whole look-back): the band depths ("then") of the
    last blocks are kept per side, and each block's usual depth is computed once from the 4 whole
    blocks before it, with ``BlockBaseline``'s arithmetic (``block_quantiles``' bit for bit)."""

    def __init__(self) -> None:
        super().__init__()
        self.then: dict[int, np.ndarray] = {1: np.zeros(0), -1: np.zeros(0)}  # from day row then_first
        self.then_first: dict[int, int] = {1: 0, -1: 0}

    def check(self, key: tuple[int, ...]) -> None:
        """Forget the kept band depths too when their inputs changed."""
        if key != self.key:
            self.then = {1: np.zeros(0), -1: np.zeros(0)}
        super().check(key)

    def usual(self, side: int, then: np.ndarray, first_row: int, lag: int) -> np.ndarray:
        """Per row of ``then`` (the day's rows from ``first_row``; its first ``lag`` rows lack their
        reference rows unless ``first_row`` is 0), the usual depth of its block."""
        valid = first_row + (lag if first_row else 0)  # the first day row whose band depth is right
        kept, kept_first = self.then[side], self.then_first[side]
        end = kept_first + len(kept)
        if not len(kept) or end < valid:
            kept, kept_first, end = np.zeros(0), valid, valid
        if first_row + len(then) > end:
            kept = np.r_[kept, then[end - first_row:]]
        known = self.medians[side]
        out = np.empty(len(then))
        last_block = (first_row + len(then) - 1) // _GRID_BLOCK
        for block in range(first_row // _GRID_BLOCK, last_block + 1):
            value = known.get(block)
            if value is None:
                lo = max(0, block - _LOOKBACK_BLOCKS) * _GRID_BLOCK
                window = kept[max(0, lo - kept_first):max(0, block * _GRID_BLOCK - kept_first)]
                value = withdrawal._median(window)
                if kept_first <= lo:  # the whole window is kept: the day's median
                    known[block] = value
            a, b = max(first_row, block * _GRID_BLOCK), min(first_row + len(then), (block + 1) * _GRID_BLOCK)
            out[a - first_row:b - first_row] = value
        # keep the blocks the next block's median looks back on
        cut = max(0, (last_block - _LOOKBACK_BLOCKS) * _GRID_BLOCK - kept_first)
        self.then[side], self.then_first[side] = kept[cut:], kept_first + cut
        for block in [b for b in known if b < last_block - _LOOKBACK_BLOCKS]:
            del known[block]
        return out


def refractory_chain(rows: pa.Table, params: dict[str, Any], last_alert: dict[tuple[str, int], int],
                     lo_ns: int = np.iinfo(np.int64).min, hi_ns: int = np.iinfo(np.int64).max) -> pa.Table:
    """The refractory chain over the whole day, carried in ``last_alert`` (detector, side -> the
    last alert's time): of ``rows`` (every candidate, found with ``refractory_ns = 0``) with
    ``lo_ns <= ts_event_ns < hi_ns``, the first, then each one at least ``refractory_ns`` after
    the last alert of the same detector and side; ``params_hash`` set from ``params``."""
    if not rows.num_rows:
        return rows
    ts = rows.column("ts_event_ns").to_numpy()
    side = rows.column("side").to_numpy()
    detector = rows.column("detector")[0].as_py()
    keep = []
    for i in np.argsort(ts, kind="stable").tolist():
        t = int(ts[i])
        if not lo_ns <= t < hi_ns:
            continue
        key = (detector, int(side[i]))
        last = last_alert.get(key)
        if last is None or t - last >= params["refractory_ns"]:
            keep.append(i)
            last_alert[key] = t
    kept = rows.take(pa.array(sorted(keep), pa.int64()))
    index = kept.schema.get_field_index("params_hash")
    return kept.set_column(index, kept.schema.field(index),
                           pa.array([params_hash(params)] * kept.num_rows, pa.string()))


class LiveSignals:
    """The flow's signals stage for one instrument: its own book on the thresholds' grid, the
    streaming detectors, and the thresholds file polled once per batch.

    The book is rebuilt here on ``detect.grid_and_levels`` (the withdrawal grid, 100 ms by default)
    rather than read from the flow's snapshots (1 s for the metrics): the rows then equal the
    batch ``detect_tables`` over the same grid. That grid and depth are fixed at start; an edit of
    ``withdrawal.grid_ns`` or a wider ``within_ticks`` takes effect at the next start (every other
    key at the next batch).

    Args:
        path: the thresholds file (``tapeflow.signals.config.config_path``).
        preset: the thresholds preset (None: per instrument / the file's default).
        min_interval_s: the file is read at most this often (the poll is once per batch).
        baselines: the root of the baselines that outlive a restart (``<lake>/_baselines``:
            institutional pressure's 20-day baseline); None: kept in memory only.
    """

    def __init__(self, path: Path, preset: str | None = None, *, min_interval_s: float = 1.0,
                 baselines: Path | None = None) -> None:
        from tapeflow.book.stage import BookStage

        self.reloader = ThresholdsReloader(path, min_interval_s=min_interval_s)
        self.preset = preset
        self.baselines = baselines
        grid_ns, levels = grid_and_levels(self.reloader.current)
        self.book = BookStage("auto", levels, grid_ns)
        self.stream: StreamingSignals | None = None
        self.rejected: list[str] = []  # the messages of rejected edits, in order

    def apply(self, venue: str, symbol: str, tables: Mapping[str, pa.Table]) -> pa.Table:
        """One batch of the instrument's decoded records in; its new ``signal`` rows out."""
        self._poll()
        book_in = {n: t for n, t in tables.items() if n in _BOOK_INPUTS and t.num_rows}
        snaps = self.book.apply(book_in)[BOOK_SNAPSHOT.name] if book_in else None
        if self.stream is None:
            self.stream = StreamingSignals(venue, symbol, self.preset, baselines=self.baselines)
        return self.stream.add(tables.get(TRADE.name), snaps, self.reloader.current,
                               events=tables.get(ORDER_EVENT.name))

    def close(self) -> pa.Table:
        """End of stream: the book's last grid instant and every pending alert."""
        snaps = self.book.close()[BOOK_SNAPSHOT.name]
        if self.stream is None:
            return SIGNAL.empty_table()
        return self.stream.add(None, snaps, self.reloader.current, final=True)

    def _poll(self) -> None:
        before = self.reloader.last_error
        self.reloader.poll()
        error = self.reloader.last_error
        if error is not None and error != before:
            self.rejected.append(error)
            _log.warning("%s", error)


_BOOK_INPUTS = (ORDER_EVENT.name, BOOK_DELTA.name, BOOK_SNAPSHOT.name)
_log = logging.getLogger("tapeflow.signals")
