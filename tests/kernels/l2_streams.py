"""Seeded random L2 event streams for the kernel tests (arrays, as the kernels take them)."""

from __future__ import annotations

import numpy as np

from tapeflow.schemas.records import (
    ASK,
    BID,
    F_GAP,
    F_LAST,
    F_SNAPSHOT,
    F_SUPERSEDED,
    L2_CLEAR,
    L2_DELETE,
    L2_SET,
    NO_SIDE,
)

Stream = dict[str, np.ndarray]


def snapshot_block(rng: np.random.Generator, mid_ticks: int, tick_nanos: int, depth: int) -> Stream:
    """A clear followed by ``depth`` levels a side around ``mid_ticks``, the last row F_LAST."""
    bid_t = mid_ticks - 1 - np.sort(rng.choice(3 * depth, depth, replace=False))
    ask_t = mid_ticks + 1 + np.sort(rng.choice(3 * depth, depth, replace=False))
    n = 1 + 2 * depth
    side = np.array([NO_SIDE] + [BID] * depth + [ASK] * depth, np.uint8)
    action = np.array([L2_CLEAR] + [L2_SET] * (2 * depth), np.uint8)
    price = np.concatenate([[0], bid_t, ask_t]).astype(np.int64) * tick_nanos
    size = np.concatenate([[0], rng.integers(1, 1000, 2 * depth)]).astype(np.int64) * 1_000_000
    flags = np.full(n, F_SNAPSHOT, np.uint8)
    flags[-1] |= F_LAST
    return {"side": side, "action": action, "price": price, "size": size, "flags": flags}


def random_walk(seed: int, n: int, *, tick_nanos: int = 100_000_000, mid_ticks: int = 600_000,
                depth: int = 20, spread_ticks: int = 30, far_frac: float = 0.0, far_ticks: int = 10**6,
                gap_frac: float = 0.0, sup_frac: float = 0.0, crossing: bool = False,
                drift_ticks: int = 1, block: int = 256) -> Stream:
    """A snapshot then about ``n`` diffs on a random walk around the touch.

    The mid moves once per ``block`` diffs; without ``crossing`` the levels the move would cross
    are deleted first (as a venue does), so the book stays uncrossed.

    Args:
        far_frac: share of updates far from the touch (``far_ticks`` away: outside any window).
        gap_frac: share of diffs carrying F_GAP; a fresh snapshot follows the block.
        sup_frac: share of rows flagged F_SUPERSEDED (must be ignored).
        crossing: let levels land on the wrong side of the mid (crossed books).
        drift_ticks: largest move of the mid per block, in ticks.
    """
    rng = np.random.default_rng(seed)
    first = snapshot_block(rng, mid_ticks, tick_nanos, depth)
    parts = [first]
    live = _live(first, tick_nanos, depth)
    mid = mid_ticks
    rows = 0
    while rows < n:
        m = min(block, n - rows)
        mid += int(rng.integers(-drift_ticks, drift_ticks + 1))
        if not crossing:
            stale = [(BID, t) for t in live[0] if t >= mid] + [(ASK, t) for t in live[1] if t <= mid]
            if stale:
                parts.append({"side": np.array([s for s, _ in stale], np.uint8),
                              "action": np.full(len(stale), L2_DELETE, np.uint8),
                              "price": np.array([t for _, t in stale], np.int64) * tick_nanos,
                              "size": np.zeros(len(stale), np.int64),
                              "flags": np.zeros(len(stale), np.uint8)})
                live[0] -= {t for s, t in stale if s == BID}
                live[1] -= {t for s, t in stale if s == ASK}
        is_bid = rng.random(m) < 0.5
        offset = rng.integers(-spread_ticks // 2 if crossing else 1, spread_ticks, m)
        far = rng.random(m) < far_frac
        offset = np.where(far, far_ticks + rng.integers(0, 1000, m), offset)
        ticks = np.where(is_bid, mid - offset, mid + offset)
        sizes = np.where(rng.random(m) < 0.3, 0, rng.integers(1, 1000, m)) * 1_000_000
        action = np.where(rng.random(m) < 0.1, L2_DELETE, L2_SET).astype(np.uint8)
        flags = np.where(rng.random(m) < 0.5, F_LAST, 0).astype(np.uint8)
        flags[rng.random(m) < sup_frac] |= F_SUPERSEDED
        gaps = rng.random(m) < gap_frac
        flags[gaps] |= F_GAP
        parts.append({"side": np.where(is_bid, BID, ASK).astype(np.uint8), "action": action,
                      "price": ticks.astype(np.int64) * tick_nanos, "size": sizes.astype(np.int64),
                      "flags": flags})
        for b, t, z, a, f in zip(is_bid, ticks.tolist(), sizes, action, flags, strict=True):
            if f & F_SUPERSEDED:
                continue
            book = live[0 if b else 1]
            if a == L2_DELETE or z == 0:
                book.discard(t)
            else:
                book.add(t)
        if gaps.any():
            snap = snapshot_block(rng, mid, tick_nanos, depth)
            parts.append(snap)
            live = _live(snap, tick_nanos, depth)
        rows += m
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _live(snap: Stream, tick_nanos: int, depth: int) -> list[set[int]]:
    ticks = (snap["price"] // tick_nanos).tolist()
    return [set(ticks[1:1 + depth]), set(ticks[1 + depth:])]


def args(s: Stream) -> tuple[np.ndarray, ...]:
    """Positional kernel arguments: side, action, price, size, flags."""
    return s["side"], s["action"], s["price"], s["size"], s["flags"]
