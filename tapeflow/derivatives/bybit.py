"""Bybit v5: ``tickers`` (funding, mark, index, open interest), ``liquidation`` and ``allLiquidation``
streams, and the tickers, open interest, funding history and insurance REST endpoints (docs/derivatives.md).

``tickers`` of linear and inverse contracts is a snapshot followed by deltas that carry only the
fields that changed: the decoder keeps each symbol's last values, so a delta that moves only the
funding rate still writes a row with its funding time. A delta before its symbol's snapshot (a
capture that starts mid-stream) writes what it carries, its funding time -1 if it carries none, as
Tardis maps it. The retired v2 ``instrument_info`` stream (2019-2022 captures) is read by
:mod:`tapeflow.derivatives.bybit_v2`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from tapeflow.derivatives.base import (
    DerivativesDecoder,
    balance,
    computed_price,
    opposite,
    optional_time_ms,
    order_side,
    present,
    quantity,
    rate,
    time_ms,
)
from tapeflow.derivatives.bybit_v2 import instrument_info
from tapeflow.errors import BadInput
from tapeflow.schemas.records import UNDEF_PRICE, UNDEF_TS
from tapeflow.venues.fields import array, field, load_json, obj, text
from tapeflow.wire.capture import CaptureLine
from tapeflow.wire.rejects import Reason

VENUE = "bybit"
_TICKER_FIELDS = (
    "markPrice",
    "indexPrice",
    "openInterest",
    "openInterestValue",
    "fundingRate",
    "nextFundingTime",
)
_OTHER_TOPICS = frozenset({"orderbook", "publicTrade", "kline", "tickers_lt", "lt"})
_LEGACY_TOPICS = frozenset({"orderBookL2_25", "orderBook_200", "trade", "klineV2"})


class BybitDerivatives(DerivativesDecoder):
    """Bybit v5 derivatives streams and REST bodies (symbols keep their ticker state)."""

    venue = VENUE

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tickers: dict[str, dict[str, Any]] = {}  # symbol -> last value of each _TICKER_FIELDS
        self.legacy: dict[str, dict[str, Any]] = {}  # symbol -> last v2 instrument_info values

    def message(self, msg: Any, line: CaptureLine) -> None:
        """One websocket frame (``topic`` names its stream)."""
        msg = obj(msg, "frame")
        topic = msg.get("topic")
        if topic is None:
            if "op" in msg or "success" in msg:
                if msg.get("success") is False:
                    raise BadInput(Reason.VENUE_ERROR, f"{msg.get('ret_msg', msg)}")
                self.quiet("subscription answer")
                return
            raise BadInput(Reason.MISSING_FIELD, "no 'topic' field")
        kind = text(msg, "topic").split(".", 1)[0]
        if kind == "tickers":
            self.ticker(
                msg,
                obj(field(msg, "data"), "data"),
                line,
                ts=time_ms(msg, "ts"),
                snapshot=msg.get("type") == "snapshot",
            )
        elif kind == "liquidation":
            data = field(msg, "data")
            for row in self.items(data, "liquidations") if type(data) is list else [obj(data, "data")]:
                self.liquidation(obj(row, "liquidation"), line)
        elif kind == "allLiquidation":
            for row in self.items(field(msg, "data"), "liquidations"):
                row = obj(row, "liquidation")
                symbol = self.frame_symbol = self.check_symbol(row.get("s"))
                self.add_liquidation(
                    line,
                    symbol,
                    time_ms(row, "T"),
                    opposite(order_side(row.get("S"), "S")),
                    quantity(row, "p"),
                    quantity(row, "v"),
                )
        elif kind == "instrument_info":
            instrument_info(self, msg, line)
        elif kind in _OTHER_TOPICS or kind in _LEGACY_TOPICS:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"topic {kind!r} is not a v5 derivatives stream")
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"topic {kind!r}")

    def ticker(
        self, msg: dict[str, Any], data: dict[str, Any], line: CaptureLine, *, ts: int, snapshot: bool
    ) -> None:
        """A ticker snapshot (replaces the symbol's state) or delta (updates it); one row per
        derivatives value the message carries."""
        symbol = self.frame_symbol = self.check_symbol(data.get("symbol"))
        state = self.tickers.get(symbol)
        given = {k: data[k] for k in _TICKER_FIELDS if k in data}
        new = dict(given) if snapshot or state is None else {**state, **given}
        if not any(present(given, k) for k in _TICKER_FIELDS):
            self.tickers[symbol] = new
            self.quiet("ticker without derivatives fields")
            return
        # every value is read before a row is written: a bad field rejects the whole frame
        mark = computed_price(new, "markPrice") if present(given, "markPrice") else None
        index = computed_price(new, "indexPrice") if present(given, "indexPrice") else None
        oi = None
        if present(given, "openInterest") or present(given, "openInterestValue"):
            value = quantity(new, "openInterestValue") if present(new, "openInterestValue") else UNDEF_PRICE
            oi = (quantity(new, "openInterest"), value)
        funding = None
        if present(given, "fundingRate") or present(given, "nextFundingTime"):
            funding = (rate(new, "fundingRate"), optional_time_ms(new, "nextFundingTime"))
        self.tickers[symbol] = new
        if mark is not None:
            self.add_mark(line, symbol, ts, mark)
        if index is not None:
            self.add_index(line, symbol, ts, index)
        if oi is not None:
            self.add_open_interest(line, symbol, ts, *oi)
        if funding is not None and (funding[0] == funding[0] or funding[1] != UNDEF_TS):
            self.add_funding(line, symbol, ts, *funding)
        elif mark is None and index is None and oi is None:
            self.quiet("ticker of a contract without funding")

    def liquidation(self, row: dict[str, Any], line: CaptureLine) -> None:
        """A ``liquidation`` row: v5 (``size``, ``updatedTime``) or the legacy REST-era shape
        (``qty``, ``time``, ``id``). ``side`` is the liquidated position's: the order is the other."""
        symbol = self.frame_symbol = self.check_symbol(row.get("symbol"))
        size = quantity(row, "size" if "size" in row else "qty")
        ts = time_ms(row, "updatedTime" if "updatedTime" in row else "time")
        liq_id = str(row["id"]) if present(row, "id") else ""
        self.add_liquidation(
            line,
            symbol,
            ts,
            opposite(order_side(row.get("side"), "side")),
            quantity(row, "price"),
            size,
            liq_id,
        )

    def http(self, line: CaptureLine) -> None:
        """A v5 REST body (``retCode`` 0), by the endpoint of its URL."""
        path = urlparse(line.url).path.rstrip("/")
        body = obj(load_json(line.payload), "body")
        if body.get("retCode", 0) != 0:
            raise BadInput(Reason.VENUE_ERROR, f"{path}: retCode {body['retCode']}: {body.get('retMsg')}")
        result = obj(field(body, "result"), "result")
        rows = [obj(r, "row") for r in array(field(result, "list"), "result.list")]
        if path.endswith("/funding/history"):
            for row in self.items(rows, "funding history"):
                symbol = self.frame_symbol = self.check_symbol(row.get("symbol"))
                when = time_ms(row, "fundingRateTimestamp")
                self.add_funding(line, symbol, when, rate(row, "fundingRate"), when, settled=True)
        elif path.endswith("/market/tickers"):
            ts = time_ms(body, "time")
            for row in self.items(rows, "tickers"):
                self.ticker(body, row, line, ts=ts, snapshot=True)
        elif path.endswith("/market/open-interest"):
            symbol = self.frame_symbol = self.check_symbol(result.get("symbol"))
            for row in self.items(rows, "open interest"):
                self.add_open_interest(line, symbol, time_ms(row, "timestamp"), quantity(row, "openInterest"))
        elif path.endswith("/market/insurance"):
            ts = time_ms(result, "updatedTime")
            for row in self.items(rows, "insurance pools"):
                try:  # each pool is a fund of its own: a bad one is its own dead letter
                    self.insurance_pool(row, ts, line)
                except BadInput as bad:
                    self.reject(bad, line)
        else:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"REST endpoint {path} is not a derivatives endpoint")

    def insurance_pool(self, row: dict[str, Any], ts_ns: int, line: CaptureLine) -> None:
        """``/v5/market/insurance``: one pool's ``balance`` in ``coin`` at the body's ``updatedTime``.
        The fund is named by its ``symbols`` (one contract for an isolated pool, several for a shared
        one), sorted and comma-joined as Binance's; ``""`` (the coin's pool of every other contract,
        in Bybit's example) is ``shared-<coin>``. A pool is one fund whatever the symbol filter.

        Raises:
            BadInput: a missing or malformed field, or a balance past the nanos range
                (``out_of_range``: 38 digits of nanos or more).
        """
        coin = text(row, "coin")
        listed = field(row, "symbols")
        if not isinstance(listed, str):
            raise BadInput(Reason.BAD_SHAPE, f"symbols was {listed!r}, not a comma-separated string")
        symbols = sorted(s.strip() for s in listed.split(",") if s.strip())
        self.frame_symbol = ",".join(symbols) if symbols else f"shared-{coin}"
        self.add_insurance(line, self.frame_symbol, ts_ns, coin, balance(row, "balance"))
