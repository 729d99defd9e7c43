"""A :class:`tapeflow.backtest.feed.Feed` that grows with the live flow's micro-batches.

Paper trading runs the backtester's own engine over this feed, so its fills follow the same fill
model. What :func:`tapeflow.backtest.feed.build_feed` computes over a whole table is computed here
batch by batch with the same result:

* the best bid/ask after every row comes from :class:`tapeflow.book.l2.L2Book` (the same numba
  kernel as ``replay_l2``, its state carried from batch to batch);
* rows are merged by ``ts_recv_ns`` (book rows first on ties); the rows stamped with a batch's
  largest ``ts_recv_ns`` wait for the next batch, since a later batch may hold book rows of that
  same instant that the whole-table merge puts before them;
* the L2 level index (the size each depth row replaces, the size at a level when an order
  arrives) is rebuilt per batch from a per-level carry plus the rows the exchange may still query.

Tick and lot are given up front (a live feed cannot take the gcd of prices it has not seen), and
latency is :class:`ConstantLatency` (``DataLatency`` fixes its clock offset with the minimum over
the whole capture, which a live run does not know yet).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels.codes import ASK, BID, F_LAST, F_SUPERSEDED, L2_CLEAR, L2_DELETE, UNDEF_PRICE, VALID
from tapeflow.backtest import core
from tapeflow.backtest.feed import NANOS, Feed
from tapeflow.backtest.models import ConstantLatency, LatencyModel
from tapeflow.book.l2 import L2Book
from tapeflow.errors import ConfigError, InputError
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, SIGNAL, TRADE

_INT_COLS = ("t_exch", "t_local", "kind", "side", "px", "oid", "action", "bid_ticks", "ask_ticks",
             "source_row", "seg", "lvkey")
_FLOAT_COLS = ("qty", "bid_qty", "ask_qty", "prev_qty")


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).combine_chunks().to_numpy(zero_copy_only=False)


class _Columns:
    """Growable column buffers (capacity doubles, so appending is amortized O(rows))."""

    def __init__(self) -> None:
        self.n = 0
        self.cap = 1024
        self.a = {k: np.zeros(self.cap, np.int64) for k in _INT_COLS}
        self.a.update({k: np.zeros(self.cap, np.float64) for k in _FLOAT_COLS})
        self.a["pub"] = np.zeros(self.cap, bool)

    def append(self, cols: dict[str, np.ndarray]) -> None:
        m = len(cols["kind"])
        while self.n + m > self.cap:
            self.cap *= 2
            for k, v in self.a.items():
                grown = np.zeros(self.cap, v.dtype)
                grown[: self.n] = v[: self.n]
                self.a[k] = grown
        for k, v in cols.items():
            self.a[k][self.n: self.n + m] = v
        self.n += m

    def view(self, name: str) -> np.ndarray:
        return self.a[name][: self.n]


class LiveFeed:
    """One instrument's feed, extended by :meth:`append`; :meth:`feed` is the engine's view of it.

    Args:
        tick_nanos: price tick in 1e-9 units.
        lot_nanos: size lot in 1e-9 units.
        latency: a :class:`ConstantLatency`.
    """

    def __init__(self, tick_nanos: int, lot_nanos: int, latency: LatencyModel) -> None:
        if not isinstance(latency, ConstantLatency):
            raise ConfigError("paper trading needs ConstantLatency: DataLatency's clock offset is the "
                              "minimum over the whole capture, unknown while it is still arriving")
        if tick_nanos <= 0 or lot_nanos <= 0:
            raise ConfigError(f"tick_nanos and lot_nanos must be > 0, got {tick_nanos} and {lot_nanos}")
        self.tick, self.lot_nanos, self.latency = int(tick_nanos), int(lot_nanos), latency
        self.book = L2Book()
        self.cols = _Columns()
        self.held: dict[str, pa.Table] = {}
        self.signals: list[pa.Table] = []
        self.n_signals = 0
        self.last_recv = np.iinfo(np.int64).min
        self.last_book = (UNDEF_PRICE, UNDEF_PRICE, 0, 0)
        self.seg = 0
        self.last_qty: dict[tuple[int, int], float] = {}
        self.carried = np.zeros(0, np.int64)
        self.carried_upto = 0
        self.lv = (np.zeros(0, np.int64),) * 3
        self.instrument: tuple[str, str] | None = None

    def __len__(self) -> int:
        return self.cols.n

    def append(self, tables: dict[str, pa.Table], *, final: bool = False) -> int:
        """Add the next micro-batch (``book_delta``, ``trade``, ``signal`` tables of this instrument).

        Rows stamped with the batch's largest ``ts_recv_ns`` are kept for the next call unless
        ``final``. Returns the number of rows added to the feed.

        Raises:
            InputError: ``order_event`` rows (paper trading runs on L2 books), or another instrument.
        """
        if ORDER_EVENT.name in tables and tables[ORDER_EVENT.name].num_rows:
            raise InputError("paper trading runs on L2 books (book_delta); this batch holds order_event rows")
        merged = {}
        for name in (BOOK_DELTA.name, TRADE.name, SIGNAL.name):
            parts = [t for t in (self.held.get(name), tables.get(name)) if t is not None]
            if parts:
                merged[name] = pa.concat_tables(parts)
        self.held = {}
        recv = [_col(t, "ts_recv_ns") for t in merged.values() if t.num_rows]
        if not recv:
            return 0
        # a row received before rows already added keeps arrival order: its local time is the running max
        top = max(int(r.max()) for r in recv)
        now = {}
        for name, t in merged.items():
            if not t.num_rows:
                continue
            self._check_instrument(t)
            if final:
                now[name] = t
                continue
            r = _col(t, "ts_recv_ns")
            keep = r < top
            if not keep.all():
                self.held[name] = t.filter(pa.array(~keep))
            now[name] = t.filter(pa.array(keep))
        n = self._add(now)
        if n:
            self.last_recv = top if final else max(self.last_recv, int(self.cols.view("t_local")[-1]))
        return n

    def _check_instrument(self, t: pa.Table) -> None:
        venues, symbols = t.column("venue").unique().to_pylist(), t.column("symbol").unique().to_pylist()
        pair = (venues[0], symbols[0])
        if self.instrument is None:
            self.instrument = pair
        if len(venues) > 1 or len(symbols) > 1 or pair != self.instrument:
            raise InputError(f"a paper feed runs one instrument ({self.instrument}); got venues "
                             f"{venues[:3]}, symbols {symbols[:3]}")

    def _add(self, tables: dict[str, pa.Table]) -> int:
        parts: list[dict[str, np.ndarray]] = []
        deltas = tables.get(BOOK_DELTA.name)
        if deltas is not None and deltas.num_rows:
            rep = self.book.apply(deltas)
            bbo, valid = rep.bbo, rep.bbo["status"] == VALID
            action = _col(deltas, "action")
            flags = _col(deltas, "flags")
            kind = np.where(action == L2_CLEAR, core.K_CLEAR, core.K_DEPTH)
            kind = np.where(flags & F_SUPERSEDED, core.K_NONE, kind)
            size = np.where(action == L2_DELETE, 0, _col(deltas, "size_nanos").astype(np.int64))
            parts.append({"ts_recv": _col(deltas, "ts_recv_ns"), "kind": kind,
                          "side": np.where(_col(deltas, "side") == BID, 1, -1),
                          "price": _col(deltas, "price_nanos"),
                          "size": size, "action": action.astype(np.int64), "pub": (flags & F_LAST) != 0,
                          "src": np.arange(deltas.num_rows),
                          "bid": np.where(valid, bbo["bid_px"], UNDEF_PRICE),
                          "ask": np.where(valid, bbo["ask_px"], UNDEF_PRICE),
                          "bsz": np.where(valid, bbo["bid_sz"], 0), "asz": np.where(valid, bbo["ask_sz"], 0)})
        trades = tables.get(TRADE.name)
        if trades is not None and trades.num_rows:
            agg = _col(trades, "aggressor_side")
            side = np.where(agg == BID, 1, np.where(agg == ASK, -1, 0))
            parts.append(_extra(trades, np.where(side == 0, core.K_NONE, core.K_TRADE), side,
                                _col(trades, "price_nanos"), _col(trades, "size_nanos")))
        signals = tables.get(SIGNAL.name)
        if signals is not None and signals.num_rows:
            m = signals.num_rows
            parts.append(_extra(signals, np.full(m, core.K_SIGNAL), _col(signals, "side"),
                                np.zeros(m, np.int64), np.zeros(m, np.int64), first=self.n_signals))
            self.signals.append(signals)
            self.n_signals += m
        if not parts:
            return 0
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.argsort(cols["ts_recv"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        self._carry_book(cols)
        t_local = np.maximum.accumulate(np.maximum(cols["ts_recv"].astype(np.int64), self.last_recv))
        kind = cols["kind"].astype(np.int64)
        px = cols["price"].astype(np.int64) // self.tick
        qty = cols["size"] / NANOS
        seg = self.seg + np.cumsum(kind == core.K_CLEAR)
        self.seg = int(seg[-1])
        tick = self.tick
        self.cols.append({
            "t_exch": self.latency.exchange_times(t_local, t_local), "t_local": t_local, "kind": kind,
            "side": cols["side"].astype(np.int64), "px": px, "oid": np.zeros(len(kind), np.int64),
            "action": cols["action"],
            "bid_ticks": np.where(cols["bid"] == UNDEF_PRICE, core.NO_BID, cols["bid"] // tick),
            "ask_ticks": np.where(cols["ask"] == UNDEF_PRICE, core.NO_ASK, cols["ask"] // tick),
            "source_row": cols["src"], "seg": seg, "qty": qty, "bid_qty": cols["bsz"] / NANOS,
            "ask_qty": cols["asz"] / NANOS, "prev_qty": self._prev_qty(kind, seg, cols["side"], px, qty),
            "pub": cols["pub"], "lvkey": px * 2 + (cols["side"] > 0)})
        return len(kind)

    def _carry_book(self, cols: dict[str, np.ndarray]) -> None:
        is_book = cols["bsz"] >= 0
        last = np.maximum.accumulate(np.where(is_book, np.arange(len(is_book)), -1))
        has = last >= 0
        for j, k in enumerate(("bid", "ask", "bsz", "asz")):
            cols[k] = np.where(has, cols[k][np.maximum(last, 0)], self.last_book[j])
        self.last_book = tuple(int(cols[k][-1]) for k in ("bid", "ask", "bsz", "asz"))

    def _prev_qty(self, kind: np.ndarray, seg: np.ndarray, side: np.ndarray, px: np.ndarray, qty: np.ndarray
                  ) -> np.ndarray:
        # the size a depth row replaces: the previous depth row's of its level in its segment
        prev = np.zeros(len(kind))
        key = px * 2 + (side > 0)
        for i in np.flatnonzero(kind == core.K_DEPTH).tolist():
            level = (int(seg[i]), int(key[i]))
            prev[i] = self.last_qty.get(level, 0.0)
            self.last_qty[level] = float(qty[i])
        return prev

    def feed(self, exchange_row: int) -> Feed:
        """The engine's view of every row so far, with the level index for queries at rows >=
        ``exchange_row - 1`` (the exchange has processed the rows before ``exchange_row``)."""
        v = self.cols.view
        self._index(max(exchange_row - 1, 0))
        lv_seg, lv_key, lv_row = self.lv
        sig = pa.concat_tables(self.signals) if self.signals else None
        return Feed(level="l2", t_exch=v("t_exch"), t_local=v("t_local"), kind=v("kind"), side=v("side"),
                    px=v("px"), qty=v("qty"), oid=v("oid"), action=v("action"), bid_ticks=v("bid_ticks"),
                    ask_ticks=v("ask_ticks"), bid_qty=v("bid_qty"), ask_qty=v("ask_qty"), pub=v("pub"),
                    source_row=v("source_row"), prev_qty=v("prev_qty"), lv_seg=lv_seg, lv_key=lv_key,
                    lv_row=lv_row, tick_nanos=self.tick, lot=self.lot_nanos / NANOS, signals=sig)

    def _index(self, upto: int) -> None:
        # the last depth row of each level before ``upto`` (carried) plus every depth row from there:
        # a query at a row >= upto finds the same entry as in the whole feed's level_index
        kind, seg, key = self.cols.view("kind"), self.cols.view("seg"), self.cols.view("lvkey")
        upto = max(upto, self.carried_upto)
        if upto > self.carried_upto:
            old = np.arange(self.carried_upto, upto)
            grown = np.concatenate([self.carried, old[kind[old] == core.K_DEPTH]])
            self.carried = _last_per_level(grown, seg, key)
            self.carried_upto = upto
        now_seg = int(seg[upto]) if upto < len(seg) else self.seg
        self.carried = self.carried[seg[self.carried] >= now_seg]
        rest = np.arange(upto, len(kind))
        rows = np.concatenate([self.carried, rest[kind[rest] == core.K_DEPTH]])
        rows = rows[np.lexsort((rows, key[rows], seg[rows]))]
        self.lv = (seg[rows], key[rows], rows)


def _last_per_level(rows: np.ndarray, seg: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The largest row of each (segment, level) among ``rows``."""
    rows = rows[np.lexsort((rows, key[rows], seg[rows]))]
    s, k = seg[rows], key[rows]
    last = np.ones(rows.size, bool)
    last[:-1] = (s[1:] != s[:-1]) | (k[1:] != k[:-1])
    return rows[last]


def _extra(table: pa.Table, kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray,
           first: int = 0) -> dict[str, np.ndarray]:
    n = table.num_rows
    undef = np.full(n, UNDEF_PRICE, np.int64)
    return {"ts_recv": _col(table, "ts_recv_ns"), "kind": kind, "side": side.astype(np.int64),
            "price": price.astype(np.int64), "size": size.astype(np.int64), "action": np.zeros(n, np.int64),
            "pub": np.zeros(n, bool), "src": first + np.arange(n), "bid": undef, "ask": undef.copy(),
            "bsz": np.full(n, -1, np.int64), "asz": np.full(n, -1, np.int64)}
