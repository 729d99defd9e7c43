"""Hand-built trade prints for the signals tests: columns from parallel lists, in time order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from tapeflow.schemas.records import TRADE


def print_columns(ts: Sequence, price: Sequence, size: Sequence, side: Sequence) -> dict[str, np.ndarray]:
    """The detectors' trade columns, stably sorted by ``ts``, received 1 us after the event."""
    order = np.argsort(np.asarray(ts), kind="stable")
    cols = {c: np.asarray(v)[order] for c, v in
            (("ts_event_ns", ts), ("price_nanos", price), ("size_nanos", size), ("aggressor_side", side))}
    cols["ts_recv_ns"] = cols["ts_event_ns"] + 1000
    cols["aggressor_side"] = cols["aggressor_side"].astype(np.uint8)
    return cols


def print_table(ts: Sequence, price: Sequence, size: Sequence, side: Sequence,
                symbol: str = "SIMA") -> pa.Table:
    """:func:`print_columns` as a ``trade`` table of venue ``sim`` (sequence, ids, no flags)."""
    cols = print_columns(ts, price, size, side)
    n = len(cols["ts_event_ns"])
    cols["sequence"] = np.arange(n, dtype=np.int64)
    cols["trade_id"] = [str(i) for i in range(n)]
    cols["flags"] = np.zeros(n, np.uint8)
    return TRADE.table(cols, constants={"venue": "sim", "symbol": symbol})
