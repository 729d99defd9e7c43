"""Book and flow metrics on the snapshot time grid: batch :func:`metrics` (live: ``LiveMetrics``).

One ``metric`` row per ``book_snapshot`` row (the capture-time grid of ``tapeflow book``, see
``tapeflow.book.grid_rows``). Quotes and trades join the grid the same way the book does: a row
belongs to the first grid instant at or after the running maximum of its ``ts_recv_ns``, and a
sample ``g`` takes every quote and trade that belongs to an instant in ``(previous sample, g]``.

* from the snapshot: ``mid = bid + (ask - bid) // 2``, ``spread = ask - bid``,
  ``spread_bps = spread / mid * 1e4``, exact ``microprice = (bid*ask_size + ask*bid_size) //
  (bid_size + ask_size)``, depths over the top ``levels`` levels and
  ``imbalance = (bid_depth - ask_depth) / (bid_depth + ask_depth)``;
* from the quotes in the sample: ``ofi`` summed per Cont, Kukanov and Stoikov over every BBO change
  (``kernels.metrics.quote_events``), ``realized_vol = sqrt(sum of squared log mid returns)``
  (``math.fsum``: exact, so the sum does not depend on how the quotes were batched; NaN without a
  return);
* from the trades: ``cvd`` = buyer- minus seller-initiated volume since the start of the input,
  reset at each UTC midnight: a sample counts the trades whose instant lies in its own UTC day
  ``(midnight, next midnight]`` (the midnight sample closes the day before).

``flags`` is F_MAYBE_BAD_BOOK when the snapshot carried it, a quote in the sample did, or the quote
in effect when the sample began did (the book was suspect at some point of the interval).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from kernels.metrics import book_metrics, grid_end, quote_events
from tapeflow.book.grid import instrument_groups, single_value
from tapeflow.derived.bars import interval_ns
from tapeflow.errors import TapeflowError
from tapeflow.schemas.core import RecordType
from tapeflow.schemas.records import ASK, BID, BOOK_SNAPSHOT, F_MAYBE_BAD_BOOK, METRIC, QUOTE, TRADE

# Empty tables are immutable and costly to build (a schema.empty_table() takes ~0.3 ms): built once.
_EMPTY_METRIC = METRIC.empty_table()
_METRIC_SCHEMA = METRIC.arrow_schema()
_METRIC_FIELDS = [(f.name, f.type) for f in _METRIC_SCHEMA]  # iterating a schema builds objects
_EMPTY_QUOTE = QUOTE.empty_table()
_EMPTY_TRADE = TRADE.empty_table()

DAY_NS = 86_400_000_000_000


def _check(table: pa.Table, record: RecordType, what: str) -> None:
    if table.schema.names != record.column_names:
        raise TapeflowError(f"metrics needs a {what} table, got columns {table.schema.names}")


def by_instrument(table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    """``(venue, symbol, rows)`` per instrument in order of first row (rows keep their order).

    The live flow keys its batches by instrument, so a one-instrument table, the common case, is
    recognized with two comparisons and passed through without a copy.
    """
    if table.num_rows == 0:
        return []
    venue, symbol = single_value(table.column("venue")), single_value(table.column("symbol"))
    if venue is not None and symbol is not None:
        return [(venue, symbol, table)]
    return [(v, s, table.take(pa.array(idx))) for v, s, idx in instrument_groups(table)]


def _list_parts(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    # offsets index the child values as they are (no copy even for a sliced list array)
    arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return arr.values.to_numpy(), arr.offsets.to_numpy()


def book_fields(snapshots: pa.Table, levels: int) -> dict[str, np.ndarray]:
    """The metric columns that depend on the snapshot alone (one instrument or many).

    Returns:
        ``mid_price_nanos, spread_nanos, spread_bps, microprice_nanos, bid_depth_nanos,
        ask_depth_nanos, imbalance`` arrays aligned with the snapshot rows.
    """
    ints, floats = book_metrics(*(_list_parts(snapshots.column(c)) for c in (
        "bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")), levels)
    return {
        "mid_price_nanos": ints[:, 0], "spread_nanos": ints[:, 1], "spread_bps": floats[:, 0],
        "microprice_nanos": ints[:, 2], "bid_depth_nanos": ints[:, 3], "ask_depth_nanos": ints[:, 4],
        "imbalance": floats[:, 1],
    }


def signed_volume(trades: pa.Table) -> np.ndarray:
    """Buyer-initiated size minus seller-initiated size per trade (0 when the side is unknown)."""
    side = trades.column("aggressor_side").to_numpy()
    size = trades.column("size_nanos").to_numpy()
    return np.where(side == BID, size, np.where(side == ASK, -size, 0)).astype(np.int64)


def _grid_of(snap: pa.Table, step_ns: int, venue: str, symbol: str) -> np.ndarray:
    grid = snap.column("ts_event_ns").to_numpy()
    off = grid % step_ns != 0
    if off.any():
        raise TapeflowError(
            f"{venue}/{symbol}: snapshot at ts_event_ns={int(grid[off][0])} is not on the {step_ns} ns grid; "
            "pass snapshots built with interval_ns (tapeflow book --interval)"
        )
    if len(grid) > 1 and (np.diff(grid) <= 0).any():
        raise TapeflowError(f"{venue}/{symbol}: snapshot times are not strictly increasing")
    return grid


def metric_table(snap: pa.Table, interval: str, levels: int, ofi: np.ndarray, cvd: np.ndarray,
                 rv: np.ndarray, bad_quotes: np.ndarray) -> pa.Table:
    """Assemble ``metric`` rows for one instrument's snapshots and its per-sample flow sums."""
    flags = snap.column("flags").to_numpy() & F_MAYBE_BAD_BOOK
    flags = np.where(bad_quotes, F_MAYBE_BAD_BOOK, flags).astype(np.uint8)
    n = snap.num_rows
    cols: dict[str, object] = {
        "ts_event_ns": snap.column("ts_event_ns"), "ts_recv_ns": snap.column("ts_recv_ns"),
        "venue": snap.column("venue"), "symbol": snap.column("symbol"),
        "interval": pa.array([interval] * n, pa.string()),
        "sequence": snap.column("sequence"), **book_fields(snap, levels), "ofi_nanos": ofi,
        "cvd_nanos": cvd, "realized_vol": rv, "flags": flags,
    }
    # Straight to Arrow with the types the arrays already have (RecordType.table checks and
    # converts every column, a cost a live batch of one sample pays in full).
    arrays = [col if isinstance(col := cols[name], pa.ChunkedArray) else pa.array(col, kind)
              for name, kind in _METRIC_FIELDS]
    return pa.Table.from_arrays(arrays, schema=_METRIC_SCHEMA)


def _flow_samples(grid: np.ndarray, quotes: pa.Table, trades: pa.Table,
                  step_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    k = len(grid)
    ofi_s = np.zeros(k + 1, np.int64)
    bad_s = np.zeros(k + 1, bool)
    rv_s = np.full(k + 1, np.nan)
    if quotes.num_rows:
        _, ofi, sq = quote_events(*(quotes.column(c).to_numpy() for c in (
            "bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")), np.zeros(5, np.int64))
        j = np.searchsorted(grid, grid_end(quotes.column("ts_recv_ns").to_numpy(), step_ns), side="left")
        np.add.at(ofi_s, j, ofi)
        bad = (quotes.column("flags").to_numpy() & F_MAYBE_BAD_BOOK) != 0
        bad_s[j[bad]] = True
        # A sample also starts with the quote in effect before it: a bad book stays bad until a quote
        # says otherwise, so repeated quotes (which the live book stage drops) change nothing.
        before = np.searchsorted(j, np.arange(k), side="left") - 1
        bad_s[:k] |= np.where(before >= 0, bad[np.maximum(before, 0)], False)
        has = ~np.isnan(sq)
        jj, vals = j[has], sq[has]
        if len(jj):
            cuts = np.flatnonzero(np.diff(jj)) + 1
            for first, seg in zip(np.concatenate([[0], cuts]).tolist(), np.split(vals, cuts), strict=True):
                rv_s[jj[first]] = math.sqrt(math.fsum(seg.tolist()))
    cvd = np.zeros(k, np.int64)
    if trades.num_rows:
        inst = grid_end(trades.column("ts_recv_ns").to_numpy(), step_ns)
        day = (inst - 1) // DAY_NS
        cum = np.cumsum(signed_volume(trades))
        first_of_day = np.concatenate([[0], np.flatnonzero(np.diff(day)) + 1])
        before = np.concatenate([[0], cum])[first_of_day]
        cum_day = cum - np.repeat(before, np.diff(np.append(first_of_day, len(day))))
        last = np.searchsorted(inst, grid, side="right") - 1
        ok = (last >= 0) & (day[np.maximum(last, 0)] == (grid - 1) // DAY_NS)
        cvd = np.where(ok, cum_day[np.maximum(last, 0)], 0)
    return ofi_s[:k], cvd, rv_s[:k], bad_s[:k]


def metrics(snapshots: pa.Table, quotes: pa.Table, trades: pa.Table, *, interval: str = "1s",
            levels: int = 10) -> pa.Table:
    """Metrics on the snapshot grid of each instrument (definitions in the module docstring).

    Args:
        snapshots: ``book_snapshot`` rows on the ``interval`` grid (``tapeflow.book.book_snapshots``
            with ``interval_ns``, or ``snapshots_for_format``), each instrument's rows in time order.
        quotes: ``quote`` rows (BBO after each book event, ``quotes_from_deltas``) in arrival order.
        trades: ``trade`` rows in arrival order.
        interval: the grid spacing, ``<n><s|m|h|d>``.
        levels: depth levels counted per side.

    Returns:
        A ``metric`` table, one row per snapshot row.

    Raises:
        TapeflowError: a table of the wrong record, or snapshots off the grid or out of order.
    """
    step_ns = interval_ns(interval)
    _check(snapshots, BOOK_SNAPSHOT, "book_snapshot")
    _check(quotes, QUOTE, "quote")
    _check(trades, TRADE, "trade")
    qrows = {(v, s): rows for v, s, rows in by_instrument(quotes)}
    trows = {(v, s): rows for v, s, rows in by_instrument(trades)}
    parts = []
    for venue, symbol, snap in by_instrument(snapshots):
        grid = _grid_of(snap, step_ns, venue, symbol)
        q = qrows.get((venue, symbol), _EMPTY_QUOTE)
        t = trows.get((venue, symbol), _EMPTY_TRADE)
        ofi, cvd, rv, bad = _flow_samples(grid, q, t, step_ns)
        parts.append(metric_table(snap, interval, levels, ofi, cvd, rv, bad))
    return pa.concat_tables(parts) if parts else _EMPTY_METRIC
