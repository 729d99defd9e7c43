"""Array helpers behind the checks GX has no expectation for: instrument groups, previous row, as-of BBO."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError
from tapeflow.schemas.records import SCALE, UNDEF_PRICE

DAY_NS = 86_400 * SCALE


def plain(table: pa.Table) -> pa.Table:
    """``table`` with dictionary columns decoded (a lake read gives them; the schema declares strings)."""
    cols = [pc.cast(c, c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(cols, names=table.column_names)


def instrument_codes(table: pa.Table) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """One integer per row naming its (venue, symbol), and the pairs in code order."""
    if table.num_rows == 0:
        return np.zeros(0, np.int64), []
    first = [table.column(c)[0] for c in ("venue", "symbol")]
    if all(f.is_valid and not table.column(c).null_count and pc.all(pc.equal(table.column(c), f)).as_py()
           for c, f in zip(("venue", "symbol"), first, strict=True)):
        # one instrument (every lake partition): no hashing of the key columns
        return np.zeros(table.num_rows, np.int64), [(first[0].as_py(), first[1].as_py())]
    # a missing venue or symbol (not_null_keys reports it) groups under "" instead of breaking the codes
    venue, symbol = (pc.dictionary_encode(pc.fill_null(table.column(c), "")).combine_chunks()
                     for c in ("venue", "symbol"))
    n_symbols = len(symbol.dictionary)
    pair = venue.indices.to_numpy(zero_copy_only=False).astype(np.int64) * n_symbols + \
        symbol.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # the pairs present, in order of first appearance (as a dictionary encoding numbers them)
    present = np.flatnonzero(np.bincount(pair, minlength=len(venue.dictionary) * n_symbols))
    firsts = np.array([np.argmax(pair == p) for p in present]) if len(present) > 1 else np.zeros(1, np.int64)
    present = present[np.argsort(firsts, kind="stable")]
    remap = np.zeros(len(venue.dictionary) * n_symbols, np.int64)
    remap[present] = np.arange(len(present))
    venues, symbols = venue.dictionary.to_pylist(), symbol.dictionary.to_pylist()
    names = [(venues[p // n_symbols], symbols[p % n_symbols]) for p in present]
    return remap[pair], names


def previous_in_group(codes: np.ndarray) -> np.ndarray:
    """For each row, the position of the previous row of the same instrument (-1 for the first)."""
    if len(codes) and codes.max() == codes.min():  # one instrument: the row before
        return np.arange(-1, len(codes) - 1, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    prev_sorted = np.empty(len(order), np.int64)
    if len(order):
        prev_sorted[0] = -1
        same = codes[order[1:]] == codes[order[:-1]]
        prev_sorted[1:] = np.where(same, order[:-1], -1)
    prev = np.empty(len(order), np.int64)
    prev[order] = prev_sorted
    return prev


def day_bounds(day: str | dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in ns since the epoch.

    Raises:
        ConfigError: ``day`` is not a date or ``YYYY-MM-DD``.
    """
    if isinstance(day, str):
        try:
            day = dt.date.fromisoformat(day)
        except ValueError as exc:
            raise ConfigError(f"partition day {day!r} is not YYYY-MM-DD") from exc
    start = (day - dt.date(1970, 1, 1)).days * DAY_NS
    return start, start + DAY_NS


def modal_day(ts_ns: np.ndarray) -> str | None:
    """The UTC day (``YYYY-MM-DD``) most rows fall on, or None for no timestamps."""
    ts_ns = ts_ns[ts_ns >= 0]
    if not len(ts_ns):
        return None
    days, counts = np.unique(ts_ns // DAY_NS, return_counts=True)
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(days[np.argmax(counts)]))).isoformat()


def best_of(lists: pa.ChunkedArray, empty: int = UNDEF_PRICE) -> np.ndarray:
    """First element of each list (best level of a snapshot side), ``empty`` where the list is empty."""
    arr = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    n = len(arr)
    out = np.full(n, empty, np.int64)
    if n == 0:
        return out
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets)
    values = arr.values.to_numpy(zero_copy_only=False)
    has = lengths > 0
    out[has] = values[offsets[:-1][has]]
    return out


def asof_bbo(
    trade_codes: np.ndarray,
    trade_ts: np.ndarray,
    book_codes: np.ndarray,
    book_ts: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The last book row of the same instrument at or before each trade time.

    Returns:
        (bid, ask, age_ns) per trade; UNDEF_PRICE and -1 where no book row precedes the trade.
    """
    out_bid = np.full(len(trade_ts), UNDEF_PRICE, np.int64)
    out_ask = np.full(len(trade_ts), UNDEF_PRICE, np.int64)
    age = np.full(len(trade_ts), -1, np.int64)
    for code in np.unique(trade_codes):
        t_idx = np.flatnonzero(trade_codes == code)
        b_idx = np.flatnonzero(book_codes == code)
        if not len(b_idx):
            continue
        # stable sort keeps arrival order among equal stamps, so the last row of an instant wins
        b_idx = b_idx[np.argsort(book_ts[b_idx], kind="stable")]
        pos = np.searchsorted(book_ts[b_idx], trade_ts[t_idx], side="right") - 1
        ok = pos >= 0
        src = b_idx[pos[ok]]
        out_bid[t_idx[ok]] = bid[src]
        out_ask[t_idx[ok]] = ask[src]
        age[t_idx[ok]] = trade_ts[t_idx[ok]] - book_ts[src]
    return out_bid, out_ask, age


def partition_ts(table: pa.Table) -> np.ndarray:
    """Venue time per row, capture time where the venue gave none (the lake's partition rule)."""
    ev = table.column("ts_event_ns").to_numpy()
    if "ts_recv_ns" not in table.column_names:
        return ev
    return np.where(ev >= 0, ev, table.column("ts_recv_ns").to_numpy())
