"""The column-wise fast path of the Binance decoder: a block of frames matched and converted at once.

:func:`decode_block` matches a block of frames against strict grammars of the three shapes Binance
sends by the million (``bookTicker``, ``trade`` and ``depthUpdate`` as the futures and spot streams
spell them, see :mod:`tapeflow.venues.fastjson` for why a match is exact) and converts their
columns in a few Arrow/numpy calls: no JSON object per frame, no call chain per frame.

Every other frame (REST snapshots, acknowledgements, other events, other key orders, a decimal
that is not plain, a symbol outside the filter, ``U > u``...) goes to the decoder's per-frame
path at its place in the block, so rows keep their order and rejects are the per-frame path's.
Depth diffs still pass one by one through the same :class:`~tapeflow.venues.l2sync.SeqChain`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas.records import ASK, BID
from tapeflow.venues.capture import RECV, CaptureLine
from tapeflow.venues.fastjson import (
    BOOL,
    INT,
    STR,
    integers,
    match_frames,
    plain_decimals_to_nanos,
    text_array,
)
from tapeflow.venues.l2sync import L2Message

if TYPE_CHECKING:
    from tapeflow.venues.binance.parse import BinanceDecoder

_HEAD = rf'^\{{"stream":"(?P<stream>{STR})","data":\{{'
_TAIL = r"\}\}$"
TICKER = (rf'{_HEAD}"e":"bookTicker","u":(?P<u>{INT}),"s":"(?P<s>{STR})","b":"(?P<b>{STR})",'
          rf'"B":"(?P<B>{STR})","a":"(?P<a>{STR})","A":"(?P<A>{STR})","T":(?P<T>{INT}),"E":(?P<E>{INT}){_TAIL}')
TRADE = (rf'{_HEAD}"e":"trade","E":(?P<E>{INT}),"T":(?P<T>{INT}),"s":"(?P<s>{STR})","t":(?P<t>{INT}),'
         rf'"p":"(?P<p>{STR})","q":"(?P<q>{STR})"(?:,"X":"{STR}")?,"m":(?P<m>{BOOL}){_TAIL}')
_LEVELS = rf'(?:\["{STR}","{STR}"\](?:,\["{STR}","{STR}"\])*)?'
DEPTH = (rf'{_HEAD}"e":"depthUpdate","E":(?P<E>{INT})(?:,"T":(?P<T>{INT}))?,"s":"(?P<s>{STR})",'
         rf'"U":(?P<U>{INT}),"u":(?P<u>{INT})(?:,"pu":(?P<pu>{INT}))?,'
         rf'"b":\[(?P<b>{_LEVELS})\],"a":\[(?P<a>{_LEVELS})\]{_TAIL}')
DEPTH_HEAD = (rf'{_HEAD}"e":"depthUpdate","E":(?P<E>{INT})(?:,"T":(?P<T>{INT}))?,"s":"(?P<s>{STR})",'
              rf'"U":(?P<U>{INT}),"u":(?P<u>{INT})(?:,"pu":(?P<pu>{INT}))?,"b":\[')
_PARTIAL_DEPTH = r"@depth[0-9]+"  # wire.PARTIAL_DEPTH_STREAM: top-N snapshot streams, not diffs
_MAX_MS = (2**63 - 1) // 1_000_000  # event times in ms whose ns still fit int64
_MS = 1_000_000


class _Kind:
    """The frames of one shape in a block: their positions and their columns as Python lists."""

    def __init__(self, at: np.ndarray, cols: dict[str, list]) -> None:
        self.at = at
        self.cols = cols

    def span(self, start: int, stop: int) -> tuple[int, int]:
        return int(np.searchsorted(self.at, start)), int(np.searchsorted(self.at, stop))


def decode_block(dec: BinanceDecoder, items: Sequence[tuple[int, CaptureLine]]) -> None:
    """Decode ``(file index, line)`` frames as ``dec.feed_frame`` on each in turn would.

    Args:
        dec: the decoder whose builders, chains, symbol filter and per-frame path are used.
        items: consecutive frames.
    """
    n = len(items)
    if n == 0:
        return
    payloads = text_array([line.payload for _, line in items])
    if payloads is None:  # not UTF-8 somewhere: orjson decides per frame
        for index, line in items:
            dec.feed_frame(index, line)
        return
    recv = np.fromiter((line.recv_ns for _, line in items), np.int64, n)
    usable = np.fromiter((line.kind == RECV for _, line in items), bool, n)
    venues = [dec.venues[index] for index, _ in items]
    decode_columns(dec, payloads, recv, usable, venues, items.__getitem__)


def decode_columns(dec: BinanceDecoder, payloads: pa.Array, recv: np.ndarray, usable: np.ndarray,
                   venues: list[str], frame: Callable[[int], tuple[int, CaptureLine]]) -> None:
    """:func:`decode_block` on frames already in columns.

    Args:
        dec: the decoder.
        payloads: frame bodies (Arrow strings, valid UTF-8).
        recv: capture times, ns.
        usable: False for frames that are no received websocket frames.
        venues: the venue of each frame.
        frame: ``(file index, line)`` of frame i, for the frames the per-frame path decodes.
    """
    n = len(payloads)
    quotes = _quotes(dec, payloads, usable, recv)
    trades = _trades(dec, payloads, usable, recv)
    depth = _depth(dec, payloads, usable, recv)
    fast = np.zeros(n, bool)
    for kind in (quotes, trades, depth):
        fast[kind.at] = True
    start = 0
    for stop in [*np.flatnonzero(~fast).tolist(), n]:
        if stop > start:
            dec.frames += stop - start
            _write_rows(dec.quotes._cols, quotes, venues, start, stop)
            _write_rows(dec.trades._cols, trades, venues, start, stop)
            _write_depth(dec, depth, venues, start, stop)
        if stop < n:
            dec.feed_frame(*frame(stop))
        start = stop + 1


def _checks(dec: BinanceDecoder, g: dict[str, pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """The per-frame checks every shape shares (stream, symbol filter, event time), and ts_event_ns."""
    ok = ~pc.match_substring_regex(g["stream"], _PARTIAL_DEPTH).to_numpy(zero_copy_only=False)
    symbol = g["s"]
    # Arrow and Python upper-case alike only for ASCII: other symbols go the per-frame way.
    ok &= pc.and_(pc.not_equal(symbol, ""), pc.string_is_ascii(symbol)).to_numpy(zero_copy_only=False)
    if dec.symbols is not None:
        allowed = pa.array(sorted(dec.symbols), pa.string())
        ok &= pc.is_in(pc.utf8_upper(symbol), value_set=allowed).to_numpy(zero_copy_only=False)
    # ts_event is "T", else "E" (both in ms), as the per-frame path takes them
    t, e = integers(g["T"]), integers(g["E"])
    ms = np.where(t >= 0, t, e)
    ok &= ms <= _MAX_MS
    return ok, np.where(ok, ms, 0) * _MS


def _decimals(ok: np.ndarray, *texts: pa.Array) -> list[np.ndarray]:
    out = []
    for t in texts:
        values, plain = plain_decimals_to_nanos(t)
        ok &= plain
        out.append(values)
    return out


def _quotes(dec: BinanceDecoder, payloads: pa.Array, usable: np.ndarray, recv: np.ndarray) -> _Kind:
    at, g, _ = match_frames(payloads, usable, '"e":"bookTicker"', TICKER)
    ok, ts = _checks(dec, g)
    bid_px, bid_sz, ask_px, ask_sz = _decimals(ok, g["b"], g["B"], g["a"], g["A"])
    keep = pa.array(ok)
    return _Kind(at[ok], {
        "ts_event_ns": ts[ok].tolist(), "ts_recv_ns": recv[at[ok]].tolist(),
        "symbol": g["s"].filter(keep).to_pylist(), "sequence": integers(g["u"])[ok].tolist(),
        "bid_price_nanos": bid_px[ok].tolist(), "bid_size_nanos": bid_sz[ok].tolist(),
        "ask_price_nanos": ask_px[ok].tolist(), "ask_size_nanos": ask_sz[ok].tolist(),
    })


def _trades(dec: BinanceDecoder, payloads: pa.Array, usable: np.ndarray, recv: np.ndarray) -> _Kind:
    at, g, _ = match_frames(payloads, usable, '"e":"trade"', TRADE)
    ok, ts = _checks(dec, g)
    price, size = _decimals(ok, g["p"], g["q"])
    keep = pa.array(ok)
    maker = pc.equal(g["m"], "true").to_numpy(zero_copy_only=False)[ok]
    return _Kind(at[ok], {
        "ts_event_ns": ts[ok].tolist(), "ts_recv_ns": recv[at[ok]].tolist(),
        "symbol": g["s"].filter(keep).to_pylist(), "sequence": integers(g["t"])[ok].tolist(),
        # a JSON integer without sign or leading zeros reads back as the same text
        "trade_id": g["t"].filter(keep).to_pylist(),
        "price_nanos": price[ok].tolist(), "size_nanos": size[ok].tolist(),
        # the buyer resting on the book means the seller crossed the spread
        "aggressor_side": np.where(maker, ASK, BID).tolist(),
    })


def _levels(content: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``["p","q"],["p","q"]`` per frame -> (levels per frame, prices, sizes, all plain per frame)."""
    n = len(content)
    nonempty = pc.not_equal(content, "")
    full = content.filter(nonempty)
    inner = pc.utf8_slice_codeunits(full, 2, -2)  # drop the outer [" and "]
    # No quote can appear inside a captured string, so both separators are unambiguous.
    texts = pc.list_flatten(pc.split_pattern(pc.replace_substring(inner, '"],["', '","'), '","'))
    counts = np.zeros(n, np.int64)
    counts[nonempty.to_numpy(zero_copy_only=False)] = (
        pc.count_substring(full, "],[").to_numpy(zero_copy_only=False) + 1)
    values, plain = plain_decimals_to_nanos(texts)
    ok = np.ones(n, bool)
    ok[np.repeat(np.arange(n), counts * 2)[~plain]] = False
    return counts, values[0::2], values[1::2], ok


def _depth(dec: BinanceDecoder, payloads: pa.Array, usable: np.ndarray, recv: np.ndarray) -> _Kind:
    # The levels make depth frames long: match the whole grammar without captures (RE2's fast
    # automaton), capture the short head only, and cut the two level lists at their keys (no
    # quote can appear inside a string, so '"b":[' and '],"a":[' occur once).
    at, g, lines = match_frames(payloads, usable, '"e":"depthUpdate"', DEPTH, capture=DEPTH_HEAD)
    ok, ts = _checks(dec, g)
    first, last, prev = integers(g["U"]), integers(g["u"]), integers(g["pu"])
    ok &= first <= last
    rest = pc.list_element(pc.split_pattern(lines, ',"b":[', max_splits=1), 1)
    halves = pc.split_pattern(rest, '],"a":[', max_splits=1)
    bids = pc.list_element(halves, 0)
    asks = pc.utf8_slice_codeunits(pc.list_element(halves, 1), 0, -3)  # drop the closing ]}}
    n_bid, bid_px, bid_sz, bid_ok = _levels(bids)
    n_ask, ask_px, ask_sz, ask_ok = _levels(asks)
    ok &= bid_ok & ask_ok
    bid_end, ask_end = np.cumsum(n_bid), np.cumsum(n_ask)
    keep = pa.array(ok)
    prev_ok = prev[ok].tolist()
    return _Kind(at[ok], {
        "ts_event_ns": ts[ok].tolist(), "ts_recv_ns": recv[at[ok]].tolist(),
        "symbol": g["s"].filter(keep).to_pylist(), "first": first[ok].tolist(), "last": last[ok].tolist(),
        "prev": [p if p >= 0 else None for p in prev_ok],
        "bid_end": bid_end[ok].tolist(), "n_bid": n_bid[ok].tolist(),
        "ask_end": ask_end[ok].tolist(), "n_ask": n_ask[ok].tolist(),
        "levels": (bid_px.tolist(), bid_sz.tolist(), ask_px.tolist(), ask_sz.tolist()),
    })


def _write_rows(cols: dict[str, list], kind: _Kind, venues: list[str], start: int, stop: int) -> None:
    lo, hi = kind.span(start, stop)
    if lo == hi:
        return
    # Columns (tapeflow.venues.base) keeps plain lists: extend them column-wise.
    for name, values in kind.cols.items():
        cols[name] += values[lo:hi]
    cols["venue"] += [venues[i] for i in kind.at[lo:hi].tolist()]
    cols["flags"] += [0] * (hi - lo)


def _write_depth(dec: BinanceDecoder, kind: _Kind, venues: list[str], start: int, stop: int) -> None:
    lo, hi = kind.span(start, stop)
    c = kind.cols
    bid_px, bid_sz, ask_px, ask_sz = c["levels"]
    for j, pos in zip(range(lo, hi), kind.at[lo:hi].tolist(), strict=True):
        b1, nb, a1, na = c["bid_end"][j], c["n_bid"][j], c["ask_end"][j], c["n_ask"][j]
        b0, a0 = b1 - nb, a1 - na
        venue, symbol = venues[pos], c["symbol"][j]
        msg = L2Message(venue, symbol, c["first"][j], c["last"][j], c["prev"][j], c["ts_event_ns"][j],
                        c["ts_recv_ns"][j], [BID] * nb + [ASK] * na,
                        bid_px[b0:b1] + ask_px[a0:a1], bid_sz[b0:b1] + ask_sz[a0:a1])
        dec.chain(venue, symbol).update(msg, dec.deltas)
