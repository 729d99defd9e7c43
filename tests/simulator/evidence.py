"""What the simulated feed shows around each planted episode, read through tapeflow's own decoder and book.

Everything here is computed from the venue files (decoded by ``tapeflow.venues.sim`` and rebuilt by
``tapeflow.book.l3``), never from the simulator's internal state, so a plant that does not reach
the market data fails the tests that use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.book.l3 import l3_book_snapshots
from tapeflow.schemas.records import ASK, BID, F_SNAPSHOT, L3_ADD, L3_FILL
from tapeflow.venues.base import merge
from tapeflow.venues.sim.parse import decode

GRID_NS = 250_000_000
LEVELS = 120
S = 1_000_000_000


@dataclass
class Feed:
    """One instrument's market data on a 250 ms grid, plus its raw events and trades."""

    grid_ns: np.ndarray
    bid_px: list[np.ndarray]
    bid_sz: list[np.ndarray]
    ask_px: list[np.ndarray]
    ask_sz: list[np.ndarray]
    mid_ticks: np.ndarray
    best_depth_median: float
    events: pa.Table
    trades: pa.Table
    event_ts: np.ndarray

    def at(self, t_ns: int) -> int:
        """Grid row holding the book at ``t_ns`` (the last instant at or before it)."""
        return int(np.searchsorted(self.grid_ns, t_ns, side="right") - 1)

    def level_size(self, row: int, side: str, price_nanos: int) -> int | None:
        """Resting size at ``price_nanos`` on ``side`` (0 when inside the visible levels but empty,
        None when beyond them)."""
        px, sz = (self.bid_px[row], self.bid_sz[row]) if side == "B" else (self.ask_px[row], self.ask_sz[row])
        hit = np.flatnonzero(px == price_nanos)
        if hit.size:
            return int(sz[hit[0]])
        beyond = len(px) == LEVELS and (price_nanos < px[-1] if side == "B" else price_nanos > px[-1])
        return None if beyond else 0

    def mid_change(self, t0: int, t1: int) -> float:
        return float(self.mid_ticks[self.at(t1)] - self.mid_ticks[self.at(t0)])

    def mid_range(self, t0: int, t1: int) -> float:
        seg = self.mid_ticks[self.at(t0) : self.at(t1) + 1]
        return float(seg.max() - seg.min())

    def events_in(self, t0: int, t1: int) -> int:
        return int(np.searchsorted(self.event_ts, t1) - np.searchsorted(self.event_ts, t0))

    def volume(self, t0: int, t1: int, aggressor: int | None = None) -> int:
        ts = self.trades.column("ts_event_ns").to_numpy()
        sz = self.trades.column("size_nanos").to_numpy()
        keep = (ts >= t0) & (ts < t1)
        if aggressor is not None:
            keep &= self.trades.column("aggressor_side").to_numpy() == aggressor
        return int(sz[keep].sum())


def load_feed(files: list[Path], tick_nanos: int) -> Feed:
    """Decode one instrument's files and rebuild its book on the 250 ms grid."""
    tables = merge(list(decode(files)))
    events = tables["order_event"]
    snaps = l3_book_snapshots(events, levels=LEVELS, interval_ns=GRID_NS)
    cols = {
        n: snaps.column(n).to_pylist()
        for n in ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")
    }
    bid_px = [np.asarray(v, np.int64) for v in cols["bid_price_nanos"]]
    ask_px = [np.asarray(v, np.int64) for v in cols["ask_price_nanos"]]
    bid_sz = [np.asarray(v, np.int64) for v in cols["bid_size_nanos"]]
    ask_sz = [np.asarray(v, np.int64) for v in cols["ask_size_nanos"]]
    both = np.array([len(b) > 0 and len(a) > 0 for b, a in zip(bid_px, ask_px, strict=True)])
    mid = np.array(
        [
            (b[0] + a[0]) / 2 / tick_nanos if ok else np.nan
            for b, a, ok in zip(bid_px, ask_px, both, strict=True)
        ]
    )
    mid = _ffill(mid)
    best = np.concatenate(
        [
            [b[0] for b, ok in zip(bid_sz, both, strict=True) if ok],
            [a[0] for a, ok in zip(ask_sz, both, strict=True) if ok],
        ]
    )
    live = (events.column("flags").to_numpy() & F_SNAPSHOT) == 0
    return Feed(
        grid_ns=snaps.column("ts_event_ns").to_numpy(),
        bid_px=bid_px,
        bid_sz=bid_sz,
        ask_px=ask_px,
        ask_sz=ask_sz,
        mid_ticks=mid,
        best_depth_median=float(np.median(best)),
        events=events,
        trades=tables["trade"],
        event_ts=np.sort(events.column("ts_event_ns").to_numpy()[live]),
    )


def _ffill(x: np.ndarray) -> np.ndarray:
    idx = np.where(np.isnan(x), 0, np.arange(len(x)))
    np.maximum.accumulate(idx, out=idx)
    out = x[idx]
    first = np.flatnonzero(~np.isnan(out))
    out[: first[0]] = out[first[0]]
    return out


def episodes(path: Path) -> list[dict]:
    """Episode rows with their parameters parsed."""
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        r["p"] = json.loads(r["params"])
    return rows


def one_second_sigma(feed: Feed) -> float:
    """Std of 1 s mid changes (ticks) with the top 1% of moves trimmed (the planted jumps)."""
    step = S // GRID_NS
    r = np.abs(np.diff(feed.mid_ticks[::step]))
    r = r[r <= np.quantile(r, 0.99)]
    return float(np.sqrt(np.mean(r**2)))


def adds_filled(feed: Feed, side: str, size_nanos: int, t0: int, t1: int) -> int:
    """Orders added on ``side`` with exactly ``size_nanos`` in ``[t0, t1]`` that were then executed."""
    ev = feed.events
    act = ev.column("action").to_numpy()
    ts = ev.column("ts_event_ns").to_numpy()
    oid = ev.column("order_id").to_numpy()
    sd = ev.column("side").to_numpy()
    sz = ev.column("size_nanos").to_numpy()
    want = BID if side == "B" else ASK
    added = (act == L3_ADD) & (sd == want) & (sz == size_nanos) & (ts >= t0) & (ts <= t1)
    filled = set(oid[act == L3_FILL].tolist())
    return sum(1 for o in oid[added].tolist() if o in filled)
