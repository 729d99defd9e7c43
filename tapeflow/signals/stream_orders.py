"""The L3 detectors (spoofing, icebergs, institutional pressure) over micro-batches of one
instrument's ``order_event`` rows.

:class:`StreamingOrders` is registered in ``tapeflow.signals.stream.LIVE_DETECTORS``; per batch it
gives the rows ``tapeflow.signals.orders.detect_orders`` gives over the whole day, row for row:

* every event sees the grid row ``detect_orders`` gives it: the last one captured at or before it.
  The book emits a grid instant once an event arrives past it, and the row shows the last event
  received by then, so only the events received at the latest arrival so far may still get a row
  of their own: they wait for the next batch (or the end of the stream);
* the median depth at the touch moves a 600-row block at a time (``block_quantiles`` over the
  day): each block's median is computed once, when the block first shows, from the 4 blocks
  before it (``withdrawal.BlockBaseline``, the same arithmetic bit for bit);
* the per-order state is ``kernels.signals_orders.OrderState``, carried; the iceberg chains are
  ``iceberg.Chains``, carried; spoofing looks back on the layers cancelled in the last
  ``max_after_fill_ns`` (same-size layers), so those are kept, and its refractory chain is carried;
* institutional pressure gets each event with its touch flag (``dist <= 0``, as ``detect_orders``)
  and keeps its own state and its 20-day baseline (``tapeflow.signals.stream_institutional``;
  persisted where the feed names a baseline store, ``Feed.baselines``).

Known difference: the price increment is the finest gap seen so far (``detect_orders`` takes the
day's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from kernels.signals_orders import OrderState
from tapeflow.schemas.records import ASK, BID
from tapeflow.signals import iceberg, spoofing
from tapeflow.signals.stream import Feed, refractory_chain
from tapeflow.signals.stream_institutional import BaselineStore, StreamingInstitutional
from tapeflow.signals.withdrawal import BlockBaseline

_BLOCK = 600  # grid rows per depth baseline block, as ``orders._BASELINE_ROWS``
_LOOKBACK_BLOCKS = 4
_EV = ("ts_event_ns", "ts_recv_ns", "order_id", "action", "side", "price_nanos", "size_nanos")
_KEEP = ("ts_event_ns", "ts_recv_ns", "price_nanos", "side_code", "depth_median")
_NO_EVENTS = {c: np.zeros(0, np.int64)
              for c in ("ts_event_ns", "ts_recv_ns", "order_id", "action", "side_code", "size_nanos")}


class StreamingOrders:
    """Spoofing, icebergs and institutional pressure of one instrument over micro-batches (picklable)."""

    def __init__(self, venue: str, symbol: str, preset: str | None = None) -> None:
        self.venue, self.symbol, self.preset = venue, symbol, preset
        self.orders = OrderState()
        self.chains = iceberg.Chains()
        self.pending: dict[str, np.ndarray] | None = None  # events waiting for their grid row
        self.depth = np.zeros(0)  # depth at the touch per grid row, from block ``depth_first_row``
        self.depth_first_row = 0
        self.grid_rows = 0
        self.baseline = BlockBaseline()
        self.last_row: dict[str, np.ndarray] | None = None  # the newest grid row: recv, touches, median
        self.layers: dict[str, np.ndarray] | None = None  # recent cancels spoofing may look back on
        self.last_alert: dict[tuple[str, int], int] = {}
        self.institutional: StreamingInstitutional | None = None  # made at the first batch (its store)

    def add(self, feed: Feed) -> list[pa.Table]:
        """The batch's order events and grid rows in; the new spoofing, iceberg and institutional rows out."""
        if self.institutional is None:
            store = BaselineStore(feed.baselines) if feed.baselines is not None else None
            self.institutional = StreamingInstitutional(self.venue, self.symbol, store)
        out = self._add(feed)
        if feed.final:  # the institutional day's last seconds (no event may be left to bring them)
            params = feed.thresholds.for_instrument("institutional", self.symbol, self.preset)
            out += self.institutional.add(_NO_EVENTS, np.zeros(0, bool), params, final=True)
        return out

    def _add(self, feed: Feed) -> list[pa.Table]:
        rows = self._grid(feed.grid)
        if feed.events is not None and feed.events.num_rows:
            new = {c: feed.events.column(c).to_numpy() for c in _EV}
            self.pending = new if self.pending is None else {c: np.r_[self.pending[c], new[c]] for c in _EV}
        if rows is None or self.pending is None or not len(self.pending["ts_recv_ns"]):
            return []
        recv = self.pending["ts_recv_ns"]
        # events at the latest arrival may still see a grid row not emitted yet
        ready = len(recv) if feed.final else int(np.searchsorted(recv, recv[-1], side="left"))
        if not ready:
            return []
        ev = {c: v[:ready] for c, v in self.pending.items()}
        self.pending = {c: v[ready:] for c, v in self.pending.items()}
        return self._detect(ev, rows, feed)

    def _grid(self, grid: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        # the rows an event of this batch may see: the newest one before it and the batch's own
        if grid is None or not len(grid["ts"]):
            return self.last_row
        depth = (grid["bid_s"][:, 0] + grid["ask_s"][:, 0]) / 2.0
        self.depth = np.concatenate([self.depth, depth])
        median = self.baseline.usual(1, self.depth, self.depth_first_row, 0)[-len(depth):]
        self.grid_rows += len(depth)
        # keep the blocks the next block's median looks back on
        cut = ((self.grid_rows - 1) // _BLOCK - _LOOKBACK_BLOCKS) * _BLOCK - self.depth_first_row
        if cut > 0:
            self.depth = self.depth[cut:]
            self.depth_first_row += cut
        new = {"recv": grid["recv"], "bid": grid["bid_p"][:, 0], "ask": grid["ask_p"][:, 0], "median": median}
        rows = new if self.last_row is None else {k: np.r_[self.last_row[k], v] for k, v in new.items()}
        self.last_row = {k: v[-1:] for k, v in new.items()}
        return rows

    def _detect(self, ev: dict[str, np.ndarray], rows: dict[str, np.ndarray], feed: Feed) -> list[pa.Table]:
        code = np.where(ev["side"] == BID, 0, np.where(ev["side"] == ASK, 1, -1))
        ev["side_code"] = code
        at = np.maximum(0, np.searchsorted(rows["recv"], ev["ts_recv_ns"], side="right") - 1)
        touch = np.where(code == 0, rows["bid"][at], rows["ask"][at])
        dist = np.where(code == 0, touch - ev["price_nanos"], ev["price_nanos"] - touch) // max(1, feed.tick)
        ev["depth_median"] = rows["median"][at]
        sp = feed.thresholds.for_instrument("spoofing", self.symbol, self.preset)
        ic = feed.thresholds.for_instrument("iceberg", self.symbol, self.preset)
        with np.errstate(invalid="ignore"):
            big = ev["size_nanos"] >= sp["min_size_x_depth"] * ev["depth_median"]  # NaN: never big
        first_row = self.orders.rows
        facts = self.orders.step(ev["ts_event_ns"], ev["order_id"], ev["action"], code, ev["price_nanos"],
                                 ev["size_nanos"], dist, big, ic["refill_ns"])
        out = []
        if facts["cancel"].any():  # only a cancel can be a layer
            out.append(self._spoofing(ev, facts, sp))
        if facts["refill"].any():  # only a refill can open or extend a chain
            self.chains.forget_before(int(ev["ts_event_ns"].min()), ic)
            out.append(iceberg.detect(ev, facts, ic, self.venue, self.symbol, state=self.chains,
                                      first_row=first_row).table())
        assert self.institutional is not None
        inst = feed.thresholds.for_instrument("institutional", self.symbol, self.preset)
        out += self.institutional.add(ev, dist <= 0, inst)
        return [t for t in out if t.num_rows]

    def _spoofing(self, ev: dict[str, np.ndarray], facts: dict[str, np.ndarray], params: dict[str, Any]
                  ) -> pa.Table:
        new = {**{c: ev[c] for c in _KEEP}, **facts}
        within = params["max_after_fill_ns"]
        old = self.layers
        if old is not None:
            # a layer looks back until the first earlier one more than ``within`` before it: keep
            # the cancels from the last such one for the earliest new event on
            far = np.flatnonzero(old["ts_event_ns"] < int(ev["ts_event_ns"].min()) - within)
            old = {k: v[int(far[-1]):] for k, v in old.items()} if len(far) else old
        both = new if old is None else {k: np.r_[old[k], new[k]] for k in new}
        from_row = 0 if old is None else len(old["ts_event_ns"])
        rows = spoofing.detect(both, both, both["depth_median"], {**params, "refractory_ns": 0}, self.venue,
                               self.symbol, from_row=from_row).table()
        with np.errstate(invalid="ignore", divide="ignore"):
            size_x = np.where(both["depth_median"] > 0, both["add_size"] / both["depth_median"], 0.0)
        # only an unfilled cancel of a layer's size can be looked back on
        maybe = both["cancel"] & (size_x >= min(params["multi_size_x_depth"], params["min_size_x_depth"]))
        self.layers = {k: v[maybe] for k, v in both.items()}
        return refractory_chain(rows, params, self.last_alert)
