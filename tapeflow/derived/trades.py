"""Trades derived from L3 order events: what a venue's MBO feed says traded.

An MBO feed such as Databento's carries each execution as an order event with action ``T``
(trade, side = the aggressor's) followed by ``F`` fills of the resting orders and the cancels or
modifies that change the book. Databento's own ``trades`` schema is exactly those ``T`` records,
one trade each, so a venue that ships only MBO still gets trade rows, bars and volume profiles.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import BookError
from tapeflow.schemas.records import L3_TRADE, ORDER_EVENT, TRADE


def trades_from_order_events(events: pa.Table) -> pa.Table:
    """The ``trade`` rows of an ``order_event`` table: one per ``T`` (trade) event, in input order.

    Kept as the feed gives them: venue and capture times, venue, symbol, sequence, price, size,
    flags, and the aggressor side (the ``T`` event's side: ``B`` buyer, ``A`` seller, ``N`` where
    the venue does not say, e.g. CME's opening-auction match). ``F`` fills are the resting side of
    the same executions and are not trades of their own. The trade id is empty, as in Databento's
    trades schema. Equal to Databento's trades file for the same instrument and time.

    Args:
        events: ``order_event`` rows (any instruments; a lake partition or a decoded file).

    Returns:
        A ``trade`` table (empty when no event traded).

    Raises:
        BookError: the table is not an ``order_event`` table.
    """
    if events.schema.names != ORDER_EVENT.column_names:
        raise BookError(f"trades_from_order_events needs an order_event table, got {events.schema.names}")
    traded = events.filter(pc.equal(events.column("action"), L3_TRADE))
    columns = {name: traded.column(name) for name in ("ts_event_ns", "ts_recv_ns", "venue", "symbol",
                                                      "sequence", "price_nanos", "size_nanos", "flags")}
    columns["trade_id"] = pa.array([""] * traded.num_rows, pa.string())
    columns["aggressor_side"] = traded.column("side")
    return TRADE.table(columns)
