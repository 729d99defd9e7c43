"""One stored instrument-day's detectors over slices of the day, in bounded memory.

The Dagster ``signals`` asset used to read a day's trades and order events whole and rebuild its
whole book grid (``tapeflow.signals.history.day_inputs``), then run the batch detectors over all of
it: its memory grew with the day (~340 MiB per M events). :func:`detect_day` gives the same rows
from the day read in slices, with the live stage's detectors (``tapeflow.signals.stream``:
:class:`StreamingSignals`, whose carried state and look-backs are tested equal, row for row, to the
batch detectors whatever the cuts):

1. the book is rebuilt on the thresholds' grid from the day before and the day, fed to the book
   stage in slices of ``slice_rows`` (as ``tapeflow.book.partition.rebuild_slices``); the day's grid
   rows are spilled to a temporary Arrow file, and the day's price increment (``detect._tick``, the
   finest gap between levels over the whole day) is found on the way;
2. the spilled grid is read back piece by piece, and each piece goes to the streaming detectors
   with the day's trades and order events received before the capture time the book had reached
   when it made that piece (so every grid row comes with every row received up to its instant, as
   in the live flow); the streaming detectors start with the day's price increment (the live stage
   only knows the finest gap so far) and with the institutional baseline of the days before.

Memory: two slices of rows, one grid piece, the detectors' look-backs (whole baseline blocks), the
day's ``signal`` rows. Days without order events (L2 venues) still run whole
(:func:`detect_whole_day`): their L2 spoofing detector has no streaming form yet.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from tapeflow.batch.normalize import split_by_target
from tapeflow.batch.slices import read_slices
from tapeflow.batch.targets import Target
from tapeflow.book.partition import arrival_slices
from tapeflow.book.stage import BookStage
from tapeflow.schemas import concat
from tapeflow.schemas.records import BOOK_DELTA, BOOK_SNAPSHOT, ORDER_EVENT, SIGNAL, TRADE
from tapeflow.signals import iceberg, institutional, spoofing
from tapeflow.signals.config import Thresholds
from tapeflow.signals.detect import _grid_arrays, detect_tables, grid_and_levels, instruments_of
from tapeflow.signals.institutional import Baselines
from tapeflow.signals.orders import detect_orders
from tapeflow.signals.stream import StreamingSignals, _finest_gap
from tapeflow.signals.stream_institutional import StreamingInstitutional
from tapeflow.storage import lake as lake_store

__all__ = ["SLICE_ROWS", "DaySignals", "detect_day", "detect_whole_day"]

# the asset's order (``detect.detect_format``'s), then the rest of a row: ties never depend on the cuts
ORDER = [(c, "ascending") for c in ("venue", "symbol", "ts_event_ns", "kind", "side", "detector",
                                    "price_nanos", "size_nanos", "evidence")]
_NEVER = np.iinfo(np.int64).max
# rows per slice: the streaming detectors copy a batch's columns a few times over (~0.5 KB per order
# event in all), so a quarter of the lake's 1 M-row slices; a batch costs the detectors a pass over
# their look-backs (a few 600-row blocks), small beside 250 k events
SLICE_ROWS = 250_000
_L3_NAMES = [iceberg.NAME, institutional.NAME, spoofing.NAME]  # ``orders.detect_orders``' detectors


@dataclass
class DaySignals:
    """The ``signal`` rows of one instrument-day and what the run saw."""

    table: pa.Table
    trade_span_ns: tuple[int, int] | None  # the day's trades' first and last event time
    pieces: int  # micro-batches the detectors were fed (1: the day whole)
    grid_rows: int  # the day's rows of the detectors' book grid
    look_back_cut_rows: int = 0  # grid rows the streaming detectors forgot (0: the day whole)


def detect_day(lake: Path, t: Target, thresholds: Thresholds, *, baselines: Baselines | None = None,
               preset: str | None = None, slice_rows: int = SLICE_ROWS,
               spill_dir: Path | None = None) -> DaySignals:
    """Every detector over the stored day ``t``, read in slices of ``slice_rows`` rows.

    Equal, row for row (in :data:`ORDER`), to :func:`detect_whole_day`. A day without order
    events runs whole (see the module docstring).

    Args:
        baselines: institutional pressure's records of the days before ``t``
            (``tapeflow.signals.history.institutional_history``); the day's own record is added to
            it. None: the day judged against itself.
        spill_dir: where the day's grid is spilled (a temporary folder in it; default: the system's).
    """
    if not lake_store.partition_rows(ORDER_EVENT, lake, t.venue, t.symbol, t.date):
        return detect_whole_day(lake, t, thresholds, baselines=baselines, preset=preset)
    grid_ns, levels = grid_and_levels(thresholds)
    with tempfile.TemporaryDirectory(prefix="tapeflow-signals-", dir=spill_dir) as tmp:
        spill = Path(tmp) / "grid.arrow"
        pieces, tick, grid_rows = _spill_grid(lake, t, levels, grid_ns, slice_rows, spill)
        stream = _stream(t, preset, tick, baselines)
        trades = _Cursor(read_slices(TRADE, lake, t, slice_rows))
        events = _Cursor(read_slices(ORDER_EVENT, lake, t, slice_rows))
        out: list[pa.Table] = []
        fed = 0
        with pa.OSFile(str(spill)) as f, ipc.open_file(f) as grid:  # read, not mapped: pages not kept
            for batch, reached in pieces[:-1]:
                snaps = _piece(grid, batch)
                tr, ev = trades.before(reached), events.before(reached)
                if snaps is None and tr is None and ev is None:
                    continue
                out.append(stream.add(tr, snaps, thresholds, events=ev))
                fed += 1
            tr, ev = trades.before(_NEVER), events.before(_NEVER)  # received after the book's last event
            if tr is not None or ev is not None:
                out.append(stream.add(tr, None, thresholds, events=ev))
                fed += 1
            out.append(stream.add(None, _piece(grid, pieces[-1][0]), thresholds, final=True))
    table = concat(SIGNAL, out)
    if not trades.rows:  # the batch runs the book's detectors per instrument with trades: the L3 ones only
        table = table.filter(pc.is_in(table.column("detector"), pa.array(_L3_NAMES)))
    span = (trades.first_ns, trades.last_ns) if trades.rows else None
    return DaySignals(table.sort_by(ORDER) if table.num_rows else table, span, fed + 1, grid_rows,
                      stream.dropped_rows)


def detect_whole_day(lake: Path, t: Target, thresholds: Thresholds, *, baselines: Baselines | None = None,
                     preset: str | None = None) -> DaySignals:
    """Every detector over the stored day ``t`` read whole (``history.day_inputs``): the batch path."""
    from tapeflow.signals.history import day_inputs

    grid_ns, levels = grid_and_levels(thresholds)
    trades, snaps, events = day_inputs(lake, t, grid_ns, levels)
    mine = {(t.venue, t.symbol): baselines} if baselines is not None else None
    table = concat(SIGNAL, [detect_tables(trades, snaps, thresholds, preset=preset,
                                          order_ids=instruments_of(events)),
                            *detect_orders(events, snaps, thresholds, preset=preset, baselines=mine)])
    ts = trades.column("ts_event_ns")
    span = (pc.min(ts).as_py(), pc.max(ts).as_py()) if trades.num_rows else None
    return DaySignals(table.sort_by(ORDER) if table.num_rows else table, span, 1, snaps.num_rows)


def _stream(t: Target, preset: str | None, tick: int, baselines: Baselines | None) -> StreamingSignals:
    stream = StreamingSignals(t.venue, t.symbol, preset)
    # the batch detectors take the whole day's price increment; the live stage the finest gap so far
    stream.tick = tick
    # the day has order events: the L3 iceberg, never the L2 one (the batch's ``order_ids``)
    stream.detectors["iceberg_l2"].has_order_ids = True  # type: ignore[attr-defined]
    # institutional pressure judged on the given days before, not the live stage's store
    institutional = StreamingInstitutional(t.venue, t.symbol, None)
    institutional.baselines = baselines if baselines is not None else Baselines()
    stream.detectors["orders"].institutional = institutional  # type: ignore[attr-defined]
    return stream


def _spill_grid(lake: Path, t: Target, levels: int, grid_ns: int, slice_rows: int,
                spill: Path) -> tuple[list[tuple[int | None, int]], int, int]:
    """Rebuild the book from the day before and the day in slices; write the day's grid rows to
    ``spill``. Returns, per piece the book stage made, (its record batch in ``spill`` or None,
    the capture time every row before which the book had seen), the day's price increment and the
    number of grid rows written."""
    stage = BookStage("auto", levels, grid_ns)
    days = [t.previous(), t]
    pieces: list[tuple[int | None, int]] = []
    gaps: list[int] = []
    written: list[int] = []
    reached = np.iinfo(np.int64).min
    with ipc.new_file(str(spill), BOOK_SNAPSHOT.arrow_schema()) as writer:
        def keep(snaps: pa.Table, until: int) -> None:
            day = split_by_target(snaps, [t]).get(t) if snaps.num_rows else None
            if day is None or not day.num_rows:
                pieces.append((None, until))
                return
            day = day.select(BOOK_SNAPSHOT.column_names).cast(BOOK_SNAPSHOT.arrow_schema()).combine_chunks()
            gaps.append(_finest_gap(_grid_arrays(day)))
            writer.write_batch(day.to_batches()[0] if day.num_rows else day)
            written.append(day.num_rows)
            pieces.append((writer.stats.num_record_batches - 1, until))

        for record in (ORDER_EVENT, BOOK_DELTA):  # the replay's order under auto (rebuild_slices')
            for rows in arrival_slices(record, [read_slices(record, lake, d, slice_rows) for d in days]):
                # rows received at the slice's last capture time may go on in the next slice: a
                # detector gets only the rows received before it (the grid it sees is then final)
                reached = max(reached, int(rows.column("ts_recv_ns").to_numpy().max()))
                keep(stage.apply({record.name: rows})[BOOK_SNAPSHOT.name], reached)
        keep(stage.close()[BOOK_SNAPSHOT.name], _NEVER)
    positive = [g for g in gaps if g > 0]
    return pieces, min(positive) if positive else 1, sum(written)


def _piece(grid: ipc.RecordBatchFileReader, batch: int | None) -> pa.Table | None:
    return None if batch is None else pa.Table.from_batches([grid.get_batch(batch)])


class _Cursor:
    """The rows of a partition read in slices (``ts_recv_ns`` order), handed out up to a capture time."""

    def __init__(self, slices: Iterator[pa.Table]) -> None:
        self.slices, self.held = slices, None
        self.rows, self.first_ns, self.last_ns = 0, _NEVER, np.iinfo(np.int64).min

    def before(self, until_ns: int) -> pa.Table | None:
        """The rows not handed out yet received before ``until_ns``."""
        parts = []
        while True:
            if self.held is None:
                self.held = next(self.slices, None)
                if self.held is None:
                    break
            recv = self.held.column("ts_recv_ns").to_numpy()
            n = int(np.searchsorted(recv, until_ns, side="left"))
            if n:
                parts.append(self.held.slice(0, n))
            if n < self.held.num_rows:
                self.held = self.held.slice(n)
                break
            self.held = None
        if not parts:
            return None
        out = pa.concat_tables(parts)
        ts = out.column("ts_event_ns")
        self.rows += out.num_rows
        self.first_ns = min(self.first_ns, pc.min(ts).as_py())
        self.last_ns = max(self.last_ns, pc.max(ts).as_py())
        return out
