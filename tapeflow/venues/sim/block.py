"""The block path of the ``sim`` decoder: a chunk of lines at once, rows written as whole columns.

A file (gzip or not) is read in blocks and scanned by the compiled CSV scanner
(:func:`tapeflow.venues.csvscan.scan_lines`: times, seq and order id as integers, type and side as
bytes, price and size as exact 1e-9 units); :func:`tapeflow.venues.sim.rows.check_lines` makes
the per-line checks on the values. Every line either step refuses is read by
:func:`tapeflow.venues.sim.lines.parse_line` at its place, which accepts it or writes its reject;
then one compiled pass walks the snapshot state and builds the order events and trades, and
``l3_to_l2`` aggregates the book deltas. Rows and rejects equal the per-line decode's (tested on
simulator output and on Hypothesis-mutated lines).

A chunk never ends inside a snapshot (its last row gets ``F_LAST`` only once the next message
shows it was the last): the lines from the open snapshot's ``R`` on go back to the reader and
start the next chunk.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import FormatError
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, TRADE
from tapeflow.venues.columns import Columns
from tapeflow.venues.csvscan import CHAR, DEC9, UINT, LineReader, Scanned
from tapeflow.venues.sim.l2 import l3_to_l2
from tapeflow.venues.sim.lines import OUTSIDE_SNAPSHOT, LineError, parse_line
from tapeflow.venues.sim.messages import HEADER
from tapeflow.venues.sim.rows import (
    TS_EVENT,
    TS_RECV,
    TYPE,
    R,
    S,
    check_lines,
    event_rows,
)
from tapeflow.wire.capture import Decoded
from tapeflow.wire.rejects import Rejects

# ts_event, ts_recv, seq, type, order_id, side, price, size
KINDS = (UINT, UINT, UINT, CHAR, UINT, CHAR, DEC9, DEC9)


def decode_file(path: Path, chunk_lines: int, venue: str) -> Iterator[Decoded]:
    """Decode one ``sim`` file about ``chunk_lines`` lines a chunk, as ``parse.decode`` does.

    Raises:
        FormatError: the first line is not the ``sim`` header.
    """
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    with open(path, "rb") as raw, (gzip.GzipFile(fileobj=raw) if gz else raw) as fh:
        header = fh.readline()
        if header.rstrip(b"\r\n").decode("ascii", "replace") != HEADER:
            raise FormatError(f"{path} is not a sim file: header was {header[:80]!r}, expected {HEADER!r}")
        reader = LineReader(fh, KINDS)
        chunk = _Chunk(path, venue)
        lineno = 2  # of the next chunk's first line (the header is line 1)
        reported = 0  # Decoded.bytes_read is the increment since the previous chunk
        want = chunk_lines
        while True:
            lines = reader.take(want)
            final = len(lines) < want
            cut = len(lines) if final else _cut(lines)
            if cut == 0 and not final:  # one snapshot longer than the chunk: take more lines at once
                reader.give_back(lines, 0)
                want *= 2
                continue
            if cut < len(lines):
                reader.give_back(lines, cut)
            position = raw.tell()
            yield chunk.decode(lines, cut, lineno, position - reported)
            reported = position
            lineno += cut
            want = chunk_lines
            if final:
                return


def _cut(lines: Scanned) -> int:
    """Lines before the snapshot that may still be open at the end of ``lines`` (0: all of them
    may belong to it).

    Only a line known good ends a snapshot: an ``A``/``D``/``E``/``H`` closes it (cut after it),
    an ``R`` opens the next (cut before it). A refused line may be anything (``parse_line`` may
    accept it, or reject it and leave the snapshot open), so the search goes on past it.
    """
    typ = lines.values[:, TYPE]
    known = np.flatnonzero(check_lines(lines.values, lines.ok) & (typ != S))
    if not known.size:
        return 0
    last = int(known[-1])
    return last if typ[last] == R else last + 1


class _Chunk:
    def __init__(self, path: Path, venue: str) -> None:
        self.path = path
        self.venue = venue
        self.symbol = path.parent.name
        self.levels: dict[tuple[int, int], int] = {}

    def decode(self, lines: Scanned, n: int, lineno: int, bytes_read: int) -> Decoded:
        values = lines.values[:n]
        good = check_lines(values, lines.ok[:n])
        rejects: list[tuple[int, LineError]] = []
        seq_texts = self._fall_back(lines, values, good, rejects)
        outside, ev, e_act, e_side, e_flags, tr, t_aggr, t_flags = event_rows(values, good)
        for i in np.flatnonzero(outside).tolist():
            rejects.append((i, LineError("out_of_range", OUTSIDE_SNAPSHOT, int(values[i, TS_RECV]),
                                         int(values[i, TS_EVENT]))))
        constants = {"venue": self.venue, "symbol": self.symbol}
        events = Columns(ORDER_EVENT)
        events.add_arrays(ev.shape[1], ts_event_ns=ev[0], ts_recv_ns=ev[1], sequence=ev[2], order_id=ev[3],
                          action=e_act, side=e_side, price_nanos=ev[4], size_nanos=ev[5], flags=e_flags,
                          **constants)
        trades = Columns(TRADE)
        trades.add_arrays(tr.shape[1], ts_event_ns=tr[0], ts_recv_ns=tr[1], sequence=tr[2],
                          trade_id=_trade_ids(tr[2], tr[5], seq_texts), price_nanos=tr[3], size_nanos=tr[4],
                          aggressor_side=t_aggr, flags=t_flags, **constants)
        order_events = events.drain()
        tables = {ORDER_EVENT.name: order_events, TRADE.name: trades.drain(),
                  BOOK_DELTA.name: l3_to_l2(order_events, self.levels, instrument=(self.venue, self.symbol))}
        if rejects:
            tables["rejected"] = self._rejects(lines, rejects, lineno)
        return Decoded(tables=tables, bytes_read=bytes_read, source=str(self.path))

    def _fall_back(self, lines: Scanned, values: np.ndarray, good: np.ndarray,
                   rejects: list[tuple[int, LineError]]) -> dict[int, str]:
        """The refused lines through ``parse_line``; returns the seq texts of those accepted."""
        seq_texts = {}
        for i in np.flatnonzero(~good).tolist():
            try:
                line = parse_line(lines.raw(i))
            except LineError as exc:
                rejects.append((i, exc))
                continue
            values[i] = (line.ts_event_ns, line.ts_recv_ns, line.seq, ord(line.type), line.order_id,
                         line.side,                          line.price_nanos, line.size_nanos)
            good[i] = True
            seq_texts[i] = line.seq_text
        return seq_texts

    def _rejects(self, lines: Scanned, rejects: list[tuple[int, LineError]], lineno: int) -> pa.Table:
        out = Rejects(self.venue)
        for i, exc in sorted(rejects, key=lambda r: r[0]):
            out.add(exc.reason, exc.detail, f"{self.path}:{lineno + i}", lines.raw(i).rstrip(b"\r\n"),
                    ts_recv_ns=exc.ts_recv_ns, ts_event_ns=exc.ts_event_ns, symbol=self.symbol)
        return out.table()


def _trade_ids(seq: np.ndarray, line: np.ndarray, seq_texts: dict[int, str]) -> pa.Array:
    # a scanned seq has no leading zero, so its text is its decimal; a line read by parse_line
    # keeps the text it was written with
    ids = pc.cast(pa.array(seq), pa.string())
    if not seq_texts:
        return ids
    patch = [(row, seq_texts[i]) for row, i in enumerate(line.tolist()) if i in seq_texts]
    if not patch:
        return ids
    texts = ids.to_pylist()
    for row, text in patch:
        texts[row] = text
    return pa.array(texts, pa.string())


__all__ = ["KINDS", "decode_file"]
