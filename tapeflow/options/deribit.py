"""Deribit option tickers (``ticker.<option>.<interval>``) in websocket captures -> ``option_ticker`` rows.

The frame loop, capture reading and dead letters are the JSON venues' own
(:class:`~tapeflow.venues.decoder.VenueDecoder`): every frame ends as a row, a ``rejected`` row
with its reason, or a quiet frame (subscription answers, heartbeats). Channels other than
``ticker.*`` (``book.*``, ``trades.*``) are dead-lettered as ``unsupported_channel``, ignored by
rule: this decoder reads what the pricing kernels check, the books and trades of Deribit come with
its venue folder (docs/options.md, "What is left").

Message shapes: the 2021 captures' tickers and the older (2020) ones differ in optional fields
(``settlement_price``, ``delivery_price``, ``estimated_delivery_price`` as a number or
``"expired"``); only ``instrument_name``, ``timestamp``, ``underlying_price``, ``mark_price`` and
``mark_iv`` are required, ``greeks.delta`` is read where present.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any

from tapeflow.errors import BadInput, BadNumber
from tapeflow.options.chain import RAW_COLUMNS, RAW_TABLE, price_tickers, raw_table
from tapeflow.options.instruments import parse_option_name
from tapeflow.venues.decoder import CHUNK_ROWS, VenueDecoder
from tapeflow.venues.deribit.parse import notification
from tapeflow.venues.fields import decimal, field, integer, obj, text
from tapeflow.wire.capture import CaptureLine, Decoded
from tapeflow.wire.rejects import Reason

VENUE = "deribit"
_DECIMAL_TEXT = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_MAX_MS = (2**63 - 1) // 1_000_000


def real(container: Any, key: str) -> float:
    """``container[key]`` as a finite float (a JSON number; IVs and greeks are analytics, not prices).

    Raises:
        BadInput: ``missing_field``, ``bad_shape`` or ``bad_number`` (not a number, or not finite).
    """
    value = field(container, key)
    if type(value) is int:
        return float(value)
    if type(value) is str and _DECIMAL_TEXT.match(value):
        number = float(value)
        if math.isfinite(number):
            return number
    raise BadNumber(Reason.BAD_NUMBER, value, key)


class DeribitTickerDecoder(VenueDecoder):
    """Deribit websocket frames in, ``option_ticker`` (+ ``rejected``) chunks out.

    Attributes:
        tickers: ticker messages decoded into rows so far.
    """

    venue = VENUE
    every_frame_accounted = True

    def __init__(self, *, symbols: Collection[str] | None = None, chunk_rows: int = CHUNK_ROWS,
                 priced: bool = True) -> None:
        super().__init__(symbols=symbols, chunk_rows=chunk_rows)
        self.priced = priced
        self._raw: dict[str, list[Any]] = {c: [] for c in RAW_COLUMNS}
        self.tickers = 0

    def message(self, msg: Any, line: CaptureLine) -> None:
        """One JSON-RPC message: a subscription notification, an answer, a heartbeat or an error."""
        params = notification(self, msg)
        if params is None:
            return
        channel = text(params, "channel")
        if not channel.startswith("ticker."):
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"channel {channel!r}: only ticker.* is read")
        self._ticker(obj(field(params, "data"), "data"), line)

    def _ticker(self, data: dict[str, Any], line: CaptureLine) -> None:
        name = text(data, "instrument_name")
        self.frame_symbol = name
        option = parse_option_name(name)
        if self.symbols is not None and name.upper() not in self.symbols:
            raise BadInput(Reason.UNKNOWN_SYMBOL, f"{name} is outside the symbol filter")
        ts_ms = integer(data, "timestamp")
        if not 0 <= ts_ms <= _MAX_MS:
            raise BadInput(Reason.BAD_TIMESTAMP, f"timestamp {ts_ms} ms is outside int64 nanoseconds")
        underlying = decimal(data, "underlying_price")
        mark = decimal(data, "mark_price")
        mark_iv = real(data, "mark_iv")
        if mark_iv < 0:
            raise BadNumber(Reason.NEGATIVE, mark_iv, "mark_iv")
        greeks = data.get("greeks")
        venue_delta = real(obj(greeks, "greeks"), "delta") if greeks is not None else math.nan
        raw = self._raw
        raw["ts_event_ns"].append(ts_ms * 1_000_000)
        raw["ts_recv_ns"].append(line.recv_ns)
        raw["symbol"].append(name)
        raw["underlying"].append(option.underlying)
        raw["expiry_ns"].append(option.expiry_ns)
        raw["strike_price_nanos"].append(option.strike_nanos)
        raw["is_call"].append(option.is_call)
        raw["underlying_price_nanos"].append(underlying)
        raw["mark_price_nanos"].append(mark)
        raw["mark_iv"].append(mark_iv / 100.0)  # Deribit sends percent
        raw["venue_delta"].append(venue_delta)
        self.tickers += 1

    @property
    def rows(self) -> int:
        """Rows buffered since the last chunk."""
        return len(self._raw["symbol"]) + len(self.rejects)

    def chunk(self, bytes_read: int, source: str) -> Decoded:
        """The buffered tickers priced by the kernels (:func:`~tapeflow.options.chain.price_tickers`),
        or, unpriced, as an ``option_ticker_raw`` table for a live flow to price per micro-batch."""
        tickers = (("option_ticker", price_tickers(self._raw, self.venue)) if self.priced
                   else (RAW_TABLE, raw_table(self._raw)))
        tables = dict([tickers, ("rejected", self.rejects.drain())])
        self._raw = {c: [] for c in RAW_COLUMNS}
        return Decoded({k: t for k, t in tables.items() if t.num_rows}, bytes_read, source)
