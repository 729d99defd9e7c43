"""The one place ``book_snapshot`` and ``quote`` rows are built from the book stage's arrays.

Every snapshot a book writes (live or batch, L2 or L3) goes through :func:`snapshot_table`, so
they share one list shape: each side lists the levels that exist, best first, at most ``levels``
(see ``BOOK_SNAPSHOT``'s declaration); never a padding value (the list parts come from
:func:`kernels.book_stage.book_lists`). Every rebuilt best bid/offer goes
through :func:`quote_table`.

Small tables are the live flow's common case, so columns go to Arrow without conversion (one
buffer per numpy array) and the constant venue/symbol columns are slices of a cached array.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from tapeflow.schemas.records import BOOK_SNAPSHOT, F_MAYBE_BAD_BOOK, QUOTE, VALID

_SNAPSHOT_SCHEMA = BOOK_SNAPSHOT.arrow_schema()
_QUOTE_SCHEMA = QUOTE.arrow_schema()
_I64, _U8, _U16, _STR = pa.int64(), pa.uint8(), pa.uint16(), pa.string()
_LIST = pa.list_(pa.int64())
_REPEATS: dict[str, pa.Array] = {}
_MAX_REPEATS = 4096  # distinct venue and symbol values kept
_CACHED_ROWS = 256   # a live batch's rows fit; a larger table builds its own column


def _array(values: np.ndarray, kind: pa.DataType, dtype: type) -> pa.Array:
    values = np.ascontiguousarray(values, dtype)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def repeat_string(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times (pa.array of a list costs ~4 us a call, and ~50 ns a row)."""
    cached = _REPEATS.get(value)
    if cached is not None and len(cached) >= n:
        return cached.slice(0, n)
    if n > _CACHED_ROWS:
        # built from its buffers: n equal offsets steps over n copies of the bytes
        raw = value.encode()
        offsets = np.arange(0, (n + 1) * len(raw), len(raw), dtype=np.int32)
        return pa.Array.from_buffers(_STR, n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])
    if len(_REPEATS) >= _MAX_REPEATS:
        _REPEATS.clear()
    cached = _REPEATS[value] = pa.array([value] * _CACHED_ROWS, _STR)
    return cached.slice(0, n)


def flags_of(status: np.ndarray) -> np.ndarray:
    """``F_MAYBE_BAD_BOOK`` where the book status was not VALID (resyncing or crossed), else 0."""
    return np.where(status == VALID, 0, F_MAYBE_BAD_BOOK).astype(np.uint8)


Lists = tuple[np.ndarray, np.ndarray, np.ndarray]  # int32 offsets [m + 1], int64 prices, int64 sizes


def _lists(parts: Lists) -> tuple[pa.Array, pa.Array]:
    offsets, prices, sizes = parts
    off, m = pa.py_buffer(offsets), len(offsets) - 1
    return (pa.Array.from_buffers(_LIST, m, [None, off], children=[_array(prices, _I64, np.int64)]),
            pa.Array.from_buffers(_LIST, m, [None, off], children=[_array(sizes, _I64, np.int64)]))


def snapshot_table(venue: str, symbol: str, levels: int, ts_ns: np.ndarray, recv_ns: np.ndarray,
                   sequence: np.ndarray, status: np.ndarray, bids: Lists, asks: Lists) -> pa.Table:
    """``book_snapshot`` rows of one instrument.

    Args:
        venue, symbol: the instrument.
        levels: the depth asked for (the ``levels`` column).
        ts_ns: int64[m] the instants shown (``ts_event_ns``).
        recv_ns, sequence: int64[m] capture time and sequence of the last event applied.
        status: [m] book status (VALID, RESYNC, CROSSED) at that event.
        bids, asks: each side's levels that exist, best first, at most ``levels``, as list parts
            (:func:`kernels.book_stage.book_lists`).
    """
    m = len(ts_ns)
    bid_px, bid_sz = _lists(bids)
    ask_px, ask_sz = _lists(asks)
    columns = [_array(ts_ns, _I64, np.int64), _array(recv_ns, _I64, np.int64), repeat_string(venue, m),
               repeat_string(symbol, m), _array(sequence, _I64, np.int64),
               _array(np.full(m, levels, np.uint16), _U16, np.uint16), bid_px, bid_sz, ask_px, ask_sz,
               _array(flags_of(status), _U8, np.uint8)]
    return pa.Table.from_arrays(columns, schema=_SNAPSHOT_SCHEMA)


def quote_table(venue: str, symbol: str, ts_event_ns: np.ndarray, recv_ns: np.ndarray, sequence: np.ndarray,
                bbo: np.ndarray, status: np.ndarray) -> pa.Table:
    """``quote`` rows of one instrument's rebuilt best bid and offer.

    Args:
        venue, symbol: the instrument.
        ts_event_ns, recv_ns, sequence: int64[q] of the book events the quotes follow.
        bbo: int64[4, q] bid price, bid size, ask price, ask size (UNDEF_PRICE / 0 for an empty side).
        status: [q] book status there (``flags`` is F_MAYBE_BAD_BOOK unless VALID).
    """
    q = len(ts_event_ns)
    columns = [_array(ts_event_ns, _I64, np.int64), _array(recv_ns, _I64, np.int64), repeat_string(venue, q),
               repeat_string(symbol, q), _array(sequence, _I64, np.int64),
               *(_array(bbo[j], _I64, np.int64) for j in range(4)), _array(flags_of(status), _U8, np.uint8)]
    return pa.Table.from_arrays(columns, schema=_QUOTE_SCHEMA)


class QuoteRows(NamedTuple):
    """One instrument's rebuilt best bid/offer rows as the book stage's arrays (:meth:`table` makes
    the ``quote`` rows): the live flow hands them to the metrics without an Arrow round trip."""

    venue: str
    symbol: str
    ts_event_ns: np.ndarray  # int64[q] of the book events the quotes follow
    ts_recv_ns: np.ndarray  # int64[q]
    sequence: np.ndarray  # int64[q]
    bbo: np.ndarray  # int64[4, q] bid price, bid size, ask price, ask size (UNDEF_PRICE / 0: empty side)
    status: np.ndarray  # uint8[q] book status (``flags`` is F_MAYBE_BAD_BOOK unless VALID)

    def table(self) -> pa.Table:
        """The ``quote`` rows (:func:`quote_table`)."""
        return quote_table(self.venue, self.symbol, self.ts_event_ns, self.ts_recv_ns, self.sequence,
                           self.bbo, self.status)


__all__ = ["QuoteRows", "flags_of", "quote_table", "snapshot_table"]
