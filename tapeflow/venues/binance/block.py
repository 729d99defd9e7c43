"""The block path of the Binance decoder: a block of frames decoded at once, rows written as arrays.

:func:`decode_file` reads a ``<recv_ns> <json>`` capture (hftbacktest file, tapeflow journal) in
blocks of bytes; :func:`decode_lines` takes frames already split (several files merged, cryptofeed
logs, a live micro-batch). Both hand a buffer to the compiled scanner
(:func:`tapeflow.venues.binance.scan.scan_frames`), write the quotes and trades it matched as
columns, and pass the depth diffs through their chains at once
(:func:`tapeflow.venues.l2block.chain_block`).

Every frame the scanner does not match (REST snapshots, acknowledgements, other events or key
orders, a decimal that is not plain, a symbol outside the filter, a malformed frame...) is decoded
by the decoder's per-frame path at its place in the block, after the rows of the frames before
it: rows, rejects and chain counts are those of a frame-by-frame decode (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas.records import ASK, BID
from tapeflow.venues.binance.scan import DEPTH, TICKER, TRADE, scan_frames, split_lines
from tapeflow.venues.decoder import Progress
from tapeflow.venues.l2block import DiffBlock, chain_block
from tapeflow.wire.capture import RECV, CaptureLine, Decoded, open_maybe_gzip, parse_ns_line
from tapeflow.wire.rejects import Reason

if TYPE_CHECKING:
    from tapeflow.venues.binance.parse import BinanceDecoder

BLOCK_BYTES = 1 << 21
_MS = 1_000_000


def read_blocks(path: Path, *, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """A capture file (un-gzipped) in blocks of whole lines: ``(number of its first line, bytes)``.

    Every block but the last ends with a newline; the last holds whatever follows the final one.
    """
    lineno = 1
    tail = b""
    with open_maybe_gzip(path) as fh:
        while True:
            block = fh.read(block_bytes)
            data = tail + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            if cut:
                yield lineno, data[:cut]
                lineno += data.count(b"\n", 0, cut)
            tail = data[cut:]
            if not block:
                return


def decode_file(dec: BinanceDecoder, path: Path) -> Iterator[Decoded]:
    """Decode one ``<recv_ns> <json>`` file, yielding a chunk after each block that filled one."""
    progress = Progress([path])
    for first, data in read_blocks(path):
        buf = np.frombuffer(data, np.uint8)
        line_start, line_end, recv, payload_start, plain, _ = split_lines(buf)

        def line(i: int, first: int = first, data: bytes = data, line_start: np.ndarray = line_start,
                 line_end: np.ndarray = line_end) -> None:
            # a line the scanner did not take, by the capture reader's own rules
            raw = data[line_start[i]:line_end[i]].rstrip(b"\r\n")
            if not raw.strip():
                return
            where = f"{path.name}:{first + i}"
            parsed = parse_ns_line(raw)
            if parsed is None:
                dec.rejects.add(Reason.BAD_CAPTURE_LINE, "not a ns capture line", where, raw)
                return
            recv_ns, kind, url, payload = parsed
            dec.feed_frame(0, CaptureLine(recv_ns, kind, url, payload, where))

        decode_buffer(dec, buf, payload_start, line_end, recv, plain, np.zeros(len(plain), np.int64), line)
        progress.advance(0, len(data))
        if dec.rows >= dec.chunk_rows:
            yield dec.chunk(progress.take(), f"{path.name}:{first + len(plain) - 1}")
    dec.finish()
    yield dec.chunk(progress.rest(), "end")


def decode_lines(dec: BinanceDecoder, items: Sequence[tuple[int, CaptureLine]]) -> None:
    """Decode ``(file index, line)`` frames, as ``dec.feed_frame`` on each in turn would."""
    n = len(items)
    if n == 0:
        return
    lengths = np.fromiter((len(line.payload) for _, line in items), np.int64, n)
    ends = np.cumsum(lengths)
    buf = np.frombuffer(b"".join([line.payload for _, line in items]), np.uint8)
    recv = np.fromiter((line.recv_ns for _, line in items), np.int64, n)
    usable = np.fromiter((line.kind == RECV for _, line in items), np.bool_, n)
    files = np.fromiter((index for index, _ in items), np.int64, n)
    decode_buffer(dec, buf, ends - lengths, ends, recv, usable, files, lambda i: dec.feed_frame(*items[i]))


def decode_buffer(dec: BinanceDecoder, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  recv: np.ndarray, usable: np.ndarray, files: np.ndarray,
                  slow: Callable[[int], None]) -> None:
    """Decode the frames ``buf[starts[i]:ends[i]]`` of input files ``files[i]``.

    Args:
        dec: the decoder (its buffers, chains, symbol filter, per-frame path).
        buf: the bytes (uint8).
        starts, ends: each frame's payload.
        recv: capture times, ns.
        usable: False for frames the scanner must not take (not received websocket frames).
        files: each frame's file index (its venue is ``dec.venues[index]``).
        slow: decodes frame ``i`` one by one (the per-frame path), in place.
    """
    kind, sym, ms, ids, maker, dec_nanos, lv, px, sz, _, uniq, n_uniq = scan_frames(
        buf, starts, ends, usable, len(buf) // 9 + 1)
    symbols = [bytes(buf[s:e]).decode("ascii") for s, e in uniq[:n_uniq].tolist()]
    if dec.symbols is not None and symbols:
        outside = np.array([s.upper() not in dec.symbols for s in symbols])
        kind[(kind > 0) & outside[np.maximum(sym, 0)]] = 0  # the per-frame path writes the reject
    n = len(kind)
    columns = _Columns(kind, sym, ms, ids, maker, dec_nanos, lv, recv, files, symbols)
    start = 0
    for stop in [*np.flatnonzero(kind == 0).tolist(), n]:
        if stop > start:
            dec.frames += stop - start
            columns.write(dec, start, stop, px, sz)
        if stop < n:
            slow(stop)
        start = stop + 1


class _Columns:
    """The scanner's output, per kind, sliced per run of matched frames."""

    def __init__(self, kind: np.ndarray, sym: np.ndarray, ms: np.ndarray, ids: np.ndarray, maker: np.ndarray,
                 nanos: np.ndarray, lv: np.ndarray, recv: np.ndarray, files: np.ndarray, symbols: list[str]
                 ) -> None:
        self.at = {k: np.flatnonzero(kind == k) for k in (TICKER, TRADE, DEPTH)}
        self.sym, self.ms, self.ids, self.maker, self.nanos, self.lv = sym, ms, ids, maker, nanos, lv
        self.recv, self.files, self.symbols = recv, files, symbols

    def _span(self, k: int, start: int, stop: int) -> np.ndarray:
        at = self.at[k]
        return at[np.searchsorted(at, start):np.searchsorted(at, stop)]

    def write(self, dec: BinanceDecoder, start: int, stop: int, px: np.ndarray, sz: np.ndarray) -> None:
        venues = list(dec.venues)  # an "open" line between runs may have changed a file's venue
        q = self._span(TICKER, start, stop)
        if len(q):
            v = self.nanos[q]
            dec.quotes.add_arrays(
                len(q), ts_event_ns=self.ms[q] * _MS, ts_recv_ns=self.recv[q],
                venue=_names(venues, self.files[q]), symbol=_names(self.symbols, self.sym[q]),
                sequence=self.ids[q, 0], bid_price_nanos=v[:, 0], bid_size_nanos=v[:, 1],
                ask_price_nanos=v[:, 2], ask_size_nanos=v[:, 3], flags=0)
        t = self._span(TRADE, start, stop)
        if len(t):
            trade_id = self.ids[t, 0]
            dec.trades.add_arrays(
                len(t), ts_event_ns=self.ms[t] * _MS, ts_recv_ns=self.recv[t],
                venue=_names(venues, self.files[t]), symbol=_names(self.symbols, self.sym[t]),
                sequence=trade_id, trade_id=pc.cast(pa.array(trade_id), pa.string()),
                price_nanos=self.nanos[t, 0], size_nanos=self.nanos[t, 1],
                # the buyer resting on the book means the seller crossed the spread
                aggressor_side=np.where(self.maker[t], ASK, BID).astype(np.uint8), flags=0)
        d = self._span(DEPTH, start, stop)
        if len(d):
            self._depth(dec, d, venues, px, sz)

    def _depth(self, dec: BinanceDecoder, d: np.ndarray, venues: list[str], px: np.ndarray,
               sz: np.ndarray) -> None:
        distinct = sorted(set(venues))
        venue_of_file = np.array([distinct.index(v) for v in venues], np.int64)
        pair = venue_of_file[self.files[d]] * len(self.symbols) + self.sym[d]
        found, key = np.unique(pair, return_inverse=True)
        n_sym = len(self.symbols)
        pairs = [(distinct[p // n_sym], self.symbols[p % n_sym]) for p in found.tolist()]
        chain_block(DiffBlock(
            chains=[dec.chain(v, s) for v, s in pairs], key=key, first=self.ids[d, 0], last=self.ids[d, 1],
            prev=self.ids[d, 2], ts_event_ns=self.ms[d] * _MS, ts_recv_ns=self.recv[d],
            level_at=self.lv[d, 0], bids=self.lv[d, 1], asks=self.lv[d, 2], prices=px, sizes=sz,
            venues=[v for v, _ in pairs], symbols=[s for _, s in pairs]), dec.stats, dec.deltas)


def _names(names: list[str], ids: np.ndarray) -> str | pa.Array:
    """``names[id]`` per row: one value when every row shares it."""
    first = int(ids[0])
    if (ids == first).all():
        return names[first]
    return pa.array(names, pa.string()).take(pa.array(ids))
