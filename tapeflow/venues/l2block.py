"""A block of depth diffs through their sequence chains at once: :class:`~tapeflow.venues.l2sync.SeqChain`
without a Python call per diff.

:func:`chain_block` walks the block's diffs in order in a compiled loop over the chains' states
(synced: link or gap; waiting for the diff that bridges a snapshot: superseded, bridge or gap),
with the same flags and counts as ``SeqChain.update``, and writes their rows as arrays. Only
diffs of an instrument that waits for a snapshot go through ``SeqChain.update`` one by one (it
buffers them), at their place in the block, so rows keep the order a diff-by-diff pass gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from tapeflow.schemas.records import ASK, BID, F_GAP, F_LAST, F_SUPERSEDED, L2_DELETE, L2_SET
from tapeflow.venues.columns import Columns
from tapeflow.venues.l2sync import SYNCED, WAIT_BRIDGE, WAIT_SNAPSHOT, ChainStats, L2Message, SeqChain

_LINKED, _BRIDGE_GAP, _LINK_GAP = 0, 1, 2


@dataclass
class DiffBlock:
    """Depth diffs in arrival order, as arrays (one entry per diff unless said).

    Attributes:
        chains: the chain of each key (``key`` indexes it).
        key: the diff's chain.
        first, last: update ids ``U``/``u``; prev: ``pu``, -1 where the venue sends none.
        ts_event_ns, ts_recv_ns: times of each diff.
        level_at, bids, asks: the diff's levels are ``prices/sizes[level_at:level_at+bids+asks]``,
            bids first.
        prices, sizes: every level, nanos.
        venues, symbols: per key, the venue and symbol (row strings).
    """

    chains: list[SeqChain]
    key: np.ndarray
    first: np.ndarray
    last: np.ndarray
    prev: np.ndarray
    ts_event_ns: np.ndarray
    ts_recv_ns: np.ndarray
    level_at: np.ndarray
    bids: np.ndarray
    asks: np.ndarray
    prices: np.ndarray
    sizes: np.ndarray
    venues: Sequence[str]
    symbols: Sequence[str]

    def message(self, i: int) -> L2Message:
        """Diff ``i`` as the per-diff path's message."""
        k = int(self.key[i])
        at, nb, na = int(self.level_at[i]), int(self.bids[i]), int(self.asks[i])
        prev = int(self.prev[i])
        return L2Message(self.venues[k], self.symbols[k], int(self.first[i]), int(self.last[i]),
                         prev if prev >= 0 else None, int(self.ts_event_ns[i]), int(self.ts_recv_ns[i]),
                         [BID] * nb + [ASK] * na, self.prices[at:at + nb + na].tolist(),
                         self.sizes[at:at + nb + na].tolist())


@njit(cache=True, nogil=True)
def _walk(key: np.ndarray, first: np.ndarray, last: np.ndarray, prev: np.ndarray, levels: np.ndarray,
          state: np.ndarray, prev_last: np.ndarray, snapshot_id: np.ndarray, carry: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(key)
    flags = np.zeros(n, np.uint8)
    scalar = np.zeros(n, np.bool_)
    gap = np.full(n, -1, np.int8)
    gap_after = np.zeros(n, np.int64)  # the id the chain was at when it broke
    counts = np.zeros(3, np.int64)  # checked, chained, superseded
    for i in range(n):
        k = key[i]
        st = state[k]
        if st == WAIT_SNAPSHOT:
            scalar[i] = True
            continue
        f = 0
        spot = prev[i] < 0
        if st == WAIT_BRIDGE:
            target = snapshot_id[k] + (1 if spot else 0)
            if last[i] < target:
                f = F_SUPERSEDED
                counts[2] += 1
            else:
                counts[0] += 1
                if first[i] <= target:
                    counts[1] += 1
                    state[k] = SYNCED
                    prev_last[k] = last[i]
                else:
                    f = F_GAP
                    gap[i] = _BRIDGE_GAP
                    state[k] = WAIT_SNAPSHOT
        else:
            counts[0] += 1
            if (first[i] == prev_last[k] + 1) if spot else (prev[i] == prev_last[k]):
                counts[1] += 1
                prev_last[k] = last[i]
            else:
                f = F_GAP
                gap[i] = _LINK_GAP
                gap_after[i] = prev_last[k]
                state[k] = WAIT_SNAPSHOT
        # a diff without levels writes no row: its gap flag rides on the chain's next row
        f |= carry[k]
        carry[k] = (f & F_GAP) if levels[i] == 0 else 0
        flags[i] = f
    return flags, scalar, gap, gap_after, counts


def chain_block(block: DiffBlock, stats: ChainStats, out: Columns) -> np.ndarray:
    """Apply ``block``'s diffs to their chains in order and write their rows to ``out``.

    Same rows, flags and ``stats`` as ``chain.update(message, out)`` on each diff in turn.

    Returns:
        Per diff, whether its chain buffered it (its book waits for a snapshot): its rows come later.
    """
    n = len(block.key)
    if n == 0:
        return np.zeros(0, np.bool_)
    chains = block.chains
    state = np.array([c.state for c in chains], np.int64)
    prev_last = np.array([c.prev_last for c in chains], np.int64)
    snapshot_id = np.array([c.snapshot_id for c in chains], np.int64)
    carry = np.array([c._carry_gap for c in chains], np.int64)
    levels = block.bids + block.asks
    flags, scalar, gap, gap_after, counts = _walk(block.key, block.first, block.last, block.prev, levels,
                                                  state, prev_last, snapshot_id, carry)
    for k, chain in enumerate(chains):
        chain.state, chain.prev_last, chain._carry_gap = int(state[k]), int(prev_last[k]), int(carry[k])
    stats.checked += int(counts[0])
    stats.chained += int(counts[1])
    stats.superseded += int(counts[2])
    for i in np.flatnonzero(gap >= 0).tolist():
        m = block.message(i)
        k = int(block.key[i])
        why = (f"expected the diff after id {int(gap_after[i])}" if gap[i] == _LINK_GAP
               else f"no diff bridges snapshot id {chains[k].snapshot_id}")
        stats.gaps.append(f"{m.venue} {m.symbol}: {why}, got first={m.first_id} last={m.last_id} "
                          f"prev={m.prev_id}")
    start = 0
    for i in [*np.flatnonzero(scalar).tolist(), n]:
        if i > start:
            _write(block, flags, start, i, out)
        if i < n:
            chains[int(block.key[i])].update(block.message(i), out)
        start = i + 1
    return scalar


@njit(cache=True, nogil=True)
def _expand(level_at: np.ndarray, bids: np.ndarray, asks: np.ndarray, last: np.ndarray, ts_event: np.ndarray,
            ts_recv: np.ndarray, flags: np.ndarray, key: np.ndarray, prices: np.ndarray, sizes: np.ndarray
            ) -> tuple:
    # one row per level: the message's times, id and key repeated, its flags on its first/last row
    rows = 0
    for i in range(len(bids)):
        rows += bids[i] + asks[i]
    t_event = np.empty(rows, np.int64)
    t_recv = np.empty(rows, np.int64)
    sequence = np.empty(rows, np.int64)
    side = np.empty(rows, np.uint8)
    action = np.empty(rows, np.uint8)
    price = np.empty(rows, np.int64)
    size = np.empty(rows, np.int64)
    row_flags = np.empty(rows, np.uint8)
    row_key = np.empty(rows, np.int64)
    r = 0
    for i in range(len(bids)):
        k = bids[i] + asks[i]
        if k == 0:
            continue
        base = flags[i] & F_SUPERSEDED
        at = level_at[i]
        for j in range(k):
            t_event[r + j] = ts_event[i]
            t_recv[r + j] = ts_recv[i]
            sequence[r + j] = last[i]
            side[r + j] = BID if j < bids[i] else ASK
            z = sizes[at + j]
            action[r + j] = L2_DELETE if z == 0 else L2_SET
            price[r + j] = prices[at + j]
            size[r + j] = z
            row_flags[r + j] = base
            row_key[r + j] = key[i]
        row_flags[r] |= flags[i] & F_GAP
        row_flags[r + k - 1] |= F_LAST
        r += k
    return rows, t_event, t_recv, sequence, side, action, price, size, row_flags, row_key


def _write(block: DiffBlock, flags: np.ndarray, lo: int, hi: int, out: Columns) -> None:
    rows, t_event, t_recv, sequence, side, action, price, size, row_flags, row_key = _expand(
        block.level_at[lo:hi], block.bids[lo:hi], block.asks[lo:hi], block.last[lo:hi],
        block.ts_event_ns[lo:hi], block.ts_recv_ns[lo:hi], flags[lo:hi], block.key[lo:hi], block.prices,
        block.sizes)
    if rows:
        keys = block.key[lo:hi]
        venue, symbol = _strings(block.venues, keys, row_key), _strings(block.symbols, keys, row_key)
        out.add_arrays(rows, ts_event_ns=t_event, ts_recv_ns=t_recv, venue=venue, symbol=symbol,
                       sequence=sequence, side=side, action=action, price_nanos=price, size_nanos=size,
                       flags=row_flags)


def _strings(names: Sequence[str], keys: np.ndarray, row_key: np.ndarray) -> str | pa.Array:
    """Per row, ``names[key]`` of its diff: one value when every diff shares it."""
    first = names[int(keys[0])]
    if all(names[k] == first for k in set(keys.tolist())):
        return first
    return pa.array(names, pa.string()).take(pa.array(row_key))
