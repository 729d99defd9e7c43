"""Live Bybit client: v5 ``orderbook.<depth>.<sym>`` + ``publicTrade.<sym>``, or the legacy v2
``orderBookL2_25.<sym>`` + ``trade.<sym>`` topics of ``realtime_public``.

Frames are decoded by the batch :class:`~tapeflow.venues.bybit.parse.BybitDecoder`. Sync: a
``snapshot`` message anchors (or re-anchors) a symbol's book. v5 deltas must carry ``u`` =
previous ``u`` + 1 (the decoder flags a break ``F_GAP``); v2 has no contiguous id, so a delta
that updates or deletes an id the book does not hold, or inserts one it holds, is the break
(the client flags that row ``F_GAP`` live). Either way the client writes STATUS ``gap`` and
resubscribes the symbol's book topic (rate limited), which makes Bybit send a fresh snapshot;
rows until then carry ``F_MAYBE_BAD_BOOK`` and the book kernels hold the book in RESYNC.
``{"op":"ping"}`` goes out every 20 s, as Bybit asks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.journal import Journal
from tapeflow.live.connector import Connector, ConnectorSettings
from tapeflow.live.frames import RawFrame
from tapeflow.live.handoff import DecodeHandoff
from tapeflow.venues.bybit import messages as wire
from tapeflow.venues.bybit.parse import BybitDecoder

V5_HOST = "wss://stream.bybit.com/v5/public/{category}"
V2_HOST = "wss://stream.bybit.com/realtime_public"
V5_DEPTHS = (1, 50, 200, 500, 1000)
CATEGORIES = ("linear", "spot", "inverse", "option")


class BybitClient(Connector):
    """Bybit live client for a few symbols of one category.

    Args:
        symbols: Bybit symbols, e.g. ``["BTCUSDT"]`` (upper case as Bybit spells them).
        category: v5 ``linear``, ``spot``, ``inverse`` or ``option`` (the websocket path).
        protocol: ``v5`` (default) or ``v2`` (legacy ``realtime_public`` topics).
        depth: v5 orderbook depth (1, 50, 200, 500 or 1000).
        trades: also subscribe the trade topic.
        endpoint: websocket URL base (``srv.ws_url`` of a replay server); default Bybit's.
        rest_endpoint: unused (Bybit books resync by resubscribing); accepted for a uniform signature.
        journal: journal (or its folder) every frame is written to before it is decoded.
        settings: session-loop settings.

    Raises:
        ConfigError: no symbols, or an unknown protocol, category or depth.
    """

    default_ping_interval_s = 20.0
    decoder: BybitDecoder

    def __init__(self, symbols: Sequence[str], *, category: str = "linear", protocol: str = "v5",
                 depth: int = 50, trades: bool = True, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None) -> None:
        if not symbols:
            raise ConfigError("BybitClient needs at least one symbol")
        if protocol not in ("v5", "v2"):
            raise ConfigError(f"Bybit protocol {protocol!r} is not 'v5' or 'v2'")
        if category not in CATEGORIES:
            raise ConfigError(f"Bybit category {category!r} is not one of {CATEGORIES}")
        if protocol == "v5" and depth not in V5_DEPTHS:
            raise ConfigError(f"Bybit orderbook depth {depth} is not one of {V5_DEPTHS}")
        self.protocol, self.category, self.depth, self.trades = protocol, category, depth, trades
        default = V5_HOST.format(category=category) if protocol == "v5" else V2_HOST
        super().__init__([s.upper() for s in symbols], venue=wire.VENUE, endpoint=endpoint or default,
                         rest_endpoint=rest_endpoint, journal=journal, settings=settings)
        self._anchored = {s: False for s in self.symbols}
        # per symbol: snapshots decoded when the client began waiting for a new one (None: not waiting)
        self._wait_snapshot: dict[str, int | None] = {s: None for s in self.symbols}
        self._snapshots_seen = {s: 0 for s in self.symbols}
        self._failures_seen = 0
        self._resubscribing: set[str] = set()
        self.resubscribes = 0

    def book_topic(self, symbol: str) -> str:
        """The order book topic of ``symbol``."""
        return f"orderbook.{self.depth}.{symbol}" if self.protocol == "v5" else f"orderBookL2_25.{symbol}"

    def trade_topic(self, symbol: str) -> str:
        """The trade topic of ``symbol``."""
        return f"publicTrade.{symbol}" if self.protocol == "v5" else f"trade.{symbol}"

    def ws_url(self) -> str:
        base = str(self.endpoint).rstrip("/")
        if base.startswith("wss://stream") or "/v5/" in base or base.endswith("realtime_public"):
            return base
        # a replay server's bare ws://host:port: add the path Bybit serves the protocol on
        return f"{base}/v5/public/{self.category}" if self.protocol == "v5" else f"{base}/realtime_public"

    def subscribe_messages(self) -> list[str]:
        # All topics in one request, so every stream starts at once; Bybit spot takes at most 10
        # topics per request.
        topics = [self.book_topic(s) for s in self.symbols]
        if self.trades:
            topics += [self.trade_topic(s) for s in self.symbols]
        step = 10 if self.category == "spot" and self.protocol == "v5" else len(topics)
        return [_op("subscribe", *topics[i:i + step]) for i in range(0, len(topics), step)]

    def ping_message(self) -> str | None:
        return '{"op":"ping"}'

    def make_decoder(self) -> BybitDecoder:
        return BybitDecoder(symbols=self.symbols)

    async def on_open(self) -> None:
        # A new connection's subscription brings a fresh snapshot: the book waits for it, whatever
        # the decoder still holds from the previous connection.
        self._resubscribing.clear()
        for s in self.symbols:
            if self._anchored[s]:
                self.sync.resyncing(s, "reconnected: waiting for the snapshot of the new subscription")
            self._anchored[s] = False
            self._wait_snapshot[s] = self.decoder.snapshots_of.get(s, 0)

    def after_frame(self, frame: RawFrame) -> None:
        failures = self.decoder.legacy_failures
        broke_v2: dict[str, str] = {}
        for text in failures[self._failures_seen:]:
            broke_v2.setdefault(text.split(" ", 2)[1], text)
        self._failures_seen = len(failures)
        for s in self.symbols:
            snapshots = self.decoder.snapshots_of.get(s, 0)
            if snapshots != self._snapshots_seen[s]:
                self._snapshots_seen[s] = snapshots
                self._resubscribing.discard(s)  # the resubscription (if any) was answered
            waited = self._wait_snapshot.get(s)
            fresh = waited is None or self.decoder.snapshots_of.get(s, 0) > waited
            anchored = self.decoder.anchored(s) and fresh
            if anchored and not self._anchored[s]:
                self._wait_snapshot[s] = None
                self._resubscribing.discard(s)
                self.sync.sync_done(s, f"snapshot of {self.book_topic(s)} anchored the book",
                                    sequence=self._sequence(s))
            elif not anchored and self._anchored[s]:
                gaps = self.decoder.stats.gaps
                why = broke_v2.get(s) or (gaps[-1] if gaps else "orderbook update out of sequence")
                if s in broke_v2:
                    self.flag_gap(s)  # the v2 decoder cannot flag it: ids are no sequence
                self.sync.gap(s, why, sequence=self._sequence(s))
                self._resubscribe(s)
            self._anchored[s] = anchored

    def on_new_day(self, day: str) -> None:
        # A fresh snapshot at the head of each day's journal file, so it rebuilds on its own;
        # the book stays anchored (the snapshot replaces it whole).
        for s in self.symbols:
            if self._anchored[s]:
                self._resubscribe(s)

    def _sequence(self, symbol: str) -> int:
        last = self.decoder.last_update_id(symbol)
        return -1 if last is None else last

    def _resubscribe(self, symbol: str) -> None:
        if symbol in self._resubscribing or self._closing:
            return
        self._resubscribing.add(symbol)
        self.resubscribes += 1
        task = asyncio.get_running_loop().create_task(self._resubscribe_task(symbol))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resubscribe_task(self, symbol: str) -> None:
        await self.limiter.acquire()  # resubscriptions are paced like REST snapshot requests
        topic = self.book_topic(symbol)
        await self.send(_op("unsubscribe", topic))
        await self.send(_op("subscribe", topic))


def _op(op: str, *topics: str) -> str:
    return json.dumps({"op": op, "args": list(topics)}, separators=(",", ":"))


class BybitDerivativesClient(BybitClient):
    """Bybit v5 derivatives topics on the Bybit connector: ``tickers.<sym>`` (funding, mark, index,
    open interest) and ``liquidation.<sym>`` or ``allLiquidation.<sym>``, decoded by the
    derivatives decoder (:class:`tapeflow.derivatives.bybit.BybitDerivatives`).

    No book, so no sync and no resubscription: every frame is decoded in the micro-batch it came in.

    Args:
        symbols: Bybit symbols (``BTCUSDT``).
        category: ``linear`` (default) or ``inverse`` (the derivatives categories).
        liquidations: ``all`` (``allLiquidation.<sym>``, every liquidation; default), ``sampled``
            (the older ``liquidation.<sym>``), ``both`` or ``none``.
        **kwargs: as :class:`BybitClient` (``endpoint``, ``journal``, ``settings``).

    Raises:
        ConfigError: no symbols, a category without derivatives, or an unknown ``liquidations``.
    """

    decoder: Any

    def __init__(self, symbols: Sequence[str], *, category: str = "linear", liquidations: str = "all",
                 **kwargs: Any) -> None:
        if category not in ("linear", "inverse"):
            raise ConfigError(f"Bybit derivatives topics are those of linear or inverse, not {category!r}")
        if liquidations not in _LIQUIDATION_TOPICS:
            known = sorted(_LIQUIDATION_TOPICS)
            raise ConfigError(f"Bybit liquidations {liquidations!r} is not one of {known}")
        self.liquidations = liquidations
        kwargs.pop("protocol", None)
        super().__init__(symbols, category=category, protocol="v5", trades=False, **kwargs)

    def topics(self) -> list[str]:
        """The topics subscribed."""
        out = [f"tickers.{s}" for s in self.symbols]
        families = _LIQUIDATION_TOPICS[self.liquidations]
        return out + [f"{family}.{s}" for family in families for s in self.symbols]

    def subscribe_messages(self) -> list[str]:
        # one request per topic: Bybit refuses a whole request for one topic it does not know
        # (a symbol without liquidations on one family), and the others must still stream
        return [_op("subscribe", topic) for topic in self.topics()]

    def make_decoder(self) -> Any:
        from tapeflow.derivatives.bybit import BybitDerivatives

        return BybitDerivatives()

    async def on_open(self) -> None:
        """No book to wait for."""

    after_frame = DecodeHandoff.after_frame
    on_new_day = DecodeHandoff.on_new_day


_LIQUIDATION_TOPICS = {"all": ("allLiquidation",), "sampled": ("liquidation",),
                       "both": ("liquidation", "allLiquidation"), "none": ()}
