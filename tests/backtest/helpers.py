"""Small hand-made books for the backtester's tests: rows at integer nanoseconds, prices in units."""

from __future__ import annotations

import pyarrow as pa

from kernels.codes import ASK, BID, F_LAST, F_SNAPSHOT, L2_CLEAR, L2_SET
from tapeflow.backtest.strategy import Context, Strategy
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, TRADE

N = 1_000_000_000
CONST = {"venue": "test", "symbol": "X"}


def deltas(rows: list[tuple[int, str, float, float]]) -> pa.Table:
    """``(t, 'B'|'A', price, size)`` L2 rows, each its own event; a clear and snapshot first."""
    cols: dict[str, list] = {k: [] for k in ("ts_event_ns", "ts_recv_ns", "sequence", "side", "action",
                                             "price_nanos", "size_nanos", "flags")}

    def add(t: int, side: int, action: int, px: float, sz: float, flags: int) -> None:
        values = (t, t, len(cols["sequence"]), side, action, int(px * N), int(round(sz * N)), flags)
        for k, v in zip(cols, values, strict=True):
            cols[k].append(v)

    add(0, ord("N"), L2_CLEAR, 0, 0, F_SNAPSHOT)
    first = True
    for t, side, px, sz in rows:
        flags = (F_SNAPSHOT | F_LAST) if first else F_LAST
        add(t, BID if side == "B" else ASK, L2_SET, px, sz, flags)
        first = False
    return BOOK_DELTA.table(cols, constants=CONST)


def trades(rows: list[tuple[int, str, float, float]]) -> pa.Table:
    """``(t, aggressor 'B'|'A', price, size)`` trade rows."""
    return TRADE.table({"ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] for r in rows],
                        "sequence": list(range(len(rows))), "trade_id": [""] * len(rows),
                        "price_nanos": [int(r[2] * N) for r in rows],
                        "size_nanos": [int(round(r[3] * N)) for r in rows],
                        "aggressor_side": [BID if r[1] == "B" else ASK for r in rows],
                        "flags": [0] * len(rows)},
                       constants=CONST)


def order_events(rows: list[tuple[int, int, str, str, float, float]]) -> pa.Table:
    """``(t, order_id, action letter, 'B'|'A', price, size)`` L3 rows, each its own event."""
    return ORDER_EVENT.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] for r in rows],
        "sequence": list(range(len(rows))),
        "order_id": [r[1] for r in rows], "action": [ord(r[2]) for r in rows],
        "side": [BID if r[3] == "B" else ASK for r in rows], "price_nanos": [int(r[4] * N) for r in rows],
        "size_nanos": [int(round(r[5] * N)) for r in rows], "flags": [F_LAST] * len(rows)}, constants=CONST)


class Scripted(Strategy):
    """Runs ``actions[k](ctx)`` at the k-th timer call and records every fill."""

    def __init__(self, actions: list, timer_ns: int = 10) -> None:
        self.actions = list(actions)
        self.timer_ns = timer_ns
        self.got: list = []
        self.ids: list[int] = []

    def on_timer(self, ctx: Context) -> None:
        if self.actions:
            out = self.actions.pop(0)(ctx)
            if isinstance(out, int):
                self.ids.append(out)

    def on_fill(self, ctx: Context, fill) -> None:
        self.got.append(fill)
