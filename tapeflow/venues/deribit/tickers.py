"""Deribit option tickers live: ``ticker.<option>.<interval>`` over the websocket v2, for the options flow.

The client takes option names (``BTC-30APR21-60000-C``) or underlyings (``BTC``, ``XRP_USDC``). An
underlying is expanded on every connection through ``public/get_instruments`` (``kind=option``,
``expired=false``, the answer read by :func:`tapeflow.options.definitions.from_deribit_instruments`,
whose dead letters join the batch's), so a reconnect picks up the expiries listed meanwhile. Once
every expansion has answered, the channels go out in ``public/subscribe`` requests of at most
``channels_per_request`` channels, paced by Deribit's subscribe limit (docs/options.md, "Live over
the websocket"). Frames are decoded by the options' own ticker decoder
(:class:`tapeflow.options.deribit.DeribitTickerDecoder`, unpriced: the flow prices each micro-batch),
so every garbled or unknown notification is a ``rejected`` row with its reason.

STATUS rows: ``connected`` / ``syncing`` per requested symbol on connect, ``synced`` once all of its
channels are acknowledged (a ticker is a full state: there is no book to rebuild), ``disconnected``
and ``stale`` from the session loop, ``degraded`` for an underlying Deribit lists no option of.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tapeflow.errors import BadInput, ConfigError
from tapeflow.journal import Journal
from tapeflow.live.connector import Connector, ConnectorSettings
from tapeflow.live.frames import RawFrame
from tapeflow.live.pacing import TokenBucket
from tapeflow.options.definitions import from_deribit_instruments
from tapeflow.options.deribit import DeribitTickerDecoder
from tapeflow.options.instruments import parse_option_name
from tapeflow.venues.deribit.client import WS_URL
from tapeflow.venues.resubscribe import symbols_list

# Deribit's ticker intervals: ``raw`` needs an authorized connection, ``100ms`` is the public one
INTERVALS = ("100ms", "agg2", "raw")
# Deribit documents no channel count per request, only a rate; this keeps each request small
CHANNELS_PER_REQUEST = 100
# a subscribe costs 3,000 credits of a 30,000 pool refilled at ~3.3 requests/s (docs.deribit.com)
SUBSCRIBE_RATE_PER_S = 3.3
SUBSCRIBE_BURST = 10


class DeribitTickerClient(Connector):
    """Live Deribit option tickers (see the module docstring).

    Args:
        symbols: option names and/or underlyings, a sequence or a comma-separated string.
        endpoint: websocket URL (default ``wss://www.deribit.com/ws/api/v2``; a replay server's ``ws_url``).
        rest_endpoint: unused (everything goes over the websocket); accepted for a uniform signature.
        journal: a journal, a folder for one, or None.
        settings: session-loop settings.
        interval: the ticker channels' interval (``100ms``, ``agg2``; ``raw`` needs authorization).
        channels_per_request: most channels in one ``public/subscribe``.
        subscribe_rate_per_s, subscribe_burst: pacing of the subscribe requests.

    Raises:
        ConfigError: no symbols, a name that is no option, an unknown interval or a bad limit.
    """

    default_ping_interval_s = 20.0

    def __init__(self, symbols: Sequence[str] | str, *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None, interval: str = "100ms",
                 channels_per_request: int = CHANNELS_PER_REQUEST,
                 subscribe_rate_per_s: float = SUBSCRIBE_RATE_PER_S,
                 subscribe_burst: int = SUBSCRIBE_BURST) -> None:
        names = symbols_list(symbols)
        if not names:
            raise ConfigError("DeribitTickerClient needs option names or underlyings")
        if interval not in INTERVALS:
            raise ConfigError(f"ticker interval {interval!r} is not one of {', '.join(INTERVALS)}")
        if channels_per_request < 1:
            raise ConfigError(f"channels_per_request must be > 0, got {channels_per_request}")
        self.underlyings = [s for s in names if "-" not in s]
        self.options = [s for s in names if "-" in s]
        for name in self.options:
            try:
                parse_option_name(name)
            except BadInput as exc:
                raise ConfigError(f"{name!r} is no Deribit option name: {exc.detail}") from exc
        self.interval = interval
        self.channels_per_request = channels_per_request
        self.subscribe_limiter = TokenBucket(subscribe_rate_per_s, subscribe_burst)
        self._ids = itertools.count(1)
        self._generation = 0  # one per connection: a request task of an old one sends nothing
        self._instrument_requests: dict[int, str] = {}  # request id -> underlying, unanswered
        self._subscribe_requests: set[int] = set()
        self.expanded: dict[str, list[str]] = {}  # underlying -> its options on this connection
        self.subscribed: set[str] = set()  # channels Deribit acknowledged on this connection
        self.subscribe_requests_sent = 0
        super().__init__(names, venue="deribit", endpoint=endpoint, rest_endpoint=rest_endpoint,
                         journal=journal, settings=settings)

    def ws_url(self) -> str:
        """The public websocket URL."""
        return self.endpoint or WS_URL

    def make_decoder(self) -> DeribitTickerDecoder:
        """The options' ticker decoder, unpriced (``option_ticker_raw`` + ``rejected``)."""
        return DeribitTickerDecoder(priced=False)

    def channel(self, name: str) -> str:
        """``ticker.<name>.<interval>``."""
        return f"ticker.{name}.{self.interval}"

    def request(self, method: str, params: dict[str, Any]) -> tuple[int, str]:
        """A JSON-RPC request and its id."""
        rid = next(self._ids)
        return rid, orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).decode()

    def subscribe_batches(self, names: Sequence[str]) -> list[tuple[int, str]]:
        """``public/subscribe`` requests of at most ``channels_per_request`` ticker channels each."""
        channels = [self.channel(n) for n in dict.fromkeys(names)]
        step = self.channels_per_request
        return [self.request("public/subscribe", {"channels": channels[i:i + step]})
                for i in range(0, len(channels), step)]

    def ping_message(self) -> str:
        """``public/test``: answered with a result (a quiet frame)."""
        return self.request("public/test", {})[1]

    async def on_open(self) -> None:
        """Ask for each underlying's options, or subscribe at once when only names were given."""
        self._generation += 1
        self._instrument_requests.clear()
        self._subscribe_requests.clear()
        self.expanded.clear()
        self.subscribed.clear()
        for underlying in self.underlyings:
            currency = underlying.rsplit("_", 1)[-1]  # XRP_USDC's options are listed under USDC
            rid, message = self.request("public/get_instruments",
                                        {"currency": currency, "kind": "option", "expired": False})
            self._instrument_requests[rid] = underlying
            await self.send(message)
        if not self.underlyings:
            self._start_subscribing()

    def after_frame(self, frame: RawFrame) -> None:
        """Read the answers to this client's own requests (instrument lists, subscription acks)."""
        if not (self._instrument_requests or self._subscribe_requests) or b'"id"' not in frame.data:
            return
        try:
            msg = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            return  # the decoder dead-lettered it
        rid = msg.get("id") if isinstance(msg, dict) else None
        if rid in self._instrument_requests:
            self._instruments(self._instrument_requests.pop(rid), frame)
            if not self._instrument_requests:
                self._start_subscribing()
        elif rid in self._subscribe_requests:
            self._subscribe_requests.discard(rid)
            result = msg.get("result")
            if isinstance(result, list):
                self.subscribed.update(c for c in result if isinstance(c, str))
            self._mark_synced()

    def _instruments(self, underlying: str, frame: RawFrame) -> None:
        definitions, rejected = from_deribit_instruments(frame.data, self.venue)
        symbols, underlyings = (definitions.column(c).to_pylist() for c in ("symbol", "underlying"))
        names = [s for s, u in zip(symbols, underlyings, strict=True) if u == underlying]
        self.expanded[underlying] = names
        for row in rejected.to_pylist():  # an error answer was dead-lettered by the decoder already
            if row["reason"] != "venue_error":
                self.decoder.rejects.add(row["reason"], row["detail"], row["location"], row["raw"],
                                         ts_recv_ns=frame.ts_recv_ns, symbol=row["symbol"])
        if not names:
            self.log.add(underlying, "degraded", detail=f"public/get_instruments lists no live {underlying} "
                                                        "option: nothing to subscribe")

    def _start_subscribing(self) -> None:
        names = self.options + [n for u in self.underlyings for n in self.expanded.get(u, [])]
        task = asyncio.get_running_loop().create_task(self._subscribe(names, self._generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _subscribe(self, names: list[str], generation: int) -> None:
        for rid, message in self.subscribe_batches(names):
            await self.subscribe_limiter.acquire()
            if generation != self._generation:
                return  # the connection it was for is gone; the new one subscribes afresh
            self._subscribe_requests.add(rid)
            self.subscribe_requests_sent += 1
            await self.send(message)

    def _mark_synced(self) -> None:
        for symbol in self.symbols:
            if self.sync.synced(symbol):
                continue
            names = self.expanded.get(symbol, []) if symbol in self.underlyings else [symbol]
            if names and all(self.channel(n) in self.subscribed for n in names):
                self.sync.sync_done(symbol, f"{len(names)} ticker channel(s) subscribed")
