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
  arrives) is rebuilt per batch from a per-level carry (segment, level, size) plus the rows the
  exchange may still query;
* exchange times come from :meth:`LatencyModel.stream_times` (``ConstantLatency``, or
  ``DataLatency(running=True)``: its clock offset is the minimum so far, carried).

Memory is bounded: :meth:`LiveFeed.drop_before` forgets the rows the engine has passed (the
paper broker calls it after each batch), so the feed holds the rows of the last batch or two, the
book, and one entry per live price level; never a row per event of the session.

Tick and lot are given up front (a live feed cannot take the gcd of prices it has not seen).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels.codes import ASK, BID, F_LAST, F_SUPERSEDED, L2_CLEAR, L2_DELETE, UNDEF_PRICE, VALID
from tapeflow.backtest import core
from tapeflow.backtest.feed import NANOS, Feed
from tapeflow.backtest.models import DataLatency, LatencyModel
from tapeflow.book.l2 import L2Book
from tapeflow.errors import ConfigError, InputError
from tapeflow.schemas.ml import PREDICTION
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, SIGNAL, TRADE

_INT_COLS = ("t_exch", "t_local", "kind", "side", "px", "oid", "action", "bid_ticks", "ask_ticks",
             "source_row", "seg", "lvkey")
_EMPTY_I = np.zeros(0, np.int64)
_EMPTY_F = np.zeros(0, np.float64)
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

    def drop(self, k: int) -> None:
        """Forget the first ``k`` rows (the rest move to the front; capacity shrinks when 4x too big)."""
        if k <= 0:
            return
        m = self.n - k
        cap = self.cap
        while cap > 1024 and m * 4 <= cap:
            cap //= 2
        for name, v in self.a.items():
            if cap != self.cap:
                kept = np.zeros(cap, v.dtype)
                kept[:m] = v[k: self.n]
                self.a[name] = kept
            else:
                v[:m] = v[k: self.n].copy()
        self.cap, self.n = cap, m

    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.a.values())


class _Kept:
    """The ``signal`` or ``prediction`` rows still in the window (callbacks read them by source row):
    their table, how many rows were forgotten before it, and how many were ever added."""

    def __init__(self) -> None:
        self.table: pa.Table | None = None
        self.first = 0
        self.n = 0

    def add(self, t: pa.Table) -> int:
        """Keep ``t``; returns the position of its first row in the kept table."""
        first = self.n - self.first
        self.table = t if self.table is None else pa.concat_tables([self.table, t])
        self.n += t.num_rows
        return first

    def drop(self, kind: np.ndarray, src: np.ndarray, code: int) -> None:
        """Forget the table's rows before the first one the window still names (``src`` of its rows
        is renumbered in place)."""
        if self.table is None:
            return
        mine = kind == code
        left = src[mine]
        cut = int(left.min()) if left.size else self.table.num_rows
        if cut > 0:
            self.table = self.table.slice(cut) if cut < self.table.num_rows else None
            self.first += cut
            src[mine] -= cut


class LiveFeed:
    """One instrument's feed, extended by :meth:`append`; :meth:`feed` is the engine's view of it.

    Row numbers are relative to the rows kept: after :meth:`drop_before` (k) row ``k`` is row 0,
    and ``dropped`` counts the rows forgotten.

    Args:
        tick_nanos: price tick in 1e-9 units.
        lot_nanos: size lot in 1e-9 units.
        latency: ``ConstantLatency`` or ``DataLatency(running=True)``.
    """

    def __init__(self, tick_nanos: int, lot_nanos: int, latency: LatencyModel) -> None:
        if isinstance(latency, DataLatency) and not latency.running:
            raise ConfigError("paper trading needs ConstantLatency or DataLatency(running=True): "
                              "DataLatency's clock offset is the minimum over the whole capture, unknown "
                              "while it is still arriving")
        if tick_nanos <= 0 or lot_nanos <= 0:
            raise ConfigError(f"tick_nanos and lot_nanos must be > 0, got {tick_nanos} and {lot_nanos}")
        self.tick, self.lot_nanos, self.latency = int(tick_nanos), int(lot_nanos), latency
        self.book = L2Book()
        self.cols = _Columns()
        self.held: dict[str, pa.Table] = {}
        self.kept = {SIGNAL.name: _Kept(), PREDICTION.name: _Kept()}
        self.last_recv = np.iinfo(np.int64).min
        self.last_book = (UNDEF_PRICE, UNDEF_PRICE, 0, 0)
        self.lat_carry: tuple | None = None
        self.seg = 0
        # the size of every non-empty level of the current segment (the size a depth row replaces)
        self.last_qty: dict[int, float] = {}
        # the level index's carry: the last depth row's size of each non-empty level before carried_upto
        self.c_seg, self.c_key, self.c_qty = _EMPTY_I, _EMPTY_I, _EMPTY_F
        self.carried_upto = 0
        self.dropped = 0
        self.lv = (_EMPTY_I, _EMPTY_I, _EMPTY_I, _EMPTY_F)
        self.instrument: tuple[str, str] | None = None

    def __len__(self) -> int:
        return self.cols.n

    def append(self, tables: dict[str, pa.Table], *, final: bool = False) -> int:
        """Add the next micro-batch (``book_delta``, ``trade``, ``signal``, ``prediction`` tables of
        this instrument).

        Rows stamped with the batch's largest ``ts_recv_ns`` are kept for the next call unless
        ``final``. Returns the number of rows added to the feed.

        Raises:
            InputError: ``order_event`` rows (paper trading runs on L2 books), or another instrument.
        """
        if ORDER_EVENT.name in tables and tables[ORDER_EVENT.name].num_rows:
            raise InputError("paper trading runs on L2 books (book_delta); this batch holds order_event rows")
        merged = {}
        for name in (BOOK_DELTA.name, TRADE.name, SIGNAL.name, PREDICTION.name):
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
            parts.append({"ts_recv": _col(deltas, "ts_recv_ns"), "ts_event": _col(deltas, "ts_event_ns"),
                          "kind": kind,
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
        for name, code, side in ((SIGNAL.name, core.K_SIGNAL, "side"),
                                 (PREDICTION.name, core.K_PREDICTION, "predicted")):
            t = tables.get(name)
            if t is not None and t.num_rows:
                m = t.num_rows
                parts.append(_extra(t, np.full(m, code), _col(t, side), np.zeros(m, np.int64),
                                    np.zeros(m, np.int64), first=self.kept[name].add(t)))
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
        t_exch, self.lat_carry = self.latency.stream_times(t_local, cols["ts_event"].astype(np.int64),
                                                           self.lat_carry)
        self.cols.append({
            "t_exch": t_exch, "t_local": t_local, "kind": kind,
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
        last = self.last_qty
        for i in np.flatnonzero((kind == core.K_DEPTH) | (kind == core.K_CLEAR)).tolist():
            if kind[i] == core.K_CLEAR:
                last.clear()  # a new segment: every level starts empty
                continue
            level = int(key[i])
            prev[i] = last.get(level, 0.0)
            if qty[i] == 0.0:
                last.pop(level, None)  # an empty level and an unknown one both replace 0
            else:
                last[level] = float(qty[i])
        return prev

    def feed(self, exchange_row: int) -> Feed:
        """The engine's view of every row so far, with the level index for queries at rows >=
        ``exchange_row - 1`` (the exchange has processed the rows before ``exchange_row``)."""
        v = self.cols.view
        self._index(max(exchange_row - 1, 0))
        lv_seg, lv_key, lv_row, lv_qty = self.lv
        return Feed(level="l2", t_exch=v("t_exch"), t_local=v("t_local"), kind=v("kind"), side=v("side"),
                    px=v("px"), qty=v("qty"), oid=v("oid"), action=v("action"), bid_ticks=v("bid_ticks"),
                    ask_ticks=v("ask_ticks"), bid_qty=v("bid_qty"), ask_qty=v("ask_qty"), pub=v("pub"),
                    source_row=v("source_row"), prev_qty=v("prev_qty"), lv_seg=lv_seg, lv_key=lv_key,
                    lv_row=lv_row, lv_qty=lv_qty, tick_nanos=self.tick, lot=self.lot_nanos / NANOS,
                    signals=self.kept[SIGNAL.name].table, predictions=self.kept[PREDICTION.name].table)

    def drop_before(self, row: int) -> None:
        """Forget the rows before ``row`` (the engine will not read them again); row ``row`` becomes 0.

        The level index keeps their sizes in its carry; the signal table keeps the rows from the
        first kept signal row on.
        """
        row = min(row, len(self))
        if row <= 0:
            return
        self._carry(row)
        self.cols.drop(row)
        self.carried_upto -= row
        self.dropped += row
        kind, src = self.cols.view("kind"), self.cols.view("source_row")
        self.kept[SIGNAL.name].drop(kind, src, core.K_SIGNAL)
        self.kept[PREDICTION.name].drop(kind, src, core.K_PREDICTION)

    def retained(self) -> dict[str, int]:
        """Sizes of what the feed holds (rows kept, buffer bytes, levels carried): the memory test's
        and the bench's view."""
        return {"rows": len(self), "buffer_bytes": self.cols.nbytes(), "levels": len(self.last_qty),
                "carried_levels": int(self.c_key.size), "index_entries": int(self.lv[0].size),
                **{f"{k}_rows": 0 if v.table is None else v.table.num_rows for k, v in self.kept.items()}}

    def _carry(self, upto: int) -> None:
        # fold the depth rows in [carried_upto, upto) into the carry: one (segment, level, size) each
        if upto <= self.carried_upto:
            return
        kind, seg, key, qty = (self.cols.view(k) for k in ("kind", "seg", "lvkey", "qty"))
        old = np.arange(self.carried_upto, upto)
        old = old[kind[old] == core.K_DEPTH]
        c_seg = np.concatenate([self.c_seg, seg[old]])
        c_key = np.concatenate([self.c_key, key[old]])
        c_qty = np.concatenate([self.c_qty, qty[old]])
        order = np.arange(c_seg.size)  # carry first, then rows: the last of a level wins
        order = order[np.lexsort((order, c_key, c_seg))]
        s, k = c_seg[order], c_key[order]
        last = np.ones(order.size, bool)
        last[:-1] = (s[1:] != s[:-1]) | (k[1:] != k[:-1])
        keep = order[last]
        now_seg = int(seg[upto]) if upto < len(seg) else self.seg
        # a level of an earlier segment is never queried again, and an empty one answers 0 anyway
        keep = keep[(c_seg[keep] >= now_seg) & (c_qty[keep] != 0.0)]
        self.c_seg, self.c_key, self.c_qty = c_seg[keep], c_key[keep], c_qty[keep]
        self.carried_upto = upto

    def _index(self, upto: int) -> None:
        # the carried size of each level before ``upto`` plus every depth row from there: a query
        # at a row >= upto finds the same size as in the whole feed's level_index
        upto = max(upto, self.carried_upto)
        self._carry(upto)
        kind, seg, key, qty = (self.cols.view(k) for k in ("kind", "seg", "lvkey", "qty"))
        rest = np.arange(upto, len(kind))
        rest = rest[kind[rest] == core.K_DEPTH]
        # carried entries stand at row -1: before every row a query can name
        rows = np.concatenate([np.full(self.c_seg.size, -1, np.int64), rest])
        l_seg = np.concatenate([self.c_seg, seg[rest]])
        l_key = np.concatenate([self.c_key, key[rest]])
        l_qty = np.concatenate([self.c_qty, qty[rest]])
        order = np.lexsort((rows, l_key, l_seg))
        self.lv = (l_seg[order], l_key[order], rows[order], l_qty[order])


def _extra(table: pa.Table, kind: np.ndarray, side: np.ndarray, price: np.ndarray, size: np.ndarray,
           first: int = 0) -> dict[str, np.ndarray]:
    n = table.num_rows
    undef = np.full(n, UNDEF_PRICE, np.int64)
    return {"ts_recv": _col(table, "ts_recv_ns"), "ts_event": _col(table, "ts_event_ns"), "kind": kind,
            "side": side.astype(np.int64),
            "price": price.astype(np.int64), "size": size.astype(np.int64), "action": np.zeros(n, np.int64),
            "pub": np.zeros(n, bool), "src": first + np.arange(n), "bid": undef, "ask": undef.copy(),
            "bsz": np.full(n, -1, np.int64), "asz": np.full(n, -1, np.int64)}
