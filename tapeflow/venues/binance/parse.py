"""Binance spot and futures captures -> ``book_delta``, ``trade``, ``quote`` (+ ``rejected``).

Reads both capture flavours of :mod:`tapeflow.venues.capture`: hftbacktest ``<recv_ns> <json>``
files (combined-stream envelopes plus one bare REST snapshot) and cryptofeed ``.ws.``/``.http.``
logs. Several paths are merged by capture time, so a REST capture passed beside its websocket
capture syncs the books. Depth diffs go through :class:`~tapeflow.venues.l2sync.SeqChain`, one
per (venue, symbol): futures diffs link by ``pu``, spot diffs by ``U == previous u + 1``.

The venue column says which market: ``binance`` (spot), ``binance-usdm``, ``binance-coinm``,
from the capture's URL host or, for files without URLs, the file name or a ``pu`` in its diffs.
``ts_event_ns`` is ``T`` (else ``E``) in ms; it falls back to the capture time when Binance
sends neither (spot bookTicker, spot REST snapshot).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas.records import ASK, BID
from tapeflow.venues.base import Decoded, Rejects
from tapeflow.venues.binance import messages as wire
from tapeflow.venues.binance.fast import decode_block, decode_columns
from tapeflow.venues.capture import (
    HTTP,
    OPEN,
    RECV,
    SENT,
    CaptureLine,
    detect_flavour,
    open_maybe_gzip,
)
from tapeflow.venues.capture import (
    _parse_ns as parse_ns_line,
)
from tapeflow.venues.fastjson import read_blocks, split_ns_lines
from tapeflow.venues.jsonframes import (
    CHUNK_ROWS,
    BadFrame,
    CaptureDecoder,
    field,
    integer,
    levels,
    load_json,
    ms_to_ns,
    nanos,
)
from tapeflow.venues.l2sync import L2Message, L2Snapshot

_SNIFF_LINES = 2000
# Frames per fast-path block: each block costs a few dozen Arrow calls, whatever its size.
BLOCK_FRAMES = 8192


class BinanceDecoder(CaptureDecoder):
    """One decode pass over Binance captures; ``stats`` holds the depth-chain oracle counts.

    Args:
        symbols: keep only these symbols (Binance spelling, any case); others become
            ``unknown_symbol`` rejects. None keeps every symbol.
        chunk_rows: yield a chunk once this many rows are buffered.
        fast: :meth:`run` decodes blocks of frames column-wise (:mod:`tapeflow.venues.binance.fast`):
            the same rows, rejects and chain stats as the per-frame path (tested), ~1.5x faster on
            a ``<recv_ns> <json>`` file (``docs/decoding.md``). False: frame by frame everywhere.
    """

    def __init__(self, *, symbols: Collection[str] | None = None, chunk_rows: int = CHUNK_ROWS,
                 fast: bool = True) -> None:
        super().__init__("binance", symbols=symbols, chunk_rows=chunk_rows)
        self.venues: list[str] = []
        self.fast = fast

    def start(self, paths: list[Path]) -> None:
        self.venues = [_default_venue(p) for p in paths]

    def run(self, paths: Sequence[Path]) -> Iterator[Decoded]:
        """Decode ``paths`` merged by capture time, yielding chunks of about ``chunk_rows`` rows.

        The fast path decodes blocks of :data:`BLOCK_FRAMES` frames and checks the chunk size
        after each (the per-frame path every 1024 frames): the same rows, cut into chunks at
        other places.
        """
        if not self.fast:
            yield from super().run(paths)
            return
        paths = [Path(p) for p in paths]
        if len(paths) == 1 and detect_flavour(paths[0]) == "ns":
            yield from self._run_ns(paths[0])
            return
        self.start(paths)
        bytes_read = 0
        self._reported = 0
        block: list[tuple[int, CaptureLine]] = []
        for item in self.lines(paths):
            bytes_read += len(item[1].payload) + 1
            block.append(item)
            if len(block) == BLOCK_FRAMES:
                decode_block(self, block)
                block = []
                if self._rows() >= self.chunk_rows:
                    yield self._chunk(bytes_read, item[1].location)
        decode_block(self, block)
        self.finish()
        yield self._chunk(bytes_read, "end")

    def _run_ns(self, path: Path) -> Iterator[Decoded]:
        # One <recv_ns> <json> file: split whole blocks of lines at once, no object per line.
        self.start([path])
        bytes_read = 0
        self._reported = 0
        venues: list[str] = []
        for first, data in read_blocks(path):
            split = split_ns_lines(data)
            if split is None:  # a blank, bad or \r-ended line: this block frame by frame
                # (lazily, so a bad line's reject falls between the frames around it)
                for index, line in _ns_items(path.name, first, data, self.rejects):
                    bytes_read += len(line.payload) + 1
                    self.feed_frame(index, line)
            else:
                recv, payloads = split
                bytes_read += pc.sum(pc.binary_length(payloads)).as_py() + len(payloads)
                if len(venues) != len(payloads):
                    venues = [self.venues[0]] * len(payloads)
                decode_columns(self, payloads, recv, np.ones(len(payloads), bool), venues,
                               _NsLines(path.name, first, recv, payloads).frame)
            if self._rows() >= self.chunk_rows:
                last = first + data.count(b"\n") - data.endswith(b"\n")
                yield self._chunk(bytes_read, f"{path.name}:{last}")
        self.finish()
        yield self._chunk(bytes_read, "end")

    def frame(self, index: int, line: CaptureLine) -> None:
        if line.kind == OPEN:
            self.venues[index] = _url_venue(line.url, self.venues[index])
        elif line.kind == HTTP:
            self._http(line)
        elif line.kind != SENT:
            self._frame(self.venues[index], line)

    def _frame(self, venue: str, line: CaptureLine) -> None:
        msg = load_json(line.payload)
        if not isinstance(msg, dict):
            raise BadFrame("unknown_message", f"frame is a JSON {type(msg).__name__}, not an object")
        data = msg.get("data")
        if "stream" in msg and isinstance(data, dict):
            self._event(venue, data, str(msg["stream"]), line)
        elif "e" in msg:
            self._event(venue, msg, "", line)
        elif "lastUpdateId" in msg:
            # The live journal (tapeflow.venues.binance.client) prefixes the REST body with the
            # "symbol" it asked for, since Binance's body does not say; hftbacktest files have none.
            symbol = msg.get("symbol")
            self._snapshot(venue, msg, symbol if isinstance(symbol, str) and symbol else None, line)
        elif "result" in msg and "id" in msg:
            return  # subscription acknowledgement: no market data
        elif "code" in msg and "msg" in msg:
            raise BadFrame("venue_error", f"venue error {msg['code']}: {msg['msg']}")
        else:
            raise BadFrame("unknown_message", f"object with keys {sorted(msg)[:8]}")

    def _event(self, venue: str, data: dict[str, Any], stream: str, line: CaptureLine) -> None:
        kind = data.get("e")
        if wire.PARTIAL_DEPTH_STREAM.search(stream) or kind in wire.UNSUPPORTED_EVENTS:
            raise BadFrame("unsupported_channel", f"channel {stream or kind!r} is not decoded")
        if kind == wire.DEPTH_UPDATE:
            self._depth(venue, data, line)
        elif kind == wire.TRADE:
            self._trade(venue, data, "t", line)
        elif kind == wire.AGG_TRADE:
            self._trade(venue, data, "a", line)
        elif kind == wire.BOOK_TICKER or (kind is None and "@bookTicker" in stream):
            self._quote(venue, data, line)
        else:
            raise BadFrame("unknown_message", f"event type {kind!r} on stream {stream!r}")

    def _depth(self, venue: str, data: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.check_symbol(data.get("s"))
        first, last = integer(data, "U"), integer(data, "u")
        prev = integer(data, "pu") if "pu" in data else None
        if first > last:
            raise BadFrame("out_of_range", f"first update id U={first} is above final id u={last}")
        bid_px, bid_sz = levels(field(data, "b"), "b")
        ask_px, ask_sz = levels(field(data, "a"), "a")
        ts_event = ms_to_ns(data.get("T", data.get("E")), line.recv_ns)
        msg = L2Message(venue, symbol, first, last, prev, ts_event, line.recv_ns,
                        [BID] * len(bid_px) + [ASK] * len(ask_px), bid_px + ask_px, bid_sz + ask_sz)
        self.chain(venue, symbol).update(msg, self.deltas)

    def _snapshot(self, venue: str, body: dict[str, Any], symbol: str | None, line: CaptureLine) -> None:
        last_id = integer(body, "lastUpdateId")
        bid_px, bid_sz = levels(field(body, "bids"), "bids")
        ask_px, ask_sz = levels(field(body, "asks"), "asks")
        if symbol is None:
            symbol = self._bare_snapshot_symbol(venue, last_id)
        elif self.symbols is not None and symbol.upper() not in self.symbols:
            raise BadFrame("unknown_symbol",
                           f"snapshot symbol {symbol!r} is not among {sorted(self.symbols)}")
        ts_event = ms_to_ns(body.get("T", body.get("E")), line.recv_ns)
        snap = L2Snapshot(venue, symbol, last_id, ts_event, line.recv_ns,
                          [BID] * len(bid_px) + [ASK] * len(ask_px), bid_px + ask_px, bid_sz + ask_sz)
        self.chain(venue, symbol).snapshot(snap, self.deltas)

    def _bare_snapshot_symbol(self, venue: str, last_id: int) -> str:
        # hftbacktest writes the REST body without its symbol: it belongs to the one symbol of
        # the capture, or to the one whose buffered diffs bracket its lastUpdateId.
        known = [s for (v, s) in self.chains if v == venue]
        if len(known) == 1:
            return known[0]
        bracketing = [s for (v, s), c in self.chains.items() if v == venue and any(
            m.first_id <= last_id + 1 and m.last_id >= last_id for m in c.pending)]
        if len(bracketing) == 1:
            return bracketing[0]
        raise BadFrame("unknown_symbol", f"snapshot lastUpdateId={last_id} carries no symbol and matches "
                                         f"{len(bracketing)} of the symbols {sorted(known)}")

    def _http(self, line: CaptureLine) -> None:
        url = urlsplit(line.url)
        venue = wire.HOST_VENUE.get(url.hostname or "", wire.SPOT)
        body = load_json(line.payload)
        if isinstance(body, dict) and "code" in body and "msg" in body:
            raise BadFrame("venue_error", f"{line.url} answered {body['code']}: {body['msg']}")
        symbols = parse_qs(url.query).get("symbol")
        if not url.path.endswith("/depth") or not symbols:
            raise BadFrame("unknown_message", f"REST response of {line.url} is not a depth snapshot")
        if not isinstance(body, dict):
            raise BadFrame("unknown_message", f"depth snapshot body is a JSON {type(body).__name__}")
        self._snapshot(venue, body, symbols[0], line)

    def _trade(self, venue: str, data: dict[str, Any], id_key: str, line: CaptureLine) -> None:
        symbol = self.check_symbol(data.get("s"))
        trade_id = integer(data, id_key)
        maker = field(data, "m")
        if not isinstance(maker, bool):
            raise BadFrame("bad_field", f"buyer-is-maker 'm' was {maker!r}, not a boolean")
        self.trades.append(
            ts_event_ns=ms_to_ns(data.get("T", data.get("E")), line.recv_ns), ts_recv_ns=line.recv_ns,
            venue=venue, symbol=symbol, sequence=trade_id, trade_id=str(trade_id),
            price_nanos=nanos(field(data, "p"), "price p"), size_nanos=nanos(field(data, "q"), "quantity q"),
            # the buyer resting on the book means the seller crossed the spread
            aggressor_side=ASK if maker else BID, flags=0,
        )

    def _quote(self, venue: str, data: dict[str, Any], line: CaptureLine) -> None:
        symbol = self.check_symbol(data.get("s"))
        self.quotes.append(
            ts_event_ns=ms_to_ns(data.get("T", data.get("E")), line.recv_ns), ts_recv_ns=line.recv_ns,
            venue=venue, symbol=symbol, sequence=integer(data, "u"),
            bid_price_nanos=nanos(field(data, "b"), "bid price b"),
            bid_size_nanos=nanos(field(data, "B"), "bid size B"),
            ask_price_nanos=nanos(field(data, "a"), "ask price a"),
            ask_size_nanos=nanos(field(data, "A"), "ask size A"), flags=0,
        )


def decode(paths: Sequence[Path], *, symbols: Collection[str] | None = None,
           chunk_rows: int = CHUNK_ROWS, fast: bool = True) -> Iterator[Decoded]:
    """Decode Binance captures (websocket and REST, either flavour) into normalized chunks.

    Args:
        paths: capture files; REST snapshot captures may be passed beside websocket ones.
        symbols: keep only these symbols; others become ``unknown_symbol`` rejects.
        chunk_rows: rows per yielded chunk (about).
        fast: the column-wise block path (opt-in; see :class:`BinanceDecoder`).

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade``, ``quote`` and ``rejected`` tables.
    """
    yield from BinanceDecoder(symbols=symbols, chunk_rows=chunk_rows, fast=fast).run(paths)


def _url_venue(url: str, default: str) -> str:
    return wire.HOST_VENUE.get(urlsplit(url).hostname or "", default)


def _default_venue(path: Path) -> str:
    if path.parent.name in (wire.USDM, wire.COINM):
        return path.parent.name  # the live journal's folder: <root>/binance-usdm/<day>.jsonl
    name = path.name.lower()
    if any(k in name for k in ("coinm", "delivery", "dapi")):
        return wire.COINM
    if any(k in name for k in ("usdm", "futures", "fapi")):
        return wire.USDM
    # Files without URLs or telling names: only futures diffs carry "pu".
    with open_maybe_gzip(path) as fh:
        for i, raw in enumerate(fh):
            if b'"depthUpdate"' in raw:
                return wire.USDM if b'"pu":' in raw else wire.SPOT
            if i >= _SNIFF_LINES:
                break
    return wire.SPOT


def _ns_items(name: str, first: int, data: bytes, rejects: Rejects) -> Iterator[tuple[int, CaptureLine]]:
    """The lines of a block by :func:`~tapeflow.venues.capture.read_capture`'s rules, one at a time."""
    for lineno, raw in enumerate(data.split(b"\n"), first):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        parsed = parse_ns_line(line)
        if parsed is None:
            rejects.add("bad_capture_line", "not a ns capture line", f"{name}:{lineno}", line)
            continue
        recv_ns, kind, url, payload = parsed
        yield 0, CaptureLine(recv_ns, kind, url, payload, f"{name}:{lineno}")


class _NsLines:
    """Frame ``i`` of a block :func:`split_ns_lines` accepted, for the per-frame path.

    Every line of such a block is a frame (none blank), so line numbers run on from the first;
    the payload's bytes are those of its (valid UTF-8) text.
    """

    def __init__(self, name: str, first: int, recv: np.ndarray, payloads: pa.Array) -> None:
        self.name, self.first, self.recv, self.payloads = name, first, recv, payloads

    def frame(self, i: int) -> tuple[int, CaptureLine]:
        payload = self.payloads[i].as_py().encode()
        return 0, CaptureLine(int(self.recv[i]), RECV, "", payload, f"{self.name}:{self.first + i}")
