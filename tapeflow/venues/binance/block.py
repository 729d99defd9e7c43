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

from tapeflow.schemas.records import ASK, BID, F_GAP
from tapeflow.venues.binance.scan import DEPTH, TICKER, TRADE, scan_capture, scan_frames
from tapeflow.venues.decoder import Progress
from tapeflow.venues.l2block import DiffBlock, chain_block
from tapeflow.venues.l2sync import WAIT_BRIDGE, WAIT_SNAPSHOT
from tapeflow.wire.capture import (
    RECV,
    CaptureLine,
    Decoded,
    Document,
    open_maybe_gzip,
    opens_document,
    parse_ns_line,
)
from tapeflow.wire.rejects import Reason

if TYPE_CHECKING:
    from tapeflow.venues.binance.parse import BinanceDecoder

BLOCK_BYTES = 1 << 23
_MS = 1_000_000


def read_blocks(path: Path, *, block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
    """A capture file (un-gzipped) in blocks of whole lines, as uint8 arrays.

    Every block but the last ends with a newline; the last holds whatever follows the final one.
    The arrays share one buffer: each is valid until the next is asked for.
    """
    buf = np.empty(block_bytes, np.uint8)
    kept = 0  # bytes of an unfinished line carried to the front
    with open_maybe_gzip(path) as fh:
        while True:
            if kept == len(buf):  # one line longer than the buffer
                buf = np.concatenate([buf, np.empty(len(buf), np.uint8)])
            got = fh.readinto(memoryview(buf)[kept:])
            size = kept + got
            if got == 0:
                if size:
                    yield buf[:size]
                return
            cut = size
            while cut > 0 and buf[cut - 1] != 10:
                cut -= 1
            if cut == 0:  # no newline yet: read more into a larger buffer
                kept = size
                continue
            yield buf[:cut]
            buf[:size - cut] = buf[cut:size]
            kept = size - cut


def decode_file(dec: BinanceDecoder, path: Path) -> Iterator[Decoded]:
    """Decode one ``<recv_ns> <json>`` file, yielding a chunk after each block that filled one."""
    progress = Progress([path])
    first = 1  # line number of the block's first line
    # a JSON document spread over several lines (wire.capture.Document): opened where its first
    # line is followed by a line that is no capture line, one dead letter when it ends
    doc: list[Document] = []

    def close(lineno: int | None) -> None:
        # the open document ends unless ``lineno`` is its next line
        if doc and doc[0].last + 1 != lineno:
            doc.pop().reject(dec.rejects)

    for buf in read_blocks(path):
        *scanned, lines, plain = scan_capture(buf)

        def continues(i: int, buf: np.ndarray = buf, lines: np.ndarray = lines) -> bool:
            # line i of the block exists and is neither blank nor a capture line
            if i >= len(lines):
                return False
            raw = buf[lines[i][0]:lines[i][1]].tobytes().rstrip(b"\r\n")
            return bool(raw.strip()) and parse_ns_line(raw) is None

        def line(i: int, first: int = first, buf: np.ndarray = buf, lines: np.ndarray = lines,
                 plain: np.ndarray = plain) -> None:
            where = f"{path.name}:{first + i}"
            start, end, recv_ns, payload = lines[i].tolist()
            close(first + i)
            if plain[i]:  # a capture line whose frame did not match: the per-frame path
                frame = CaptureLine(recv_ns, RECV, "", buf[payload:end].tobytes(), where)
                if opens_document(frame.payload) and continues(i + 1):
                    doc.append(Document(path.name, first + i, frame, buf[start:end].tobytes()))
                    return
                dec.feed_frame(0, frame)
                return
            # any other line by the capture reader's own rules
            raw = buf[start:end].tobytes().rstrip(b"\r\n")
            if not raw.strip():
                return
            parsed = parse_ns_line(raw)
            if parsed is None:
                if doc:  # the open document goes on
                    doc[0].add(first + i, raw)
                    if not continues(i + 1) and i + 1 < len(lines):
                        close(None)
                    return
                dec.rejects.add(Reason.BAD_CAPTURE_LINE, "not a ns capture line", where, raw)
                return
            recv_ns, kind, url, payload = parsed
            frame = CaptureLine(recv_ns, kind, url, payload, where)
            if opens_document(payload) and continues(i + 1):
                doc.append(Document(path.name, first + i, frame, raw))
                return
            dec.feed_frame(0, frame)

        n = len(plain)
        decode_scanned(dec, buf, scanned, lines[:, 2], np.zeros(n, np.int64), line)
        progress.advance(0, len(buf))
        first += n
        if dec.rows >= dec.chunk_rows:
            yield dec.chunk(progress.take(), f"{path.name}:{first - 1}")
    close(None)
    dec.finish()
    yield dec.chunk(progress.rest(), "end")


def decode_lines(dec: BinanceDecoder, items: Sequence[tuple[int, CaptureLine]], *,
                 steady: bool = False) -> bool:
    """Decode ``(file index, line)`` frames, as ``dec.feed_frame`` on each in turn would.

    Args:
        dec: the decoder.
        items: the frames, in order.
        steady: decode them only if each one continues what is already synced (see
            :meth:`~tapeflow.venues.binance.parse.BinanceDecoder.feed_steady`).

    Returns:
        Whether the frames were decoded (always, unless ``steady``).
    """
    n = len(items)
    if n == 0:
        return True
    recv = np.fromiter((line.recv_ns for _, line in items), np.int64, n)
    usable = np.fromiter((line.kind == RECV for _, line in items), np.bool_, n)
    files = np.fromiter((index for index, _ in items), np.int64, n)
    return _decode_payloads(dec, [line.payload for _, line in items], recv, usable, files,
                            lambda i: dec.feed_frame(*items[i]), steady=steady)


def decode_quiet(dec: BinanceDecoder, recv_ns: Sequence[int], payloads: Sequence[bytes]) -> int:
    """Decode the received frames up to the first one that could change an instrument's sync.

    The frames (a live connector's, given as capture times and payloads: no ``CaptureLine`` per
    frame) are decoded from the first on while each is a bookTicker, trade or depth diff of the
    block path's shape and no diff moves its chain to another state (a synced chain's diff links;
    a chain waiting for the diff that bridges its snapshot gets one it supersedes; a chain waiting
    for a snapshot buffers it). A live client that checks sync state after each frame would have
    seen nothing change before the frame where this stops, which it then feeds on its own.

    Returns:
        How many frames (from the first) were decoded.
    """
    n = len(payloads)
    if n == 0:
        return 0
    buf, scanned = _scan(payloads, np.ones(n, np.bool_))
    frames = _Frames(dec, buf, scanned, np.fromiter(recv_ns, np.int64, n), np.zeros(n, np.int64))
    stop = frames.quiet(dec)
    stop = frames.repeat(dec, 0, stop)  # a doubled trade or bookTicker: the per-frame path's dead letter
    if stop:
        dec.frames += stop
        frames.write(dec, 0, stop)
    return stop


def _decode_payloads(dec: BinanceDecoder, payloads: Sequence[bytes], recv: np.ndarray, usable: np.ndarray,
                     files: np.ndarray, slow: Callable[[int], None], *, steady: bool) -> bool:
    buf, scanned = _scan(payloads, usable)
    return decode_scanned(dec, buf, scanned, recv, files, slow, steady=steady)


def _scan(payloads: Sequence[bytes], usable: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    lengths = np.fromiter(map(len, payloads), np.int64, len(payloads))
    ends = np.cumsum(lengths)
    buf = np.frombuffer(b"".join(payloads), np.uint8)
    return buf, scan_frames(buf, ends - lengths, ends, usable)


def decode_scanned(dec: BinanceDecoder, buf: np.ndarray, scanned: Sequence[np.ndarray], recv: np.ndarray,
                   files: np.ndarray, slow: Callable[[int], None], *, steady: bool = False) -> bool:
    """Write the frames the scanner matched, and hand every other one to ``slow``, in order.

    Args:
        dec: the decoder (its buffers, chains, symbol filter, venues per file).
        buf: the scanned bytes.
        scanned: the outputs of :func:`~tapeflow.venues.binance.scan.scan_frames`.
        recv: capture times, ns.
        files: each frame's file index (its venue is ``dec.venues[index]``).
        slow: decodes frame ``i`` one by one (the per-frame path), in place.
        steady: decode nothing and return False unless every frame matched and every depth diff
            links to its synced chain.
    """
    frames = _Frames(dec, buf, scanned, recv, files)
    kind, n = frames.kind, len(frames.kind)
    if steady and ((kind == 0).any() or not frames.links(dec) or frames.repeat(dec, 0, n) < n):
        return False
    start = 0
    for stop in [*np.flatnonzero(kind == 0).tolist(), n]:
        while stop > start:
            # a trade or bookTicker repeating its symbol's newest id is the per-frame path's
            # `duplicate` reject
            end = frames.repeat(dec, start, stop)
            if end > start:
                dec.frames += end - start
                frames.write(dec, start, end)
            if end == stop:
                break
            slow(end)
            start = end + 1
        if stop < n:
            slow(stop)
        start = stop + 1
    return True


IdKey = tuple[str, str, str]  # (venue, symbol, id key): BinanceDecoder.trade_high / quote_high
_ID_KEYS = ((TICKER, "u"), (TRADE, "t"))  # the scanner's trades are `trade` events (aggTrade: per frame)


class _Frames:
    """The scanner's outputs, per kind, written a run of matched frames at a time (a frame of a
    symbol outside the decoder's filter counts as unmatched: the per-frame path writes its reject)."""

    def __init__(self, dec: BinanceDecoder, buf: np.ndarray, scanned: Sequence[np.ndarray], recv: np.ndarray,
                 files: np.ndarray) -> None:
        kind, sym, ms, ids, maker, nanos, lv, px, sz, uniq, n_uniq = scanned
        symbols = [buf[s:e].tobytes().decode("ascii") for s, e in uniq[:n_uniq].tolist()]
        if dec.symbols is not None and symbols:
            outside = np.array([s.upper() not in dec.symbols for s in symbols])
            kind[(kind > 0) & outside[sym]] = 0
        self.kind = kind
        self.at = {k: np.flatnonzero(kind == k) for k in (TICKER, TRADE, DEPTH)}
        self.sym, self.ms, self.ids, self.maker, self.nanos, self.lv = sym, ms, ids, maker, nanos, lv
        self.px, self.sz, self.recv, self.files, self.symbols = px, sz, recv, files, symbols

    def _span(self, k: int, start: int, stop: int) -> np.ndarray:
        at = self.at[k]
        return at[np.searchsorted(at, start):np.searchsorted(at, stop)]

    def write(self, dec: BinanceDecoder, start: int, stop: int) -> None:
        venues = list(dec.venues)  # an "open" line between runs may have changed a file's venue
        q = self._span(TICKER, start, stop)
        if len(q):
            v = self.nanos[q]
            late = self._late(dec.quote_high, q, venues, "u")
            dec.quotes.add_arrays(
                len(q), ts_event_ns=self.ms[q] * _MS, ts_recv_ns=self.recv[q],
                venue=_names(venues, self.files[q]), symbol=_names(self.symbols, self.sym[q]),
                sequence=self.ids[q, 0], bid_price_nanos=v[:, 0], bid_size_nanos=v[:, 1],
                ask_price_nanos=v[:, 2], ask_size_nanos=v[:, 3],
                flags=np.where(late, F_GAP, 0).astype(np.uint8))
        t = self._span(TRADE, start, stop)
        if len(t):
            trade_id = self.ids[t, 0]
            late = self._late(dec.trade_high, t, venues, "t")
            dec.trades.add_arrays(
                len(t), ts_event_ns=self.ms[t] * _MS, ts_recv_ns=self.recv[t],
                venue=_names(venues, self.files[t]), symbol=_names(self.symbols, self.sym[t]),
                sequence=trade_id, trade_id=pc.cast(pa.array(trade_id), pa.string()),
                price_nanos=self.nanos[t, 0], size_nanos=self.nanos[t, 1],
                # the buyer resting on the book means the seller crossed the spread
                aggressor_side=np.where(self.maker[t], ASK, BID).astype(np.uint8),
                flags=np.where(late, F_GAP, 0).astype(np.uint8))
        d = self._span(DEPTH, start, stop)
        if len(d):
            self._depth(dec, d, venues)

    def _keys(self, at: np.ndarray, venues: list[str], id_key: str) -> Iterator[tuple[IdKey, np.ndarray]]:
        """``(venue, symbol, id_key)`` and the positions in ``at`` of its frames, in order."""
        n_sym = len(self.symbols)
        code = self.files[at] * n_sym + self.sym[at]
        for c in np.unique(code).tolist():
            yield (venues[c // n_sym], self.symbols[c % n_sym], id_key), np.flatnonzero(code == c)

    def _late(self, highs: dict[IdKey, int], at: np.ndarray, venues: list[str], id_key: str) -> np.ndarray:
        """Per frame of ``at``, whether its id is below its symbol's newest (it arrived out of order);
        ``highs`` moves on to the newest ids."""
        ids = self.ids[at, 0]
        late = np.zeros(len(at), np.bool_)
        for key, rows in self._keys(at, venues, id_key):
            below, highs[key] = _running_high(ids[rows], highs.get(key))
            late[rows] = ids[rows] < below
        return late

    def repeat(self, dec: BinanceDecoder, start: int, stop: int) -> int:
        """The first frame in ``[start, stop)`` whose trade id or bookTicker ``u`` equals its
        symbol's newest (a doubled frame), else ``stop``."""
        first = stop
        venues = list(dec.venues)
        for kind, id_key in _ID_KEYS:
            at = self._span(kind, start, stop)
            highs = dec.quote_high if kind == TICKER else dec.trade_high
            for key, rows in self._keys(at, venues, id_key):
                ids = self.ids[at[rows], 0]
                below, _ = _running_high(ids, highs.get(key))
                hit = np.flatnonzero(ids == below)
                if hit.size:
                    first = min(first, int(at[rows[hit[0]]]))
        return first

    def links(self, dec: BinanceDecoder) -> bool:
        """Whether every depth diff continues its synced chain (nothing to buffer, flag or count
        as a gap): what a per-frame decode of a steady stream sees."""
        d = self.at[DEPTH]
        if not len(d):
            return True
        venues = list(dec.venues)
        for f, s in set(zip(self.files[d].tolist(), self.sym[d].tolist(), strict=True)):
            chain = dec.chains.get((venues[f], self.symbols[s]))
            if chain is None or not chain.synced or chain._carry_gap:
                return False
            mine = d[(self.files[d] == f) & (self.sym[d] == s)]
            first, last, prev = self.ids[mine, 0], self.ids[mine, 1], self.ids[mine, 2]
            expected = np.concatenate(([chain.prev_last], last[:-1]))
            linked = np.where(prev >= 0, prev == expected, first == expected + 1)
            if not linked.all():
                return False
        return True

    def quiet(self, dec: BinanceDecoder) -> int:
        """How many frames from the first change no chain's state (see :func:`decode_quiet`)."""
        unmatched = np.flatnonzero(self.kind == 0)
        stop = int(unmatched[0]) if len(unmatched) else len(self.kind)
        d = self.at[DEPTH]
        d = d[:np.searchsorted(d, stop)]
        venues = list(dec.venues)
        for f, s in set(zip(self.files[d].tolist(), self.sym[d].tolist(), strict=True)):
            chain = dec.chains.get((venues[f], self.symbols[s]))
            if chain is None or chain.state == WAIT_SNAPSHOT:
                continue  # its diffs wait in the buffer
            mine = d[(self.files[d] == f) & (self.sym[d] == s)]
            if chain._carry_gap:
                stop = min(stop, int(mine[0]))  # a gap flag rides on its next row: that diff alone
                continue
            first, last, prev = self.ids[mine, 0], self.ids[mine, 1], self.ids[mine, 2]
            if chain.state == WAIT_BRIDGE:  # superseded until the diff that bridges (or misses) the snapshot
                changes = last >= chain.snapshot_id + (prev < 0)
            else:  # synced: a diff that does not link is a gap
                expected = np.concatenate(([chain.prev_last], last[:-1]))
                changes = ~np.where(prev >= 0, prev == expected, first == expected + 1)
            hit = np.flatnonzero(changes)
            if len(hit):
                stop = min(stop, int(mine[hit[0]]))
        return stop

    def _depth(self, dec: BinanceDecoder, d: np.ndarray, venues: list[str]) -> None:
        distinct = sorted(set(venues))
        venue_of_file = np.array([distinct.index(v) for v in venues], np.int64)
        n_sym = len(self.symbols)
        pair = venue_of_file[self.files[d]] * n_sym + self.sym[d]
        if (pair == pair[0]).all():  # one instrument, as a connection or a capture mostly holds
            found, key = pair[:1], np.zeros(len(d), np.int64)
        else:
            found, key = np.unique(pair, return_inverse=True)
        pairs = [(distinct[p // n_sym], self.symbols[p % n_sym]) for p in found.tolist()]
        ids, lv = self.ids[d], self.lv[d]
        buffered = chain_block(DiffBlock(
            chains=[dec.chain(v, s) for v, s in pairs], key=key, first=ids[:, 0], last=ids[:, 1],
            prev=ids[:, 2], ts_event_ns=self.ms[d] * _MS, ts_recv_ns=self.recv[d], level_at=lv[:, 0],
            bids=lv[:, 1], asks=lv[:, 2], prices=self.px, sizes=self.sz,
            venues=[v for v, _ in pairs], symbols=[s for _, s in pairs]), dec.stats, dec.deltas)
        # each diff's frame accounted for as the per-frame path's apply_diff counts it
        empty = (lv[:, 1] + lv[:, 2]) == 0
        if empty.any():
            dec.quiet_frames["empty diff"] += int(empty.sum())
        dec.buffered_frames += int((buffered & ~empty).sum())


def _running_high(ids: np.ndarray, high: int | None) -> tuple[np.ndarray, int]:
    """The highest id before each of ``ids`` (``high`` before the first; -1 for none) and after all."""
    start = np.int64(-1 if high is None else high)
    running = np.maximum.accumulate(np.concatenate(([start], ids)))
    return running[:-1], int(running[-1])


def _names(names: list[str], ids: np.ndarray) -> str | pa.Array:
    """``names[id]`` per row: one value when every row shares it."""
    first = int(ids[0])
    if (ids == first).all():
        return names[first]
    return pa.array(names, pa.string()).take(pa.array(ids))
