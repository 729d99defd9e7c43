"""BitMEX: the ``instrument`` table (funding, mark, index, open interest) and the ``liquidation``
table (docs/derivatives.md).

``instrument`` is a ``partial`` then ``update`` rows carrying only what changed: each symbol keeps
its last values, and an update of a symbol whose partial was not seen is ignored by rule
(``no_snapshot``), as a book update before its snapshot. Index symbols (``.BXBT``) publish their
value as ``lastPrice``: an ``index_price`` row under the index's name. A liquidation is an order
resting in the book: its ``insert`` is the liquidation; its ``update`` / ``delete`` only change or
end the resting order (quiet). Frames without a venue time take the capture time, as the BitMEX
book decoder does.
"""

from __future__ import annotations

from typing import Any

from tapeflow.derivatives.base import (
    DerivativesDecoder,
    computed_price,
    iso_ns,
    order_side,
    present,
    quantity,
    rate,
)
from tapeflow.errors import BadInput
from tapeflow.schemas.records import UNDEF_TS
from tapeflow.venues.fields import array, field, obj, text
from tapeflow.wire.capture import CaptureLine
from tapeflow.wire.rejects import Reason

VENUE = "bitmex"
_OTHER_TABLES = frozenset(
    {
        "orderBookL2",
        "orderBookL2_25",
        "orderBook10",
        "quote",
        "trade",
        "tradeBin1m",
        "quoteBin1m",
        "settlement",
        "funding",
        "insurance",
        "announcement",
        "chat",
    }
)
_LIVE_STATES = (None, "Open", "Closed")  # others (Settled, Unlisted) are contracts that stopped trading
_FIELDS = (
    "fundingRate",
    "indicativeFundingRate",
    "fundingTimestamp",
    "markPrice",
    "indicativeSettlePrice",
    "openInterest",
    "lastPrice",
)


def _time(row: dict[str, Any], key: str, fallback_ns: int) -> int:
    return iso_ns(row.get(key), key, fallback_ns=fallback_ns)


class BitmexDerivatives(DerivativesDecoder):
    """BitMEX instrument and liquidation tables (symbols keep their instrument state)."""

    venue = VENUE

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.instruments: dict[str, dict[str, Any]] = {}

    def message(self, msg: Any, line: CaptureLine) -> None:
        """One realtime frame (``table`` and ``action`` name it) or a control answer."""
        msg = obj(msg, "frame")
        if "error" in msg:
            raise BadInput(Reason.VENUE_ERROR, str(msg["error"]))
        if "table" not in msg:
            if any(k in msg for k in ("info", "success", "subscribe", "unsubscribe")):
                self.quiet("control answer")
                return
            raise BadInput(Reason.MISSING_FIELD, "no 'table' field")
        table = text(msg, "table")
        action = text(msg, "action")
        rows = [obj(r, "row") for r in array(field(msg, "data"), "data")]
        if table == "instrument":
            self.instrument(rows, action, line)
        elif table == "liquidation":
            if action in ("partial", "insert"):
                for row in self.items(rows, "liquidations", snapshot=action == "partial"):
                    symbol = self.frame_symbol = self.check_symbol(row.get("symbol"))
                    self.add_liquidation(
                        line,
                        symbol,
                        line.recv_ns,
                        order_side(row.get("side"), "side"),
                        quantity(row, "price"),
                        quantity(row, "leavesQty"),
                        text(row, "orderID"),
                    )
            else:
                self.quiet(f"liquidation {action}")
        elif table in _OTHER_TABLES:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"table {table!r} is not a derivatives table")
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"table {table!r}")

    def instrument(self, rows: list[dict[str, Any]], action: str, line: CaptureLine) -> None:
        """Rows of the instrument table: a partial sets each symbol's state, an update changes it."""
        partial = action == "partial"
        if not partial and rows and not any(r.get("symbol") in self.instruments for r in rows):
            raise BadInput(
                Reason.NO_SNAPSHOT, f"instrument {action} of {rows[0].get('symbol')!r} before its partial"
            )
        for row in self.items(rows, "instruments", snapshot=partial):
            symbol = self.frame_symbol = self.check_symbol(row.get("symbol"))
            state = self.instruments.get(symbol)
            if state is None and not partial:
                self.quiet("instrument update before its partial")
                continue
            given = {k: row[k] for k in _FIELDS if k in row}
            new = given if partial or state is None else {**state, **given}
            self.instruments[symbol] = new
            # an index (.BXBT) is listed as Unlisted: it is never traded, still published
            if row.get("state") not in _LIVE_STATES and not symbol.startswith("."):
                self.quiet("settled or unlisted instrument")
                continue
            self.instrument_rows(symbol, given, new, _time(row, "timestamp", line.recv_ns), line)

    def instrument_rows(
        self, symbol: str, given: dict[str, Any], state: dict[str, Any], ts: int, line: CaptureLine
    ) -> None:
        """The rows of what one instrument row carries (read first: a bad value writes none)."""
        if symbol.startswith("."):
            if present(given, "lastPrice"):
                self.add_index(line, symbol, ts, computed_price(given, "lastPrice", signed=True))
            else:
                self.quiet("index without a value")
            return
        mark = computed_price(given, "markPrice") if present(given, "markPrice") else None
        index = (
            computed_price(given, "indicativeSettlePrice")
            if present(given, "indicativeSettlePrice")
            else None
        )
        oi = quantity(given, "openInterest") if present(given, "openInterest") else None
        funding = None
        if any(k in given for k in ("fundingRate", "indicativeFundingRate", "fundingTimestamp")):
            funding = (
                rate(state, "fundingRate"),
                _time(state, "fundingTimestamp", UNDEF_TS),
                rate(state, "indicativeFundingRate"),
            )
        if mark is not None:
            self.add_mark(line, symbol, ts, mark)
        if index is not None:
            self.add_index(line, symbol, ts, index)
        if oi is not None:
            self.add_open_interest(line, symbol, ts, oi)
        if funding is not None and not (funding[0] != funding[0] and funding[2] != funding[2]):
            self.add_funding(line, symbol, ts, *funding)
        elif mark is None and index is None and oi is None:
            self.quiet("instrument update without derivatives fields")
