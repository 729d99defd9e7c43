"""L2 book rebuild throughput: our numba and JAX kernels vs hftbacktest, NautilusTrader and a dict.

Every implementation gets the same events (one instrument, arrival order). Ours produce the BBO
and status after every event; hftbacktest replays its local depth (best bid/ask maintained per
event inside, not exported; its ROI vector drops levels outside +-50% of the mid, and its hash
map gets only those levels because it walks tick by tick to far ones); Nautilus applies prebuilt
``OrderBookDelta`` objects (building them is not timed); the dict book tracks the best price per
event in plain Python.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench import Report, best_time
from kernels import _l2state
from kernels.codes import ASK, BID, F_LAST, F_SNAPSHOT, F_SUPERSEDED
from kernels.codes import L2_CLEAR as CLEAR
from kernels.codes import L2_DELETE as DELETE
from kernels.codes import L2_SET as SET
from kernels.l2book_numba import Stepper
from kernels.l2book_numba import run as run_numba

BATCH = 10_240


def _real_events() -> tuple[dict[str, np.ndarray], str] | None:
    path = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / "binance/usdm_btcusdt_20240808.gz"
    if not path.exists():
        return None
    try:
        from tapeflow.venues import get_format
        from tapeflow.venues.base import merge

        deltas = merge(list(get_format("binance").decode([path])))["book_delta"]
    except Exception as exc:  # noqa: BLE001 - the bench falls back to synthetic data, saying why
        print(f"bench.l2: Binance decode unavailable ({exc!r}); using a synthetic stream")
        return None
    cols = {"side": "side", "action": "action", "price": "price_nanos", "size": "size_nanos",
            "flags": "flags"}
    ev = {k: deltas.column(v).to_numpy() for k, v in cols.items()}
    n = len(ev["side"])
    return ev, f"real Binance USD-M BTCUSDT capture ({path.name}, decoded by tapeflow), {n:,} deltas"


def _synthetic_events(n: int = 500_000, seed: int = 7) -> dict[str, np.ndarray]:
    """A seeded random walk: snapshot of 200 levels a side, then diffs within 50 ticks of the mid."""
    rng = np.random.default_rng(seed)
    tick = 100_000_000
    mid = 600_000 + np.cumsum(rng.integers(-1, 2, n)) // 16
    is_bid = rng.random(n) < 0.5
    off = rng.integers(1, 50, n)
    snap_t = np.concatenate([600_000 - np.arange(1, 201), 600_000 + np.arange(1, 201)])
    price = np.concatenate([snap_t, np.where(is_bid, mid - off, mid + off)]) * tick
    side = np.concatenate([np.full(200, BID), np.full(200, ASK), np.where(is_bid, BID, ASK)]).astype(np.uint8)
    diff_size = np.where(rng.random(n) < 0.3, 0, rng.integers(1, 1000, n))
    size = np.concatenate([rng.integers(1, 1000, 400), diff_size])
    flags = np.concatenate([np.full(400, F_SNAPSHOT), np.zeros(n)]).astype(np.uint8)
    flags[399] |= F_LAST
    return {"side": side, "action": np.full(len(side), SET, np.uint8), "price": price.astype(np.int64),
            "size": size.astype(np.int64) * 1_000_000, "flags": flags}


def _cols(ev: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return ev["side"], ev["action"], ev["price"], ev["size"], ev["flags"]


def _batches(run, ev: dict[str, np.ndarray], batch: int, limit: int | None = None) -> None:  # noqa: ANN001
    cols = _cols(ev)
    n = len(cols[0]) if limit is None else limit
    state = _l2state.new_state()
    for a in range(0, n, batch):
        state, _ = run(state, *(c[a:min(a + batch, n)] for c in cols))


def _ours(report: Report, ev: dict[str, np.ndarray]) -> None:
    n = len(ev["side"])
    _batches(run_numba, ev, BATCH, 20_000)  # compile outside the timing
    t = best_time(lambda: _batches(run_numba, ev, BATCH))
    report.add("tapeflow numba, 10k batches", n, t, ours=True, note="BBO + status per event, exact")
    single = min(n, 50_000)
    rows = list(zip(*(c[:single].tolist() for c in _cols(ev)), strict=True))

    def stepped() -> None:
        step = Stepper().step
        for r in rows:
            step(*r)

    t = best_time(stepped, repeats=2)
    report.add("tapeflow numba Stepper, 1 event/call", single, t, ours=True,
               note=f"{t[1] / single * 1e6:.2f} us/call from Python (wall)")
    from kernels.l2book import run as run_jax

    _batches(run_jax, ev, BATCH)  # compile every bucket the stream's halts and tails need
    t = best_time(lambda: _batches(run_jax, ev, BATCH), repeats=2)
    report.add("tapeflow jax lax.scan, 10k batches", n, t, ours=True, note="BBO + status per event, exact")
    _batches(run_jax, ev, 1, 10)
    t = best_time(lambda: _batches(run_jax, ev, 1, 300), repeats=1)
    report.add("tapeflow jax, 1 event/call", 300, t, ours=True, note=f"{t[1] / 300 * 1e6:.0f} us/call (wall)")


def _hft_events(ev: dict[str, np.ndarray]) -> np.ndarray:
    from hftbacktest.binding import event_dtype
    from hftbacktest.types import (
        BUY_EVENT,
        DEPTH_CLEAR_EVENT,
        DEPTH_EVENT,
        LOCAL_EVENT,
        SELL_EVENT,
    )

    keep = (ev["flags"] & F_SUPERSEDED) == 0
    side, action = ev["side"][keep], ev["action"][keep]
    out = np.zeros(int(keep.sum()), event_dtype)
    kind = np.where(action == CLEAR, DEPTH_CLEAR_EVENT, DEPTH_EVENT).astype(np.uint64)
    direction = np.where(side == BID, BUY_EVENT, SELL_EVENT).astype(np.uint64)
    # local side only: one depth update per event, as ours (EXCH_EVENT would add a second depth)
    out["ev"] = kind | LOCAL_EVENT | direction
    out["exch_ts"] = np.arange(len(out)) * 1000
    out["local_ts"] = out["exch_ts"] + 1
    out["px"] = ev["price"][keep] / 1e9
    out["qty"] = np.where(action == DELETE, 0, ev["size"][keep]) / 1e9
    return out


def _hftbacktest(report: Report, ev: dict[str, np.ndarray], tick: float) -> None:
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, ROIVectorMarketDepthBacktest

    data = _hft_events(ev)
    mid = float(np.median(data["px"]))

    def asset() -> BacktestAsset:
        return (BacktestAsset().data(data).linear_asset(1.0).constant_latency(0, 0)
                .risk_adverse_queue_model().no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0)
                .tick_size(tick).lot_size(0.001).roi_lb(mid * 0.5).roi_ub(mid * 1.5).last_trades_capacity(0))

    full = data
    for name, build in (("hftbacktest ROIVectorMarketDepth", ROIVectorMarketDepthBacktest),
                        ("hftbacktest HashMapMarketDepth", HashMapMarketDepthBacktest)):
        # the hash-map depth walks tick by tick to the next level, and this capture has levels at
        # 1% and 1000% of the mid: it gets the levels within +-50% (what the ROI keeps) instead
        data = full if "ROI" in name else full[(full["px"] > mid * 0.5) & (full["px"] < mid * 1.5)]
        holder: list = []
        # elapse past the last timestamp: the whole stream goes through its depth
        t = best_time(lambda: holder[0].elapse(10**15), repeats=2,  # noqa: B023
                      setup=lambda: holder.__setitem__(slice(None), [build([asset()])]))  # noqa: B023
        report.add(name, len(data), t, ours=False, note=f"local depth replay, {len(data):,} events")


def _nautilus(report: Report, ev: dict[str, np.ndarray], limit: int) -> None:
    from nautilus_trader.model.book import OrderBook
    from nautilus_trader.model.data import BookOrder, OrderBookDelta
    from nautilus_trader.model.enums import BookAction, BookType, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.model.objects import Price, Quantity

    iid = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")
    deltas = []
    for i in range(min(limit, len(ev["side"]))):
        if ev["flags"][i] & F_SUPERSEDED:
            continue
        a, side = int(ev["action"][i]), OrderSide.BUY if ev["side"][i] == BID else OrderSide.SELL
        size = 0 if a == DELETE else int(ev["size"][i])
        act = BookAction.CLEAR if a == CLEAR else (BookAction.DELETE if size == 0 else BookAction.UPDATE)
        order = BookOrder(side, Price(ev["price"][i] / 1e9, 2), Quantity(size / 1e9, 3), 0)
        deltas.append(OrderBookDelta(iid, act, order, 0, i, i, i))

    def apply() -> None:
        book = OrderBook(iid, BookType.L2_MBP)
        for d in deltas:
            book.apply_delta(d)

    report.add("nautilus_trader OrderBook L2_MBP", len(deltas), best_time(apply, repeats=2),
               ours=False, note=f"apply_delta only, first {len(deltas):,} events")


def _dict_book(ev: dict[str, np.ndarray]) -> None:
    books: tuple[dict[int, int], dict[int, int]] = ({}, {})
    best: list[int | None] = [None, None]
    out = []
    for s, a, p, z, f in zip(*(c.tolist() for c in _cols(ev)), strict=True):
        if f & F_SUPERSEDED:
            out.append((best[0], best[1]))
            continue
        if a == CLEAR:
            books[0].clear()
            books[1].clear()
            best = [None, None]
        else:
            r = 0 if s == BID else 1
            book = books[r]
            if a == DELETE or z == 0:
                if book.pop(p, None) is not None and p == best[r]:
                    best[r] = (max(book) if r == 0 else min(book)) if book else None
            else:
                book[p] = z
                if best[r] is None or (p > best[r] if r == 0 else p < best[r]):
                    best[r] = p
        out.append((best[0], best[1]))


def run(report: Report) -> None:
    """Time every L2 implementation on the same event stream."""
    real = _real_events()
    if real is None:
        ev, source = _synthetic_events(), "synthetic seeded random walk around the touch (500k diffs)"
    else:
        ev, source = real
    applied = ev["price"][(ev["action"] != CLEAR) & ((ev["flags"] & F_SUPERSEDED) == 0)]
    tick = _l2state.refine_tick(_l2state.new_state(), applied, np.ones(len(applied), bool))
    report.section("L2 book rebuild (one instrument)")
    report.note(f"events: {source}")
    _ours(report, ev)
    _hftbacktest(report, ev, tick / 1e9)
    _nautilus(report, ev, 100_000)
    n = min(len(ev["side"]), 200_000)
    sub = {k: v[:n] for k, v in ev.items()}
    report.add("plain-Python dict book", n, best_time(lambda: _dict_book(sub), repeats=1), ours=False,
               note=f"BBO per event, first {n:,} events")
