"""Which IQFeed trades make bars: IQFeed's own bars leave out basis ``O`` trades ("other": odd lots,
average-price and other trades that do not qualify to set the last price), so bars rebuilt from its
ticks leave them out too (``trade_id`` starts with the basis, :mod:`~.history`)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.venues.iqfeed.messages import NOT_IN_BARS


def bar_trades(trades: pa.Table) -> pa.Table:
    """The trades IQFeed's bars count, every trade but those of basis ``O``, in time order.

    Lookup responses list the newest tick first (``..._newest``) and ticks of one microsecond share
    their time, so the order is time, then TickID (``sequence``), which IQFeed numbers in the
    order of the day's ticks.
    """
    if trades.num_rows == 0:
        return trades
    other = pc.starts_with(trades.column("trade_id"), NOT_IN_BARS)
    kept = trades.filter(pc.invert(other))
    return kept.take(pc.sort_indices(kept, [("ts_event_ns", "ascending"), ("sequence", "ascending")]))
