"""The block path of the LOBSTER decoder: a chunk of message and orderbook lines at once, rows
written as whole columns.

Both files are read in blocks and scanned by the compiled CSV scanner
(:func:`tapeflow.venues.csvscan.scan_lines`: Time as exact ns, every other field an integer); the
values of the lines it matched are checked with the rules of :mod:`tapeflow.venues.lobster.lines`
(:mod:`tapeflow.venues.lobster.rows`, compiled). Every line either step refuses (a ``NaN``, a cut
line, a field out of range, anything odd) is read by the per-line parser at its index, which
accepts it or writes its reject, so rows and rejects are those of the per-line decode (tested
equal on the real files and on Hypothesis-mutated lines). The rows (order events, trades,
snapshots) are then built from the columns in one compiled pass per table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from tapeflow.errors import BadInput
from tapeflow.schemas.records import BOOK_SNAPSHOT, ORDER_EVENT, TRADE, UNDEF_TS
from tapeflow.venues.columns import Columns
from tapeflow.venues.csvscan import DEC9, INT, LineReader, Scanned
from tapeflow.venues.lobster import messages as m
from tapeflow.venues.lobster.lines import HOUR_NS, parse_book, parse_message, unpaired, wall_clock
from tapeflow.venues.lobster.rows import book_rows, check_books, check_messages, message_rows
from tapeflow.wire.capture import Decoded
from tapeflow.wire.rejects import Rejects

if TYPE_CHECKING:
    from tapeflow.venues.lobster.parse import LobsterFiles

MESSAGE_KINDS = (DEC9, INT, INT, INT, INT, INT)  # Time, Type, OrderID, Size, Price, Direction


def decode_blocks(files: LobsterFiles, chunk_rows: int) -> Iterator[Decoded]:
    """Decode one message/orderbook pair, ``chunk_rows`` rows (indices) a chunk, as ``parse.decode_pair``."""
    msg = open(files.message, "rb") if files.message is not None else None  # noqa: SIM115
    book = open(files.orderbook, "rb") if files.orderbook is not None else None  # noqa: SIM115
    try:
        messages = LineReader(msg, MESSAGE_KINDS)
        books = LineReader(book, (INT,) * (4 * files.levels))
        chunk = _Chunk(files)
        first = 0
        while True:
            msg_lines, book_lines = messages.take(chunk_rows), books.take(chunk_rows)
            yield chunk.decode(first, msg_lines, book_lines)
            first += chunk_rows
            if len(msg_lines) < chunk_rows and len(book_lines) < chunk_rows:
                return
    finally:
        for fh in (msg, book):
            if fh is not None:
                fh.close()


class _Chunk:
    def __init__(self, files: LobsterFiles) -> None:
        self.files = files
        self.epoch_ns, self.offsets_ns = wall_clock(files.day)
        self.constants = {"venue": m.VENUE, "symbol": files.ticker}

    def decode(self, first: int, msg: Scanned, book: Scanned) -> Decoded:
        values = msg.values
        good, ts_ns = check_messages(values, msg.ok, self.epoch_ns, self.offsets_ns)
        grid = book.values
        book_good = check_books(grid, book.ok)
        rejects = Rejects(m.VENUE)
        self._fall_back(first, msg, book, values, ts_ns, good, grid, book_good, rejects)
        tables = {**self._messages(first, values, good, ts_ns),
                  BOOK_SNAPSHOT.name: self._snapshots(first, grid, book_good, ts_ns),
                  "rejected": rejects.table()}
        source = str(self.files.message or self.files.orderbook)
        return Decoded({k: t for k, t in tables.items() if t.num_rows},
                       bytes_read=msg.bytes_read + book.bytes_read, source=source)

    def _fall_back(self, first: int, msg: Scanned, book: Scanned, values: np.ndarray, ts_ns: np.ndarray,
                   good: np.ndarray, grid: np.ndarray, book_good: np.ndarray, rejects: Rejects) -> None:
        """The lines refused above, through the per-line rules, in file order (a message before
        the orderbook row of its index, as the per-line decode writes their rejects)."""
        bad_msg, bad_book = np.flatnonzero(~good), np.flatnonzero(~book_good)
        paired = len(values)  # orderbook rows from here on have no message row: unpaired
        alone = np.flatnonzero(book_good[paired:]) + paired
        if not bad_msg.size and not bad_book.size and not alone.size:
            return
        naive, offsets = self.epoch_ns, self.offsets_ns.tolist()

        def to_utc(seconds_ns: int) -> int:
            return naive + seconds_ns - offsets[seconds_ns // HOUR_NS]

        marked = [(int(i), False) for i in bad_msg] + [(int(i), True) for i in (*bad_book, *alone)]
        for i, is_book in sorted(marked):
            if not is_book:
                raw = msg.raw(i)
                try:
                    ts, *fields = parse_message(raw, to_utc)
                except BadInput as exc:
                    self._reject(rejects, exc, self.files.message, first + i, raw, UNDEF_TS)
                    continue
                values[i, 1:] = fields
                ts_ns[i], good[i] = ts, True
                continue
            raw = book.raw(i)
            try:
                grid[i] = parse_book(raw, self.files.levels)
                if i >= paired:
                    raise unpaired(self.files.message is not None)
            except BadInput as exc:
                ts = int(ts_ns[i]) if i < len(ts_ns) else UNDEF_TS
                self._reject(rejects, exc, self.files.orderbook, first + i, raw, ts)
                book_good[i] = False
                continue
            book_good[i] = True

    def _reject(self, rejects: Rejects, exc: BadInput, path: Path | None, index: int, raw: bytes,
                ts_ns: int) -> None:
        rejects.add(exc.reason, exc.detail, f"{path}:{index + 1}", raw, ts_recv_ns=ts_ns, ts_event_ns=ts_ns,
                    symbol=self.files.ticker)

    def _messages(self, first: int, values: np.ndarray, good: np.ndarray, ts_ns: np.ndarray
                  ) -> dict[str, pa.Table]:
        e_ts, e_seq, e_oid, e_act, e_side, e_px, e_sz, e_flags, *trade = message_rows(values, good, ts_ns,
                                                                                       first)
        t_ts, t_seq, t_px, t_sz, t_aggr, t_flags = trade
        events = Columns(ORDER_EVENT)
        events.add_arrays(len(e_ts), ts_event_ns=e_ts, ts_recv_ns=e_ts, sequence=e_seq, order_id=e_oid,
                          action=e_act, side=e_side, price_nanos=e_px, size_nanos=e_sz, flags=e_flags,
                          **self.constants)
        trades = Columns(TRADE)
        trades.add_arrays(len(t_ts), ts_event_ns=t_ts, ts_recv_ns=t_ts, sequence=t_seq, trade_id="",
                          price_nanos=t_px, size_nanos=t_sz, aggressor_side=t_aggr, flags=t_flags,
                          **self.constants)
        return {ORDER_EVENT.name: events.drain(), TRADE.name: trades.drain()}

    def _snapshots(self, first: int, grid: np.ndarray, good: np.ndarray, msg_ts_ns: np.ndarray) -> pa.Table:
        timed = good.copy()  # a row whose message was rejected has no time: no snapshot (parse.py)
        timed[: len(msg_ts_ns)] &= msg_ts_ns[: len(timed)] != UNDEF_TS
        ts, seq, *sides = book_rows(grid, timed, msg_ts_ns, first)
        levels = self.files.levels
        offsets = pa.array(np.arange(0, len(ts) * levels + 1, levels, dtype=np.int32))
        lists = [pa.ListArray.from_arrays(offsets, pa.array(s)) for s in sides]
        out = Columns(BOOK_SNAPSHOT)
        out.add_arrays(len(ts), ts_event_ns=ts, ts_recv_ns=ts, sequence=seq, levels=levels, flags=0,
                       ask_price_nanos=lists[0], ask_size_nanos=lists[1], bid_price_nanos=lists[2],
                       bid_size_nanos=lists[3], **self.constants)
        return out.drain()
