"""A micro-batch cut per instrument at the live flow's entry, each table's numeric columns converted once.

Every stage of the flow reads the same few integer columns of a batch: the health stage the capture
and venue times and sequences, the book its side, action, price, size and flags, the bars and
metrics the trades' prices, sizes and sides. An Arrow column read costs a microsecond or two
whatever its length, and a one-event batch (a quiet feed) is a common case, so the flow converts
each table once, where it enters (:func:`route`): one Arrow call turns the columns of
:data:`LAYOUTS` into one int64 matrix (rows = columns, C order), and the stages read its rows.

:func:`route` also tells each table's instrument once (a one-row table by its two strings, a larger
one by its string buffers), so no stage checks it again: a :class:`RoutedBatch` is one
instrument's tables, its matrices and its ``(venue, symbol)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from tapeflow.book.grid import one_instrument
from tapeflow.book.instrument import FIELDS
from tapeflow.errors import TapeflowError
from tapeflow.live.batching import Batch, instrument_rows
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, QUOTE, REJECTED, SOURCE_SWITCH, STATUS, TRADE

Item = tuple[str, pa.Table]
# Tables with no per-instrument state: they bypass the instrument pipeline (a failover decision is
# about a logical instrument, not about the venue/symbol key its row carries).
PASS_THROUGH = (REJECTED.name, STATUS.name, SOURCE_SWITCH.name)
# rows every matrix ends with, addressed from the end (FLAGS .. EVENT)
TAIL = ("flags", "ts_recv_ns", "sequence", "ts_event_ns")
FLAGS, RECV, SEQUENCE, EVENT = -4, -3, -2, -1
# the columns converted per record: the book's kernel inputs (kernels.book_stage.X_*), what the bars
# and metrics read of a trade, what the health stage reads of anything else
LAYOUTS: dict[str, tuple[str, ...]] = {
    BOOK_DELTA.name: FIELDS["l2"],
    ORDER_EVENT.name: FIELDS["l3"],
    TRADE.name: ("aggressor_side", "price_nanos", "size_nanos", *TAIL),
    QUOTE.name: TAIL,
}
# trade matrix rows
T_SIDE, T_PRICE, T_SIZE = 0, 1, 2
_RECORDS = {r.name: r for r in (BOOK_DELTA, ORDER_EVENT, TRADE, QUOTE)}
_SCHEMAS = {name: r.arrow_schema() for name, r in _RECORDS.items()}
_POSITIONS = {name: [r.column_names.index(c) for c in LAYOUTS[name]] for name, r in _RECORDS.items()}
_VENUE, _SYMBOL = (BOOK_DELTA.column_names.index(c) for c in ("venue", "symbol"))  # every record's
_ORDER_ID = ORDER_EVENT.column_names.index("order_id")
for _name, _record in _RECORDS.items():
    if _record.column_names[_VENUE] != "venue" or _record.column_names[_SYMBOL] != "symbol":
        raise TapeflowError(f"{_name}: venue and symbol are not columns {_VENUE} and {_SYMBOL}")


class RoutedBatch(dict[str, pa.Table]):
    """One instrument's part of a micro-batch: its tables by record name (a ``Batch``), plus
    ``columns``, the matrix of each table named in :data:`LAYOUTS`, and ``order_ids`` (uint64, apart:
    they do not fit an int64 matrix) of its ``order_event`` rows. Picklable (Bytewax moves items
    between workers as pickles)."""

    __slots__ = ("columns", "order_ids", "symbol", "venue")

    def __init__(self, venue: str, symbol: str) -> None:
        # dict.__new__ made the (empty) mapping: no dict.__init__ call, one per instrument per batch
        self.venue, self.symbol = venue, symbol
        self.columns: dict[str, np.ndarray] = {}
        self.order_ids: np.ndarray | None = None

    def __reduce__(self) -> tuple:
        return _rebuild, (self.venue, self.symbol, dict(self), self.columns, self.order_ids)

    def key(self) -> str:
        """The routing key ``venue/symbol``."""
        return instrument_key(self.venue, self.symbol)

    def put(self, name: str, table: pa.Table, matrix: np.ndarray | None,
            order_ids: np.ndarray | None = None) -> None:
        """Add a table (a batch holds one table per record name) with its matrix."""
        self[name] = table
        if matrix is not None:
            self.columns[name] = matrix
        if order_ids is not None:
            self.order_ids = order_ids


def _rebuild(venue: str, symbol: str, tables: dict[str, pa.Table], columns: dict[str, np.ndarray],
             order_ids: np.ndarray | None) -> RoutedBatch:
    out = RoutedBatch(venue, symbol)
    out.update(tables)
    out.columns, out.order_ids = columns, order_ids
    return out


@dataclass
class Routed:
    """A whole micro-batch after :func:`route`.

    Attributes:
        venue: the venue of its first non-empty table (the health stage's key).
        instruments: one :class:`RoutedBatch` per instrument, by routing key, in order of first row.
        passthrough: dead letters and STATUS rows by table name.
    """

    venue: str
    instruments: dict[str, RoutedBatch] = field(default_factory=dict)
    passthrough: dict[str, pa.Table] = field(default_factory=dict)

    def items(self) -> list[Item]:
        """The dead letters and STATUS rows as ``(table_name, table)`` items (``rejected`` first)."""
        return [(name, self.passthrough[name]) for name in PASS_THROUGH if name in self.passthrough]

    def keyed(self) -> list[tuple[str, RoutedBatch | list[Item]]]:
        """What the instrument step gets: ``(venue/symbol, RoutedBatch)`` per instrument, then the
        dead letters and STATUS rows as one list of items under the venue's own key (no instrument
        key has no ``/``), which that step hands on unchanged."""
        out: list[tuple[str, RoutedBatch | list[Item]]] = list(self.instruments.items())
        items = self.items()
        if items:
            out.append((self.venue, items))
        return out


def instrument_key(venue: str, symbol: str) -> str:
    """The routing key of one instrument."""
    return f"{venue}/{symbol}"


def route(batch: Batch) -> Routed:
    """Cut a micro-batch per instrument (row order kept), converting each table's numeric columns once.

    Tables named with a leading ``_`` (heartbeats, degraded-window changes) are split per
    instrument without a matrix; a table of another record (``instrument``, ``statistic``...) or
    lacking a column of its layout travels without one (the stages read it as a table).
    """
    routed = Routed("")
    instruments = routed.instruments
    first = True
    for name, table in batch.items():
        if not table.num_rows:
            continue
        if name in PASS_THROUGH:
            routed.passthrough[name] = table
            if first:
                routed.venue, first = str(table.column("venue")[0].as_py()), False
            continue
        matrix, groups = _convert(name, table)
        order_ids = order_ids_of(table) if name == ORDER_EVENT.name and matrix is not None else None
        if first:
            routed.venue, first = groups[0][0], False  # the venue of the table's first row
        for venue, symbol, rows in groups:
            key = f"{venue}/{symbol}"  # instrument_key, inlined: a call per table of a 1-event batch
            part = instruments.get(key)
            if part is None:
                part = instruments[key] = RoutedBatch(venue, symbol)
            if rows is None:
                # RoutedBatch.put, inlined
                part[name] = table
                if matrix is not None:
                    part.columns[name] = matrix
                if order_ids is not None:
                    part.order_ids = order_ids
            else:
                part.put(name, table.take(pa.array(rows)), None if matrix is None else matrix[:, rows],
                         None if order_ids is None else order_ids[rows])
    return routed


def routed_one(batch: Batch) -> RoutedBatch | None:
    """One instrument's batch as a :class:`RoutedBatch` (None when it has no instrument rows).

    Raises:
        TapeflowError: the batch holds rows of several instruments.
    """
    if isinstance(batch, RoutedBatch):
        return batch
    parts = route(batch).instruments
    if len(parts) > 1:
        raise TapeflowError(f"an instrument pipeline got rows of {', '.join(parts)}: route the batch first")
    return next(iter(parts.values()), None)


def instruments_of(name: str, table: pa.Table) -> list[tuple[str, str, np.ndarray | None]]:
    """``(venue, symbol, row indices)`` per instrument of a non-empty table named ``name``, in order
    of first row (indices None: every row)."""
    return _convert(name, table, matrix=False)[1]


def matrix_of(name: str, table: pa.Table) -> np.ndarray | None:
    """int64[len(LAYOUTS[name]), n]: the table's columns of its layout as rows (None: no layout, or a
    column missing)."""
    return _convert(name, table)[0]


def _convert(name: str, table: pa.Table, *, matrix: bool = True
             ) -> tuple[np.ndarray | None, list[tuple[str, str, np.ndarray | None]]]:
    positions = _POSITIONS.get(name)
    if positions is None or not table.schema.equals(_SCHEMAS[name]):
        return (_matrix_by_name(name, table) if matrix else None), instrument_rows(table)
    batches = table.to_batches()
    if len(batches) == 1 and table.num_rows == 1:
        # the smallest batch: its two strings cost less than any check, its matrix one Arrow call
        rb = batches[0]
        groups: list[tuple[str, str, np.ndarray | None]] = [
            (rb.column(_VENUE).to_pylist()[0], rb.column(_SYMBOL).to_pylist()[0], None)]
        return (rb.select(positions).to_tensor(row_major=False).to_numpy().T if matrix else None), groups
    key = one_instrument(table)
    groups = [(*key, None)] if key is not None else instrument_rows(table)
    return (_tensor(batches, positions) if matrix else None), groups


def _matrix_by_name(name: str, table: pa.Table) -> np.ndarray | None:
    layout = LAYOUTS.get(name)
    if layout is None:
        return None
    names = table.schema.names
    if any(c not in names for c in layout):
        return None
    return _tensor(table.to_batches(), [names.index(c) for c in layout])


def _tensor(batches: list[pa.RecordBatch], positions: list[int]) -> np.ndarray:
    # one Arrow call per record batch: a column-major tensor, transposed to [fields, rows]
    if len(batches) == 1:
        return batches[0].select(positions).to_tensor(row_major=False).to_numpy().T
    parts = [b.select(positions).to_tensor(row_major=False).to_numpy().T for b in batches if b.num_rows]
    return parts[0] if len(parts) == 1 else np.ascontiguousarray(np.concatenate(parts, axis=1))


def order_ids_of(table: pa.Table) -> np.ndarray:
    """The ``order_id`` column of an ``order_event`` table as uint64."""
    column = table.column("order_id")
    arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return arr.to_numpy(zero_copy_only=False).astype(np.uint64, copy=False)


__all__ = ["EVENT", "FLAGS", "LAYOUTS", "PASS_THROUGH", "RECV", "SEQUENCE", "T_PRICE", "T_SIDE", "T_SIZE",
           "TAIL", "Item", "Routed", "RoutedBatch", "instrument_key", "instruments_of", "matrix_of",
           "order_ids_of", "route", "routed_one"]
