"""One instrument's market rows as the backtester's arrays: book, trades and signals on two clocks.

Book rows go through :mod:`tapeflow.book` (``replay_l2`` for ``book_delta``, ``replay_l3`` for
``order_event``): the best bid and ask after every row come from there, never from code of our
own. Trades and ``signal`` rows are merged in by arrival time (``ts_recv_ns``, stable: book rows
first on ties) and carry the book of the last book row before them.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
import pyarrow as pa

from kernels.codes import ASK, BID, F_LAST, F_SUPERSEDED, L2_CLEAR, L2_DELETE, L3_CLEAR, UNDEF_PRICE, VALID
from tapeflow.backtest import core
from tapeflow.backtest.models import LatencyModel
from tapeflow.book.l2 import replay_l2
from tapeflow.book.l3 import replay_l3
from tapeflow.errors import InputError
from tapeflow.schemas.ml import PREDICTION
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, SIGNAL, TRADE

NANOS = 1_000_000_000


@dataclass
class Feed:
    """Aligned arrays, one entry per market row (see :mod:`tapeflow.backtest.core` for kinds).

    Prices are in ticks of ``tick_nanos``; quantities are float64 in base units (size / 1e9);
    ``bid_ticks``/``ask_ticks`` are the book after the row (``core.NO_BID``/``NO_ASK`` while the
    book is not valid); ``pub`` marks rows after which the book is published (``F_LAST``).
    """

    level: str
    t_exch: np.ndarray
    t_local: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    px: np.ndarray
    qty: np.ndarray
    oid: np.ndarray
    action: np.ndarray
    bid_ticks: np.ndarray
    ask_ticks: np.ndarray
    bid_qty: np.ndarray
    ask_qty: np.ndarray
    pub: np.ndarray
    source_row: np.ndarray
    prev_qty: np.ndarray
    lv_seg: np.ndarray
    lv_key: np.ndarray
    lv_row: np.ndarray
    lv_qty: np.ndarray
    tick_nanos: int
    lot: float
    signals: pa.Table | None
    predictions: pa.Table | None = None

    def __len__(self) -> int:
        return int(self.kind.shape[0])


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).combine_chunks().to_numpy(zero_copy_only=False)


def _gcd(values: np.ndarray) -> int:
    values = np.unique(np.abs(values[(values != 0) & (values != UNDEF_PRICE)]))
    out = 0
    for v in values[: 200_000].tolist():
        out = gcd(out, int(v))
        if out == 1:
            break
    return out


def _book_rows(tables: dict[str, pa.Table], start_synced: bool) -> tuple[str, dict[str, np.ndarray]]:
    events = tables.get(ORDER_EVENT.name)
    if events is not None and events.num_rows:
        rep = replay_l3(events, levels=1, start_synced=start_synced)
        action = _col(events, "action")
        kind = np.where(action == L3_CLEAR, core.K_CLEAR, core.K_L3)
        return "l3", {"kind": kind, "action": action, "oid": _col(events, "order_id").astype(np.int64),
                      "table": events, "bbo": rep.bbo}
    deltas = tables.get(BOOK_DELTA.name)
    if deltas is None or not deltas.num_rows:
        found = ", ".join(f"{k}={v.num_rows}" for k, v in tables.items()) or "nothing"
        raise InputError(f"a backtest needs book rows (order_event or book_delta); found {found}")
    rep = replay_l2(deltas, levels=1)
    action = _col(deltas, "action")
    flags = _col(deltas, "flags")
    kind = np.where(action == L2_CLEAR, core.K_CLEAR, core.K_DEPTH)
    kind = np.where(flags & F_SUPERSEDED, core.K_NONE, kind)
    return "l2", {"kind": kind, "action": action, "oid": np.zeros(len(action), np.int64), "table": deltas,
                  "bbo": rep.bbo}


def build_feed(tables: dict[str, pa.Table], latency: LatencyModel, *, tick_nanos: int | None = None,
               lot_nanos: int | None = None, start_synced: bool = False) -> Feed:
    """Merge one instrument's book rows, trades and signals into a :class:`Feed`.

    Args:
        tables: decoded or lake tables by record name (``book_delta`` or ``order_event``, and
            optionally ``trade``, ``signal`` and ``prediction``), ONE venue/symbol, each in arrival
            order.
        latency: gives each row its exchange time (:meth:`LatencyModel.exchange_times`).
        tick_nanos: price tick; default the gcd of every price seen.
        lot_nanos: size lot; default the gcd of every size seen.
        start_synced: an L3 feed known to start from an empty book (the simulator's) is valid
            before any snapshot.

    Raises:
        InputError: no book rows, or more than one instrument.
    """
    level, book = _book_rows(tables, start_synced)
    bt = book["table"]
    _one_instrument(bt)
    bbo = book["bbo"]
    valid = bbo["status"] == VALID
    parts: list[dict[str, np.ndarray]] = []
    b_side = np.where(_col(bt, "side") == BID, 1, -1).astype(np.int64)
    b_size = _col(bt, "size_nanos").astype(np.int64)
    if level == "l2":
        b_size = np.where(book["action"] == L2_DELETE, 0, b_size)
    parts.append({"ts_recv": _col(bt, "ts_recv_ns"), "ts_event": _col(bt, "ts_event_ns"),
                  "kind": book["kind"],
                  "side": b_side, "price": _col(bt, "price_nanos"), "size": b_size, "oid": book["oid"],
                  "action": book["action"].astype(np.int64),
                  "pub": (_col(bt, "flags") & F_LAST) != 0, "src": np.arange(bt.num_rows),
                  "bid": np.where(valid, bbo["bid_px"], UNDEF_PRICE),
                  "ask": np.where(valid, bbo["ask_px"], UNDEF_PRICE),
                  "bsz": np.where(valid, bbo["bid_sz"], 0), "asz": np.where(valid, bbo["ask_sz"], 0)})
    trades = tables.get(TRADE.name)
    if trades is not None and trades.num_rows:
        agg = _col(trades, "aggressor_side")
        side = np.where(agg == BID, 1, np.where(agg == ASK, -1, 0)).astype(np.int64)
        parts.append(_extra(trades, np.where(side == 0, core.K_NONE, core.K_TRADE), side,
                            _col(trades, "price_nanos"), _col(trades, "size_nanos")))
    signals = tables.get(SIGNAL.name)
    if signals is not None and signals.num_rows:
        n = signals.num_rows
        parts.append(_extra(signals, np.full(n, core.K_SIGNAL), _col(signals, "side").astype(np.int64),
                            np.zeros(n, np.int64), np.zeros(n, np.int64)))
    predictions = tables.get(PREDICTION.name)
    if predictions is not None and predictions.num_rows:
        n = predictions.num_rows
        parts.append(_extra(predictions, np.full(n, core.K_PREDICTION),
                            _col(predictions, "predicted").astype(np.int64), np.zeros(n, np.int64),
                            np.zeros(n, np.int64)))
    else:
        predictions = None
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["ts_recv"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    _carry_book(cols)
    prices = np.concatenate([cols["price"], cols["bid"], cols["ask"]])
    tick = tick_nanos or _gcd(prices) or 1
    lot_n = lot_nanos or _gcd(cols["size"]) or 1
    t_local = np.maximum.accumulate(cols["ts_recv"].astype(np.int64))
    t_exch = latency.exchange_times(t_local, cols["ts_event"].astype(np.int64))
    bid = np.where(cols["bid"] == UNDEF_PRICE, core.NO_BID, cols["bid"] // tick)
    ask = np.where(cols["ask"] == UNDEF_PRICE, core.NO_ASK, cols["ask"] // tick)
    kind = cols["kind"].astype(np.int64)
    px_ticks = cols["price"].astype(np.int64) // tick
    qty = cols["size"] / NANOS
    prev_qty, lv_seg, lv_key, lv_row = level_index(kind, cols["side"], px_ticks, qty)
    lv_qty = qty[lv_row]
    return Feed(level=level, t_exch=t_exch, t_local=t_local, kind=kind,
                side=cols["side"], px=px_ticks, qty=qty,
                oid=cols["oid"], action=cols["action"], bid_ticks=bid.astype(np.int64),
                ask_ticks=ask.astype(np.int64), bid_qty=cols["bsz"] / NANOS, ask_qty=cols["asz"] / NANOS,
                pub=cols["pub"], source_row=cols["src"], prev_qty=prev_qty, lv_seg=lv_seg, lv_key=lv_key,
                lv_row=lv_row, lv_qty=lv_qty, tick_nanos=int(tick), lot=lot_n / NANOS,
                signals=signals, predictions=predictions)


def _one_instrument(table: pa.Table) -> None:
    for name in ("venue", "symbol"):
        values = table.column(name).unique().to_pylist()
        if len(values) > 1:
            raise InputError(f"a backtest runs one instrument; the input holds {name}s {values[:5]}: "
                             "filter it first")


def _extra(table: pa.Table, kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray
           ) -> dict[str, np.ndarray]:
    n = table.num_rows
    undef = np.full(n, UNDEF_PRICE, np.int64)
    return {"ts_recv": _col(table, "ts_recv_ns"), "ts_event": _col(table, "ts_event_ns"), "kind": kind,
            "side": side, "price": price.astype(np.int64), "size": size.astype(np.int64),
            "oid": np.zeros(n, np.int64), "action": np.zeros(n, np.int64), "pub": np.zeros(n, bool),
            "src": np.arange(n), "bid": undef, "ask": undef.copy(), "bsz": np.full(n, -1, np.int64),
            "asz": np.full(n, -1, np.int64)}


def _carry_book(cols: dict[str, np.ndarray]) -> None:
    """Trade and signal rows (``bsz == -1``) show the book of the last book row before them."""
    is_book = cols["bsz"] >= 0
    last = np.maximum.accumulate(np.where(is_book, np.arange(len(is_book)), -1))
    has = last >= 0
    for k, empty in (("bid", UNDEF_PRICE), ("ask", UNDEF_PRICE), ("bsz", 0), ("asz", 0)):
        cols[k] = np.where(has, cols[k][np.maximum(last, 0)], empty)


def level_index(kind: np.ndarray, side: np.ndarray, px_ticks: np.ndarray, qty: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The L2 level index of :class:`Feed`: depth rows grouped by (clear segment, level), in row order
    (the feed's ``lv_qty`` is ``qty[lv_row]``, the size each of them sets).

    A depth row sets its level's absolute size (the deltas carry it), so the size a row replaces
    is the previous row's of the same level in the same segment (0 for the first), and the size
    at a level at row i is that of its last row at or before i.
    """
    depth = np.flatnonzero(kind == core.K_DEPTH)
    seg = np.cumsum(kind == core.K_CLEAR)
    key = px_ticks * 2 + (side > 0)
    order = np.lexsort((depth, key[depth], seg[depth]))
    rows = depth[order]
    s_seg, s_key = seg[rows], key[rows]
    same = np.zeros(rows.size, bool)
    same[1:] = (s_seg[1:] == s_seg[:-1]) & (s_key[1:] == s_key[:-1])
    prev = np.zeros(len(kind))
    prev[rows[1:][same[1:]]] = qty[rows[:-1][same[1:]]]
    return prev, s_seg.astype(np.int64), s_key.astype(np.int64), rows.astype(np.int64)
