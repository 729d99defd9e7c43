"""Tardis normalized CSVs -> tapeflow records.

``trades`` -> ``trade`` (``id`` kept as ``trade_id``; numeric ids also as ``sequence``);
``quotes`` -> ``quote``; ``book_snapshot_N`` -> ``book_snapshot`` (N levels, empty levels as
``UNDEF_PRICE``/0); ``incremental_book_L2`` -> ``book_delta``: each ``is_snapshot`` block starts
with an ``R`` clear and is flagged ``F_SNAPSHOT``; ``F_LAST`` ends each venue event (the rows of
one ``timestamp``/``local_timestamp``, or a whole snapshot block). A rejected L2 row marks the next
row ``F_GAP``: the book missed an update and stays unsynced until the next snapshot.

Timestamps are microseconds and become ns; prices and amounts are parsed exactly from the text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import FormatError
from tapeflow.schemas import RecordType
from tapeflow.schemas.records import (
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    F_GAP,
    F_LAST,
    F_SNAPSHOT,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
    QUOTE,
    TRADE,
    UNDEF_PRICE,
)
from tapeflow.venues.base import Decoded, Rejects, merge
from tapeflow.venues.tardis.decimals import decimals_to_nanos
from tapeflow.venues.tardis.messages import SIDES, detect_kind
from tapeflow.venues.tardis.reader import CsvChunk, read_chunks, read_header

_MAX_US = (2**63 - 1) // 1000


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode Tardis CSV files (plain or gzip), one :class:`Decoded` per ~8 MiB chunk.

    Raises:
        FormatError: a file whose header is no supported Tardis kind.
    """
    for path in paths:
        yield from decode_file(Path(path))


def decode_all(paths: Sequence[Path]) -> dict[str, pa.Table]:
    """Decode whole files into one table per record type (for small files and tests)."""
    return merge(list(decode(paths)))


def decode_file(path: Path) -> Iterator[Decoded]:
    """Decode one Tardis CSV; see :func:`decode`."""
    kind, depth = file_kind(path)
    l2 = _L2Events()
    gap_carry = False  # a rejected L2 line ended the previous chunk
    reported = 0  # CsvChunk.bytes_read is the file position; Decoded wants the increment
    for chunk in read_chunks(path):
        rows = _Rows(path, chunk)
        if kind == "trades":
            tables = {"trade": rows.trades()}
        elif kind == "quotes":
            tables = {"quote": rows.quotes()}
        elif kind == "book_snapshot":
            tables = {"book_snapshot": rows.snapshots(depth)}
        else:
            parsed, gap_carry = rows.l2_rows(gap_carry)
            tables = {"book_delta": l2.feed(parsed, final=False)}
        tables["rejected"] = rows.rejects.table()
        yield Decoded(tables, bytes_read=chunk.bytes_read - reported, source=str(path))
        reported = chunk.bytes_read
    if kind == "incremental_book_L2":
        yield Decoded({"book_delta": l2.feed(None, final=True)}, source=str(path))


def file_kind(path: Path) -> tuple[str, int]:
    """The Tardis kind of a file and its book depth, from its header.

    Raises:
        FormatError: naming the file, when its header is no supported kind or it cannot be read.
    """
    try:
        return detect_kind(read_header(path))
    except FormatError as exc:
        if str(path) in str(exc):
            raise
        raise FormatError(f"{path}: {exc}") from None


class _Rows:
    """One chunk's columns, converted exactly; bad cells reject their whole row."""

    def __init__(self, path: Path, chunk: CsvChunk) -> None:
        self.path = path
        self.chunk = chunk
        self.table = chunk.table
        self.rejects = Rejects("tardis")
        self.bad = np.zeros(chunk.table.num_rows, dtype=bool)
        self._reasons: dict[int, tuple[str, str]] = {}
        for line, reason, detail in chunk.bad:
            self.rejects.add(reason, detail, f"{path}:{line}", chunk.raw(line))

    def _fail(self, row: int, reason: str, detail: str) -> None:
        if not self.bad[row]:
            self.bad[row] = True
            self._reasons[row] = (reason, detail)

    def decimal(self, name: str, *, empty_value: int | None = None) -> np.ndarray:
        values, errors = decimals_to_nanos(self.table.column(name), empty_value=empty_value)
        for row, err in errors.items():
            self._fail(row, err.reason, f"{name} {err.text!r}: {err.reason}")
        return values

    def micros(self, name: str) -> np.ndarray:
        col = self.table.column(name)
        ok = pc.match_substring_regex(col, r"^\d{1,16}$").to_numpy(zero_copy_only=False)
        values = pc.cast(pc.if_else(pa.array(ok), col, "0"), pa.int64()).to_numpy(zero_copy_only=False)
        for row in np.nonzero(~ok | (values > _MAX_US))[0].tolist():
            self._fail(row, "bad_number", f"{name} {col[row].as_py()!r} is not integer microseconds")
        return values * 1000

    def side(self, name: str, allowed: dict[str, int], *, unknown: int | None) -> np.ndarray:
        col = self.table.column(name).to_pylist()
        out = np.empty(len(col), dtype=np.uint8)
        for i, text in enumerate(col):
            code = allowed.get(text, unknown)
            if code is None:
                self._fail(i, "bad_value", f"{name} {text!r} is not one of {sorted(allowed)}")
                code = NO_SIDE
            out[i] = code
        return out

    def header(self) -> dict[str, object]:
        return {
            "ts_event_ns": self.micros("timestamp"),
            "ts_recv_ns": self.micros("local_timestamp"),
            "venue": self.table.column("exchange"),
            "symbol": self.table.column("symbol"),
        }

    def finish(self, record_cols: dict[str, object], record: RecordType) -> pa.Table:
        """Drop the rows that failed (they become rejects) and build the record table."""
        for row, (reason, detail) in sorted(self._reasons.items()):
            line = int(self.chunk.lines[row])
            self.rejects.add(reason, detail, f"{self.path}:{line}", self.chunk.raw(line))
        table = record.table(record_cols)
        return table.filter(pa.array(~self.bad)) if self.bad.any() else table

    def trades(self) -> pa.Table:
        cols = self.header()
        ids = self.table.column("id")
        numeric = pc.match_substring_regex(ids, r"^\d{1,18}$")
        cols.update(
            sequence=pc.cast(pc.if_else(numeric, ids, "-1"), pa.int64()),
            trade_id=ids,
            price_nanos=self.decimal("price"),
            size_nanos=self.decimal("amount"),
            aggressor_side=self.side("side", SIDES, unknown=NO_SIDE),
            flags=np.zeros(self.table.num_rows, np.uint8),
        )
        return self.finish(cols, TRADE)

    def quotes(self) -> pa.Table:
        cols = self.header()
        cols.update(
            sequence=np.full(self.table.num_rows, -1, np.int64),
            bid_price_nanos=self.decimal("bid_price", empty_value=UNDEF_PRICE),
            bid_size_nanos=self.decimal("bid_amount", empty_value=0),
            ask_price_nanos=self.decimal("ask_price", empty_value=UNDEF_PRICE),
            ask_size_nanos=self.decimal("ask_amount", empty_value=0),
            flags=np.zeros(self.table.num_rows, np.uint8),
        )
        return self.finish(cols, QUOTE)

    def _levels(self, side: str, field: str, depth: int) -> pa.Array:
        empty = UNDEF_PRICE if field == "price" else 0
        stacked = np.stack(
            [self.decimal(f"{side}[{k}].{field}", empty_value=empty) for k in range(depth)], axis=1
        )
        offsets = np.arange(0, stacked.size + 1, depth, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(stacked.reshape(-1)))

    def snapshots(self, depth: int) -> pa.Table:
        cols = self.header()
        n = self.table.num_rows
        cols.update(
            sequence=np.full(n, -1, np.int64),
            levels=np.full(n, depth, np.uint16),
            bid_price_nanos=self._levels("bids", "price", depth),
            bid_size_nanos=self._levels("bids", "amount", depth),
            ask_price_nanos=self._levels("asks", "price", depth),
            ask_size_nanos=self._levels("asks", "amount", depth),
            flags=np.zeros(n, np.uint8),
        )
        return self.finish(cols, BOOK_SNAPSHOT)

    def l2_rows(self, gap_before: bool) -> tuple[pa.Table, bool]:
        """Parsed L2 rows (not yet records): the columns event grouping needs, bad rows dropped.

        Returns the rows and whether rejected lines follow the last kept row (a gap to carry).
        """
        cols = self.header()
        snap = self.table.column("is_snapshot").to_pylist()
        is_snapshot = np.array([s == "true" for s in snap], dtype=bool)
        for row in np.nonzero(~is_snapshot)[0].tolist():
            if snap[row] != "false":
                self._fail(row, "bad_value", f"is_snapshot {snap[row]!r} is not true/false")
        cols.update(
            is_snapshot=is_snapshot,
            side=self.side("side", {"bid": SIDES["bid"], "ask": SIDES["ask"]}, unknown=None),
            price_nanos=self.decimal("price"),
            size_nanos=self.decimal("amount"),
        )
        # A rejected line between two accepted rows: the next accepted row follows a gap.
        rejected_lines = np.array(
            sorted(
                {ln for ln, _, _ in self.chunk.bad}
                | {int(self.chunk.lines[r]) for r in np.nonzero(self.bad)[0]}
            ),
            np.int64,
        )
        for row, (reason, detail) in sorted(self._reasons.items()):
            line = int(self.chunk.lines[row])
            self.rejects.add(reason, detail, f"{self.path}:{line}", self.chunk.raw(line))
        good = ~self.bad
        lines = self.chunk.lines[good]
        before = np.searchsorted(rejected_lines, lines)  # rejected lines before each kept row
        gap = np.diff(np.concatenate([[0], before])) > 0
        if gap.size:
            gap[0] |= gap_before
            trailing = bool(rejected_lines.size > before[-1])
        else:
            trailing = gap_before or bool(rejected_lines.size)
        table = pa.table(dict(cols)).filter(pa.array(good))
        return table.append_column("gap", pa.array(gap)), trailing


class _L2Events:
    """Turns parsed L2 rows into ``book_delta`` records, holding back the last event of a chunk
    until the next chunk shows whether it continues."""

    def __init__(self) -> None:
        self.pending: pa.Table | None = None
        self.last: tuple | None = None  # (symbol, is_snapshot, ts_event, ts_recv) of the last emitted row

    def feed(self, rows: pa.Table | None, *, final: bool) -> pa.Table:
        parts = [t for t in (self.pending, rows) if t is not None and t.num_rows]
        if not parts:
            self.pending = None
            return BOOK_DELTA.empty_table()
        table = pa.concat_tables(parts)
        codes = pc.dictionary_encode(table.column("symbol")).combine_chunks().indices.to_numpy()
        snap = table.column("is_snapshot").to_numpy(zero_copy_only=False)
        ts = table.column("ts_event_ns").to_numpy()
        recv = table.column("ts_recv_ns").to_numpy()
        n = table.num_rows
        # Snapshot rows form one event per block, whatever their timestamps.
        new_group = np.empty(n, dtype=bool)
        new_group[1:] = (
            (codes[1:] != codes[:-1])
            | (snap[1:] != snap[:-1])
            | (~snap[1:] & ((ts[1:] != ts[:-1]) | (recv[1:] != recv[:-1])))
        )
        first = (table.column("symbol")[0].as_py(), bool(snap[0]), int(ts[0]), int(recv[0]))
        prev = self.last
        new_group[0] = prev is None or first[:2] != prev[:2] or (not first[1] and first[2:] != prev[2:])
        ends = np.append(new_group[1:], True)
        cut = n if final else int(np.nonzero(new_group)[0][-1])
        self.pending = table.slice(cut) if cut < n else None
        if cut == 0:
            return BOOK_DELTA.empty_table()
        out = table.slice(0, cut)
        self.last = (
            table.column("symbol")[cut - 1].as_py(),
            bool(snap[cut - 1]),
            int(ts[cut - 1]),
            int(recv[cut - 1]),
        )
        return _book_deltas(out, new_group[:cut] & snap[:cut], ends[:cut])


def _book_deltas(rows: pa.Table, block_start: np.ndarray, last: np.ndarray) -> pa.Table:
    snap = rows.column("is_snapshot").to_numpy(zero_copy_only=False)
    size = rows.column("size_nanos").to_numpy()
    flags = (
        np.where(snap, F_SNAPSHOT, 0)
        | np.where(last, F_LAST, 0)
        | np.where(rows.column("gap").to_numpy(zero_copy_only=False), F_GAP, 0)
    ).astype(np.uint8)
    cols = {
        "ts_event_ns": rows.column("ts_event_ns").to_numpy(),
        "ts_recv_ns": rows.column("ts_recv_ns").to_numpy(),
        "sequence": np.full(rows.num_rows, -1, np.int64),
        "side": rows.column("side").to_numpy(),
        "action": np.where(size > 0, L2_SET, L2_DELETE).astype(np.uint8),
        "price_nanos": rows.column("price_nanos").to_numpy(),
        "size_nanos": size,
        "flags": flags,
    }
    # An R clear before each snapshot block: the block replaces the whole book.
    at = np.nonzero(block_start)[0]
    clear = {
        "side": NO_SIDE,
        "action": L2_CLEAR,
        "price_nanos": 0,
        "size_nanos": 0,
        "sequence": -1,
        "flags": F_SNAPSHOT,
    }
    for name, values in cols.items():
        fill = clear[name] if name in clear else values[at]
        cols[name] = np.insert(values, at, fill)
    take = pa.array(np.insert(np.arange(rows.num_rows), at, at))
    cols["venue"] = rows.column("venue").take(take)
    cols["symbol"] = rows.column("symbol").take(take)
    return BOOK_DELTA.table(cols)
