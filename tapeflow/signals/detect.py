"""Run every registered detector over decoded input: trades and the rebuilt book, per instrument.

The book comes from the one book path (``tapeflow.book.rebuild.snapshots_for_format``: L3 where
order ids exist, L2 otherwise); its decoded chunks give the trades. ``detect_tables`` is the
entry point for tables already in hand (the flow and the asset call it); where the input has
order ids, ``tapeflow.signals.orders.detect_orders`` adds the L3 detectors (spoofing, icebergs).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from tapeflow.book.grid import instrument_groups
from tapeflow.schemas.core import concat
from tapeflow.schemas.records import ASK, BID, ORDER_EVENT, SIGNAL, TRADE
from tapeflow.signals import (
    absorption,
    hidden,
    iceberg,
    iceberg_l2,
    institutional,
    spikes,
    spoofing,
    spoofing_l2,
    stealth,
    walls,
    whale,
    withdrawal,
)
from tapeflow.signals.config import PARAMS, Thresholds
from tapeflow.storage.scope import Scope
from tapeflow.wire.capture import merge

DETECTORS = tuple(PARAMS)  # every kind of tapeflow.signals.config.PARAMS
# the detectors ``detect_tables`` and ``detect_orders`` run (name/version of each)
BATCH_NAMES = (whale.NAME, withdrawal.NAME, walls.NAME, spikes.NAME, hidden.NAME, iceberg_l2.NAME,
               spoofing_l2.NAME, absorption.NAME, stealth.CREEP, stealth.CONTRACTION, stealth.STEALTH,
               spoofing.NAME, iceberg.NAME, institutional.NAME)
# their rows of a ``signal`` partition, which the Dagster ``signals`` asset replaces (any version of
# each name); the rows of other producers there (``derivatives/1``) survive its writes
SCOPE = Scope("detector", tuple(sorted({n.split("/")[0] + "/" for n in BATCH_NAMES})))


def grid_and_levels(thresholds: Thresholds) -> tuple[int, int]:
    """The snapshot grid and depth the book is rebuilt with: the finest grid and widest band asked."""
    wd = [p["withdrawal"] for p in thresholds.presets.values()]
    wd += [i["withdrawal"] for i in thresholds.instruments.values() if "withdrawal" in i]
    grid = min(p["grid_ns"] for p in wd if "grid_ns" in p)
    levels = max(p["within_ticks"] for p in wd if "within_ticks" in p) + 1
    return grid, levels


def detect_format(format_name: str, paths: Sequence[Path], thresholds: Thresholds, *,
                  preset: str | None = None) -> pa.Table:
    """Decode ``paths``, rebuild their books and run every detector; returns ``signal`` rows."""
    from tapeflow.book.rebuild import snapshots_for_format

    grid_ns, levels = grid_and_levels(thresholds)
    chunks: list = []
    snapshots, _ = snapshots_for_format(format_name, paths, levels=levels, interval_ns=grid_ns,
                                        on_chunk=chunks.append)
    tables = merge(chunks)
    trades = tables.get(TRADE.name, TRADE.empty_table())
    events = tables.get(ORDER_EVENT.name)
    signals = detect_tables(trades, snapshots, thresholds, preset=preset, order_ids=instruments_of(events))
    if events is None or events.num_rows == 0:
        return signals
    from tapeflow.signals.orders import detect_orders

    return _sorted(concat(SIGNAL, [signals, *detect_orders(events, snapshots, thresholds, preset=preset)]))


def instruments_of(events: pa.Table | None) -> frozenset[tuple[str, str]]:
    """The (venue, symbol) pairs with rows in ``events`` (an ``order_event`` table, or None)."""
    if events is None or events.num_rows == 0:
        return frozenset()
    return frozenset((v, s) for v, s, _ in instrument_groups(events))


def detect_tables(trades: pa.Table, snapshots: pa.Table, thresholds: Thresholds, *,
                  preset: str | None = None, order_ids: Collection[tuple[str, str]] = ()) -> pa.Table:
    """``signal`` rows of every detector for every instrument in ``trades`` and ``snapshots``
    (a ``book_snapshot`` table on a regular grid), sorted by instrument and time.

    ``order_ids``: the (venue, symbol) pairs whose input has order ids; they get the L3 iceberg
    and spoofing (``tapeflow.signals.orders``) in place of the L2 ones, so neither is reported twice."""
    out = []
    books = {(v, s): rows for v, s, rows in instrument_groups(snapshots)}
    for venue, symbol, rows in instrument_groups(trades):
        tr = {c: trades.column(c).take(rows).to_numpy() for c in
              ("ts_event_ns", "ts_recv_ns", "price_nanos", "size_nanos", "aggressor_side")}
        mine = len(out)
        book = _grid_arrays(snapshots.take(books[(venue, symbol)])) if (venue, symbol) in books else None
        tick = _tick(book) if book is not None else 1
        whale_params = thresholds.for_instrument("whale", symbol, preset)
        out.append(whale.detect(tr, whale_params, venue, symbol, book=book, tick=tick).table())
        if book is not None:
            params = thresholds.for_instrument("withdrawal", symbol, preset)
            traded = _traded_into(book["recv"], tr)
            out.append(withdrawal.detect(book, traded, tick, params, venue, symbol).table())
            out.append(walls.detect(book, tr, tick, thresholds.for_instrument("wall", symbol, preset),
                                    venue, symbol).table())
            out.append(spikes.detect(book, tr, tick, thresholds.for_instrument("spike", symbol, preset),
                                     venue, symbol).table())
            out.append(hidden.detect(tr, book, thresholds.for_instrument("hidden", symbol, preset), venue,
                                     symbol).table())
            if (venue, symbol) not in order_ids:
                params = thresholds.for_instrument("iceberg_l2", symbol, preset)
                out.append(iceberg_l2.detect(tr, book, params, venue, symbol).table())
                params = thresholds.for_instrument("spoofing_l2", symbol, preset)
                out.append(spoofing_l2.detect(book, tr, tick, params, venue, symbol).table())
            events = snapshots.column("sequence").take(books[(venue, symbol)]).to_numpy()
            # the composite reads this instrument's other alerts (withdrawal, hidden, ...)
            out += stealth.detect_instrument(book, events, tr, tick, thresholds, symbol, preset, venue,
                                             out[mine:])
    return _sorted(concat(SIGNAL, out))


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("venue", "ascending"), ("symbol", "ascending"), ("ts_event_ns", "ascending"),
                          ("kind", "ascending")]) if table.num_rows else table


def _grid_arrays(snaps: pa.Table) -> dict[str, np.ndarray]:
    levels = int(snaps.column("levels")[0].as_py()) if snaps.num_rows else 1
    out = {"ts": snaps.column("ts_event_ns").to_numpy(), "recv": snaps.column("ts_recv_ns").to_numpy(),
           "flags": snaps.column("flags").to_numpy()}
    for name in ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos"):
        col = snaps.column(name).combine_chunks()
        lengths = col.value_lengths().fill_null(0).to_numpy()
        flat = col.flatten().to_numpy()
        dense = np.zeros((len(lengths), levels), np.int64)
        row = np.repeat(np.arange(len(lengths)), lengths)
        pos = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        dense[row, pos] = flat
        out[name.replace("_price_nanos", "_p").replace("_size_nanos", "_s")] = dense
    return out


def _tick(book: dict[str, np.ndarray]) -> int:
    """The price increment: the smallest gap between neighbouring levels seen in the book."""
    gaps = []
    for name in ("bid_p", "ask_p"):
        p = book[name]
        ok = (p[:, 1:] > 0) & (p[:, :-1] > 0)
        d = np.abs(np.diff(p, axis=1))[ok]
        if d.size:
            gaps.append(int(d[d > 0].min()) if (d > 0).any() else 0)
    gaps = [g for g in gaps if g > 0]
    return min(gaps) if gaps else 1


def _traded_into(grid_recv_ns: np.ndarray, trades: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Cumulative volume executed against each side's resting orders, read at each grid row
    (trades received at or before the row's capture time: the book's own clock)."""
    out = {}
    recv = trades["ts_recv_ns"]
    order = np.argsort(recv, kind="stable")
    for side, aggressor in ((1, ASK), (-1, BID)):
        vol = np.where(trades["aggressor_side"][order] == aggressor, trades["size_nanos"][order], 0)
        cum = np.r_[0, np.cumsum(vol)]
        out[side] = cum[np.searchsorted(recv[order], grid_recv_ns, side="right")].astype(np.float64)
    return out
