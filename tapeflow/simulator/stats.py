"""The SIMULATOR.md stylized facts, computed from decoded ``sim`` records (or any L3 feed).

The equity figures of SIMULATOR.md come from a LOBSTER level-1 file, which holds only the
messages that touch the best level, so ``touch_only=True`` keeps the same subset here: adds at or
inside the touch, deletes and executions at the touch, and hidden executions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kernels.sim_book import l2_touch
from tapeflow.schemas.records import ASK, BID, F_LAST, F_SNAPSHOT, L3_ADD, L3_CANCEL, L3_FILL

_NS = 1_000_000_000


@dataclass
class Messages:
    """One row per venue message (snapshot excluded), with the book after it.

    ``kind``: 0 add, 1 delete, 2 visible execution, 3 hidden execution. ``touch``: the message
    touched the best level. ``price`` and ``*_px`` are 1e-9 units (-1 for an empty side).
    """

    ts_ns: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    touch: np.ndarray
    bid_px: np.ndarray
    ask_px: np.ndarray
    bid_sz: np.ndarray
    ask_sz: np.ndarray
    valid: np.ndarray


def messages(order_events: pa.Table, book_deltas: pa.Table) -> Messages:
    """Collapse ``order_event`` rows to venue messages and attach the book before/after each."""
    col = {
        n: order_events.column(n).to_numpy()
        for n in ("ts_event_ns", "sequence", "action", "side", "price_nanos", "size_nanos", "flags")
    }
    live = (col["flags"] & F_SNAPSHOT) == 0
    last = np.flatnonzero(live & ((col["flags"] & F_LAST) != 0))
    fill_seqs = col["sequence"][col["action"] == L3_FILL]
    act = col["action"][last]
    is_exec = np.isin(col["sequence"][last], fill_seqs)
    kind = np.where(act == L3_ADD, 0, np.where(is_exec, 2, np.where(act == L3_CANCEL, 1, 3)))
    side = col["side"][last]
    price = col["price_nanos"][last]
    # book before/after each delta row, on price ranks (no tick size needed)
    dp = book_deltas.column("price_nanos").to_numpy()
    uniq, rank = np.unique(dp, return_inverse=True)
    ds = (book_deltas.column("side").to_numpy() == ASK).astype(np.int8)
    dsz = np.where(
        book_deltas.column("action").to_numpy() == ord("R"), 0, book_deltas.column("size_nanos").to_numpy()
    ).astype(np.int64)
    bid, ask, bsz, asz = l2_touch(ds, rank.astype(np.int64), dsz, len(uniq))
    dseq = book_deltas.column("sequence").to_numpy()
    # message i's book: state after the last delta with sequence <= its own
    msg_seq = col["sequence"][last]
    pos_after = np.searchsorted(dseq, msg_seq, side="right")
    pos_before = np.searchsorted(dseq, msg_seq, side="left")
    grid = len(uniq)
    ext = np.append(uniq, 0)

    def px(r: np.ndarray) -> np.ndarray:
        return np.where((r < 0) | (r >= grid), -1, ext[np.clip(r, 0, grid)])

    bb_before, ba_before = px(bid[pos_before]), px(ask[pos_before])
    touch = np.where(
        kind == 0,
        np.where(side == BID, (bb_before < 0) | (price >= bb_before), (ba_before < 0) | (price <= ba_before)),
        np.where(kind == 1, np.where(side == BID, price == bb_before, price == ba_before), True),
    )
    bb, ba = px(bid[pos_after]), px(ask[pos_after])
    return Messages(
        ts_ns=col["ts_event_ns"][last],
        kind=kind,
        side=side,
        price=price,
        size=col["size_nanos"][last],
        touch=touch,
        bid_px=bb,
        ask_px=ba,
        bid_sz=bsz[pos_after],
        ask_sz=asz[pos_after],
        valid=(bb >= 0) & (ba >= 0),
    )


def acf(x: np.ndarray, lag: int) -> float:
    """Sample autocorrelation at ``lag``."""
    x = np.asarray(x, np.float64) - np.mean(x)
    denom = float(np.dot(x, x))
    return float(np.dot(x[:-lag], x[lag:]) / denom) if denom > 0 and len(x) > lag else 0.0


def excess_kurtosis(x: np.ndarray) -> float:
    """Excess kurtosis (0 for a normal law)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    var = float(np.mean(x * x))
    return float(np.mean(x**4) / var**2 - 3.0) if var > 0 else 0.0


def aggressor_signs_and_sizes(trades: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Collapse executions into aggressor orders (same time, same side): signs (+1 buy) and sizes."""
    ts = trades.column("ts_event_ns").to_numpy()
    sign = np.where(trades.column("aggressor_side").to_numpy() == BID, 1, -1)
    size = trades.column("size_nanos").to_numpy()
    if not len(ts):
        return sign, size
    start = np.r_[True, (np.diff(ts) != 0) | (np.diff(sign) != 0)]
    idx = np.flatnonzero(start)
    return sign[idx], np.add.reduceat(size, idx)


def returns(ts_ns: np.ndarray, mid: np.ndarray, step_ns: int) -> np.ndarray:
    """Log returns of the mid sampled at the end of every ``step_ns`` (last known mid)."""
    grid = np.arange(ts_ns[0] + step_ns, ts_ns[-1], step_ns)
    idx = np.searchsorted(ts_ns, grid, side="right") - 1
    m = mid[idx]
    return np.diff(np.log(m))


def realism(
    order_events: pa.Table,
    trades: pa.Table,
    book_deltas: pa.Table,
    *,
    tick_nanos: int,
    lot_nanos: int,
    touch_only: bool,
) -> dict[str, float]:
    """All SIMULATOR.md statistics for one instrument.

    Args:
        order_events, trades, book_deltas: decoded tables of ONE instrument, in order.
        tick_nanos: price tick (spreads in ticks).
        lot_nanos: a round lot for the round-lot share (100 shares: 100e9), any size unit else.
        touch_only: keep only messages touching the best level (LOBSTER level 1).
    """
    m = messages(order_events, book_deltas)
    keep = m.touch if touch_only else np.ones(len(m.kind), bool)
    kind, ts = m.kind[keep], m.ts_ns[keep]
    out: dict[str, float] = {}
    for k, name in enumerate(("add", "delete", "exec", "hidden")):
        out[f"mix_{name}"] = float(np.mean(kind == k))
    out["cancel_to_trade_msgs"] = float(np.sum(kind == 1) / max(1, np.sum(kind >= 2)))
    removed = float(m.size[(m.kind == 1)].sum())
    traded = float(trades.column("size_nanos").to_numpy().sum())
    out["removed_to_traded_volume"] = removed / max(1.0, traded)
    dt = np.diff(ts) / 1e9
    out["iet_mean_s"] = float(dt.mean())
    out["iet_cv"] = float(dt.std() / dt.mean())
    out["iet_share_below_1ms"] = float(np.mean(dt < 1e-3))
    v = keep & m.valid
    spread = (m.ask_px[v] - m.bid_px[v]) / tick_nanos
    out["spread_median_ticks"] = float(np.median(spread))
    out["spread_one_tick_share"] = float(np.mean(spread == 1))
    out["depth_best_median"] = float(np.median(np.concatenate([m.bid_sz[v], m.ask_sz[v]])))
    adds = m.size[m.kind == 0]
    out["order_size_median"] = float(np.median(adds))
    out["order_size_p90"] = float(np.quantile(adds, 0.9))
    out["round_lot_share"] = float(np.mean(adds % lot_nanos == 0))
    signs, agg_sizes = aggressor_signs_and_sizes(trades)
    out["trade_size_median"] = float(np.median(agg_sizes))
    out["trade_size_p90"] = float(np.quantile(agg_sizes, 0.9))
    out["sign_acf_1"] = acf(signs, 1)
    out["sign_acf_10"] = acf(signs, 10)
    hidden = m.kind == 3
    out["hidden_volume_share"] = float(m.size[hidden].sum() / max(1, m.size[m.kind >= 2].sum()))
    mid = (m.bid_px[m.valid] + m.ask_px[m.valid]) / 2.0
    r = returns(m.ts_ns[m.valid], mid, _NS)
    out["kurtosis_1s"] = excess_kurtosis(r)
    abs_r = np.abs(r)
    for lag in (1, 2, 5, 10):
        out[f"abs_ret_acf_{lag}"] = acf(abs_r, lag)
    out["abs_ret_acf_mean_1_10"] = float(np.mean([acf(abs_r, lag) for lag in range(1, 11)]))
    out["returns_1s"] = float(len(r))
    # drift: the share of up moves among the 1 s mid moves (a martingale's ~0.5), and the whole
    # path's move in standard deviations of a random walk of the same 1 s returns
    moves = r[r != 0]
    out["up_share_1s"] = float(np.mean(moves > 0)) if len(moves) else 0.5
    walk = r.std() * np.sqrt(len(r)) if len(r) > 1 else 0.0
    out["net_move_sigmas"] = float(r.sum() / walk) if walk > 0 else 0.0
    out["messages"] = float(len(kind))
    return out


def l2_event_mix(book_deltas: pa.Table) -> dict[str, float]:
    """Binance-style level-update mix: new level, increase, decrease, delete (snapshot excluded)."""
    flags = book_deltas.column("flags").to_numpy()
    live = (flags & F_SNAPSHOT) == 0
    side = book_deltas.column("side").to_numpy()
    price = book_deltas.column("price_nanos").to_numpy()
    size = book_deltas.column("size_nanos").to_numpy()
    key = price * 2 + (side == ASK)
    order = np.argsort(key, kind="stable")
    k_sorted = key[order]
    prev = np.empty(len(size), np.int64)
    prev_sorted = np.r_[0, size[order][:-1]]
    prev_sorted[np.r_[True, k_sorted[1:] != k_sorted[:-1]]] = 0
    prev[order] = prev_sorted
    prev, size = prev[live], size[live]
    n = max(1, len(size))
    return dict(
        l2_new=float(np.sum((prev == 0) & (size > 0)) / n),
        l2_increase=float(np.sum((prev > 0) & (size > prev)) / n),
        l2_decrease=float(np.sum((size > 0) & (size < prev)) / n),
        l2_delete=float(np.sum((prev > 0) & (size == 0)) / n),
    )
