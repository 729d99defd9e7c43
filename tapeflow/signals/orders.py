"""The L3 detectors (spoofing, icebergs, institutional pressure) over ``order_event`` rows, per instrument.

They need order ids, so they run where the input has them (the simulator's feed, MBO, LOBSTER):
``detect_orders`` takes the ``order_event`` table beside the rebuilt ``book_snapshot`` grid, which
gives each event its side's touch and the causal median depth at the touch
(``kernels.signals_windows.block_quantiles``, JAX). The per-order state is
``kernels.signals_orders.order_lifetimes`` (numba).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from kernels.signals_orders import order_lifetimes
from kernels.signals_windows import block_quantiles
from tapeflow.book.grid import instrument_groups
from tapeflow.schemas.records import ASK, BID, SIGNAL
from tapeflow.signals import iceberg, institutional, spoofing
from tapeflow.signals.config import Thresholds

_BASELINE_ROWS = 600  # grid rows per baseline block (1 min at 100 ms); 4 blocks looked back
_LOOKBACK_BLOCKS = 4


def detect_orders(events: pa.Table, snapshots: pa.Table, thresholds: Thresholds, *,
                  preset: str | None = None,
                  baselines: Mapping[tuple[str, str], institutional.Baselines] | None = None,
                  ) -> list[pa.Table]:
    """``signal`` tables of the L3 detectors for every instrument in ``events`` (an ``order_event``
    table, arrival order within each instrument) that has rows in ``snapshots``.

    ``baselines``: per (venue, symbol), the institutional records of the days before the input
    (``institutional.detect``'s ``baselines``: each judged day is added to it); none: the input's
    own earlier days only."""
    from tapeflow.signals.detect import _grid_arrays, _tick

    out = []
    books = {(v, s): rows for v, s, rows in instrument_groups(snapshots)}
    for venue, symbol, rows in instrument_groups(events):
        if (venue, symbol) not in books:
            continue
        book = _grid_arrays(snapshots.take(books[(venue, symbol)]))
        tick = _tick(book)
        ev = {c: events.column(c).take(rows).to_numpy() for c in
              ("ts_event_ns", "ts_recv_ns", "order_id", "action", "side", "price_nanos", "size_nanos")}
        code = np.where(ev["side"] == BID, 0, np.where(ev["side"] == ASK, 1, -1))
        ev["side_code"] = code
        # the grid row each event sees: the last one captured at or before it
        row = np.maximum(0, np.searchsorted(book["recv"], ev["ts_recv_ns"], side="right") - 1)
        touch = np.where(code == 0, book["bid_p"][row, 0], book["ask_p"][row, 0])
        dist = np.where(code == 0, touch - ev["price_nanos"], ev["price_nanos"] - touch) // tick
        depth_rows = (book["bid_s"][:, 0] + book["ask_s"][:, 0]) / 2.0
        depth_median = block_quantiles(depth_rows, _BASELINE_ROWS, _LOOKBACK_BLOCKS, (0.5,))[:, 0][row]
        sp = thresholds.for_instrument("spoofing", symbol, preset)
        ic = thresholds.for_instrument("iceberg", symbol, preset)
        with np.errstate(invalid="ignore"):
            big = ev["size_nanos"] >= sp["min_size_x_depth"] * depth_median  # NaN baseline: never big
        facts = order_lifetimes(ev["ts_event_ns"], ev["order_id"], ev["action"], code, ev["price_nanos"],
                                ev["size_nanos"], dist, big, ic["refill_ns"])
        out.append(spoofing.detect(ev, facts, depth_median, sp, venue, symbol).table())
        out.append(iceberg.detect(ev, facts, ic, venue, symbol).table())
        inst = thresholds.for_instrument("institutional", symbol, preset)
        out.append(institutional.detect(ev, dist <= 0, inst, venue, symbol,
                                        baselines=(baselines or {}).get((venue, symbol))).table())
    return out or [SIGNAL.empty_table()]
