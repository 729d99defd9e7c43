"""Live Binance spot, USD-M and COIN-M futures client: depth diffs synced to REST snapshots, trades,
bookTicker.

Streams (combined, in the URL): ``<sym>@depth@100ms``, ``<sym>@trade`` (spot) or ``<sym>@aggTrade``
(futures), ``<sym>@bookTicker``. Sync follows Binance's documented procedure, and the decoder that
does it is the batch one (:class:`~tapeflow.venues.binance.parse.BinanceDecoder` and its
:class:`~tapeflow.venues.l2sync.SeqChain`): buffer the diffs, GET a snapshot, drop the diffs it
contains, apply the first one that bridges its ``lastUpdateId``, then require ``pu == previous u``
(futures) or ``U == previous u + 1`` (spot). A break flags its first row ``F_GAP`` (the book is
in RESYNC from there), the following diffs wait in the chain, and this client asks for a fresh,
rate-limited snapshot; nothing after the gap is applied as valid until a snapshot is bridged.

The REST body is journaled with ``"symbol":"<SYM>",`` spliced after its ``{`` (Binance's body does
not name it), so a batch decode of the journal attributes it exactly as the live decode did.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.journal import Journal
from tapeflow.live.connector import Connector, ConnectorSettings
from tapeflow.live.frames import RawFrame
from tapeflow.live.handoff import DecodeHandoff
from tapeflow.live.sync import CONNECTED, SYNCED, SYNCING
from tapeflow.venues.binance import messages as wire
from tapeflow.venues.binance.parse import BinanceDecoder
from tapeflow.venues.l2sync import SeqChain
from tapeflow.wire.capture import RECV, CaptureLine, Decoded

# market -> (venue code, websocket base, REST base, REST depth path, trade stream)
MARKETS = {
    "spot": (wire.SPOT, "wss://stream.binance.com:9443", "https://api.binance.com", "/api/v3/depth",
             "trade"),
    "usdm": (wire.USDM, "wss://fstream.binance.com", "https://fapi.binance.com", "/fapi/v1/depth",
             "aggTrade"),
    # COIN-M (dstream): the USD-M depth protocol (``pu`` links, the same snapshot bridge) on its own
    # hosts, symbols ``BTCUSD_PERP`` / ``BTCUSD_240927``
    "coinm": (wire.COINM, "wss://dstream.binance.com", "https://dapi.binance.com", "/dapi/v1/depth",
              "aggTrade"),
}
# the derivatives streams' markets: USD-M, and COIN-M (venue binance-coinm, file format binance-delivery)
DERIVATIVES_MARKETS = {
    "usdm": MARKETS["usdm"],
    "coinm": MARKETS["coinm"],
}


class BinanceClient(Connector):
    """Binance live client for one market (spot, USD-M or COIN-M) and a few symbols.

    Args:
        symbols: Binance symbols (any case), e.g. ``["BTCUSDT"]``.
        market: ``usdm`` (venue ``binance-usdm``), ``coinm`` (venue ``binance-coinm``) or ``spot``
            (venue ``binance``).
        endpoint: websocket base URL (``srv.ws_url`` of a replay server); default Binance's.
        rest_endpoint: REST base URL (``srv.rest_url``); default Binance's.
        journal: journal (or its folder) every frame is written to before it is decoded.
        settings: session-loop settings.
        depth_speed: depth stream update speed suffix (``100ms``; futures also ``0ms``/``250ms``/``500ms``).
        trade_stream: ``trade`` or ``aggTrade`` (default: the market's usual one).
        book_ticker: also subscribe ``@bookTicker``.
        snapshot_limit: REST snapshot depth (levels per side).

    Raises:
        ConfigError: an unknown market, no symbols, or an unknown trade stream.
    """

    decoder: BinanceDecoder
    markets = MARKETS

    def __init__(self, symbols: Sequence[str], *, market: str = "usdm", endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None, depth_speed: str = "100ms",
                 trade_stream: str | None = None, book_ticker: bool = True,
                 snapshot_limit: int = 1000) -> None:
        if market not in self.markets:
            raise ConfigError(f"Binance market {market!r} is not one of {sorted(self.markets)}")
        if not symbols:
            raise ConfigError("BinanceClient needs at least one symbol")
        venue, ws_base, rest_base, self.depth_path, default_trades = self.markets[market]
        self.market = market
        self.trade_stream = trade_stream or default_trades
        if self.trade_stream not in ("trade", "aggTrade"):
            raise ConfigError(f"Binance trade stream {self.trade_stream!r} is not 'trade' or 'aggTrade'")
        self.depth_speed = depth_speed
        self.book_ticker = book_ticker
        self.snapshot_limit = snapshot_limit
        super().__init__([s.upper() for s in symbols], venue=venue, endpoint=endpoint or ws_base,
                         rest_endpoint=rest_endpoint or rest_base, journal=journal, settings=settings)
        # chain.prev_last when the current connection opened, for books synced before it
        self._mark: dict[str, int | None] = {}
        self._reanchor: set[str] = set()  # synced books waiting for a new day's snapshot
        self._gaps_seen = 0
        self.snapshots_requested = 0

    def streams(self) -> list[str]:
        """The combined-stream names subscribed."""
        out = []
        for s in self.symbols:
            low = s.lower()
            out += [f"{low}@depth@{self.depth_speed}", f"{low}@{self.trade_stream}"]
            if self.book_ticker:
                out.append(f"{low}@bookTicker")
        return out

    def ws_url(self) -> str:
        return f"{str(self.endpoint).rstrip('/')}/stream?streams={'/'.join(self.streams())}"

    def snapshot_url(self, symbol: str) -> str:
        """The REST depth snapshot URL of ``symbol``."""
        base = str(self.rest_endpoint).rstrip("/")
        return f"{base}{self.depth_path}?symbol={symbol}&limit={self.snapshot_limit}"

    def make_decoder(self) -> BinanceDecoder:
        decoder = BinanceDecoder(symbols=self.symbols)
        decoder.venues = [self.venue]  # the market is known here; files sniff it from their name
        load_kernels()
        return decoder

    async def on_open(self) -> None:
        for s in self.symbols:
            chain = self._chain(s)
            self._mark[s] = chain.prev_last if chain is not None and chain.synced else None

    def on_new_day(self, day: str) -> None:
        # A fresh snapshot at the head of each day's journal file: a batch decode of that file
        # alone (backfill, repair) syncs without the previous day's.
        for s in self.symbols:
            chain = self._chain(s)
            if chain is not None and chain.synced:
                self._reanchor.add(s)
                self._request_snapshot(s)

    def quiet(self) -> bool:
        # after_frame reacts only to chain transitions while the sync states agree with the chains:
        # a synced chain reported synced; an unsynced one not reported synced and owing no gap row
        # (a book synced before a reconnect reports its first diff after it); no re-anchor waiting
        if self._reanchor:
            return False
        for s in self.symbols:
            chain = self._chain(s)
            state = self.sync.state[s]
            if chain is None:
                continue
            if chain.synced != (state == SYNCED):
                return False
            if not chain.synced and state in (CONNECTED, SYNCING) and self._mark.get(s) is not None:
                return False
        return True

    def after_frame(self, frame: RawFrame) -> None:
        gaps = self.decoder.stats.gaps
        new_gap = len(gaps) > self._gaps_seen
        self._gaps_seen = len(gaps)
        for s in self.symbols:
            chain = self._chain(s)
            if chain is None:
                continue  # no diff of this symbol yet
            state = self.sync.state[s]
            if s in self._reanchor and not new_gap:
                # A snapshot taken while synced re-anchors the book (the diffs it contains are
                # superseded): the book stays valid, no gap.
                if chain.synced and not self.rest_inflight(s):
                    self._reanchor.discard(s)
                continue
            self._reanchor.discard(s)
            if chain.synced:
                mark = self._mark.get(s)
                if state != SYNCED and (mark is None or chain.prev_last != mark):
                    self._mark[s] = None
                    detail = f"snapshot {chain.snapshot_id} bridged, book at u={chain.prev_last}"
                    self.sync.sync_done(s, detail, sequence=chain.prev_last)
                continue
            if state == SYNCED or (state in (CONNECTED, SYNCING) and self._mark.get(s) is not None):
                # A synced book broke (a gap right after a reconnect counts: messages were missed).
                self._mark[s] = None
                self.sync.gap(s, gaps[-1] if gaps else "depth chain broken", sequence=chain.prev_last)
            if chain.pending:  # diffs buffered and no snapshot yet (after a snapshot they are not kept)
                self._request_snapshot(s)

    def _request_snapshot(self, symbol: str) -> None:
        prefix = b'"symbol":"' + symbol.encode() + b'",'
        if self.request_rest(symbol, self.snapshot_url(symbol), prefix=prefix):
            self.snapshots_requested += 1

    def _chain(self, symbol: str) -> SeqChain | None:
        return self.decoder.chains.get((self.venue, symbol))


_loaded = False
_NS = 1_700_000_000_000_000_000
_SNAPSHOT = (b'{"symbol":"BTCUSDT","lastUpdateId":100,"E":1,"T":1,'
             b'"bids":[["10.0","1.0"]],"asks":[["11.0","1.0"]]}')
_TRADE = (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":3,"T":3,"s":"BTCUSDT","t":1,'
          b'"p":"10.5","q":"0.1","X":"MARKET","m":false}}')
_TICKER = (b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":103,"s":"BTCUSDT",'
           b'"b":"10.0","B":"2.0","a":"11.0","A":"1.0","T":3,"E":3}}')


def _diff(first: int, last: int, prev: int) -> bytes:
    return (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":2,"T":2,"s":"BTCUSDT",'
            b'"U":%d,"u":%d,"pu":%d,"b":[["10.0","2.0"]],"a":[["11.0","0.0"]]}}' % (first, last, prev))


def load_kernels() -> None:
    """Decode a made-up session (a snapshot, the diff that bridges it, a linked diff, a trade and a
    bookTicker) on a throwaway decoder, once per process, the way a live client decodes.

    The block path's numba kernels load from numba's cache on their first call (about a second,
    several on a busy machine): paid here, when the client is built, instead of while the first
    micro-batch of a connected feed waits and frames pile up behind it.
    """
    global _loaded
    if not _loaded:
        made_up_session()
        _loaded = True


def made_up_session() -> tuple[int, Decoded]:
    """The session :func:`load_kernels` decodes: how many frames the quiet block path took of the
    three after the bridge (all three), and the decoded rows."""
    dec = BinanceDecoder(symbols=["BTCUSDT"])
    dec.venues = [wire.USDM]
    frames = [_diff(99, 101, 98), _diff(102, 103, 101), _TRADE, _TICKER]
    dec.feed(CaptureLine(_NS, RECV, "", _SNAPSHOT, "load_kernels:1"))
    dec.feed(CaptureLine(_NS, RECV, "", frames[0], "load_kernels:2"))  # the bridge: per frame, as live
    quiet = dec.feed_quiet([_NS] * 3, frames[1:])
    return quiet, dec.flush(0, wire.USDM)


class BinanceDerivativesClient(BinanceClient):
    """Binance futures derivatives streams on the Binance connector, USD-M (``fstream``) or COIN-M
    (``dstream``): ``<sym>@markPrice@1s`` (mark, index, funding) and ``<sym>@forceOrder``, or the
    all-market ``!forceOrder@arr``, and on COIN-M each pair's ``<pair>@indexPrice@1s``
    (``BTCUSD_PERP`` and ``BTCUSD_240927`` share ``btcusd``), decoded by the derivatives decoder
    (:class:`tapeflow.derivatives.binance.BinanceDerivatives`, the ``binance-futures`` or
    ``binance-delivery`` file format's) into the ``mark_price``, ``index_price``, ``funding_rate``
    and ``liquidation`` records of venue ``binance-usdm`` or ``binance-coinm``.

    No book, so no sync: every frame is decoded in the micro-batch it came in (``feed_many``).

    Args:
        symbols: USD-M symbols (``BTCUSDT``) or COIN-M ones (``BTCUSD_PERP``, ``BTCUSD_240927``), any case.
        market: ``usdm`` (default) or ``coinm``.
        all_liquidations: subscribe ``!forceOrder@arr`` (every symbol's liquidations) instead of
            each symbol's ``@forceOrder``.
        mark_speed: ``1s`` (default) or ``3s``, the ``markPrice`` update speed.
        index_price: subscribe ``<pair>@indexPrice@1s`` (COIN-M only; default: on COIN-M).
        **kwargs: as :class:`BinanceClient` (``endpoint``, ``journal``, ``settings``...).

    Raises:
        ConfigError: no symbols, another market than ``usdm`` or ``coinm``, an unknown mark speed,
            or ``index_price`` on USD-M (which has no such stream).
    """

    decoder: Any
    markets = DERIVATIVES_MARKETS

    def __init__(self, symbols: Sequence[str], *, market: str = "usdm", all_liquidations: bool = False,
                 mark_speed: str = "1s", index_price: bool | None = None, **kwargs: Any) -> None:
        if market not in DERIVATIVES_MARKETS:
            raise ConfigError(f"Binance derivatives streams are those of the USD-M and COIN-M markets "
                              f"(market=usdm or market=coinm), not {market!r}")
        if mark_speed not in ("1s", "3s"):
            raise ConfigError(f"Binance markPrice speed {mark_speed!r} is not '1s' or '3s'")
        if index_price and market != "coinm":
            raise ConfigError("Binance indexPrice streams are COIN-M's (market=coinm); USD-M sends the "
                              "index in markPrice")
        self.all_liquidations = all_liquidations
        self.mark_speed = mark_speed
        self.index_price = market == "coinm" if index_price is None else index_price
        super().__init__(symbols, market=market, **kwargs)

    def streams(self) -> list[str]:
        """The combined-stream names subscribed."""
        out = [f"{s.lower()}@markPrice" + ("@1s" if self.mark_speed == "1s" else "") for s in self.symbols]
        if self.index_price:  # one per pair: a COIN-M symbol is <pair>_PERP or <pair>_<delivery date>
            pairs = dict.fromkeys(s.lower().split("_")[0] for s in self.symbols)
            out += [f"{p}@indexPrice@1s" for p in pairs]
        if self.all_liquidations:
            return out + ["!forceOrder@arr"]
        return out + [f"{s.lower()}@forceOrder" for s in self.symbols]

    def make_decoder(self) -> Any:
        from tapeflow.derivatives.binance import BinanceDerivatives

        return BinanceDerivatives(market=self.venue)

    async def on_open(self) -> None:
        """No book to sync: nothing waits for a snapshot."""

    # no book: nothing to read after a frame (so micro-batches go to feed_many whole), no re-anchor
    after_frame = DecodeHandoff.after_frame
    on_new_day = DecodeHandoff.on_new_day
    quiet = DecodeHandoff.quiet
