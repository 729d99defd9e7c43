"""L3 kernel (numba) against the plain-Python reference, plus Hypothesis invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.codes import ASK as S
from kernels.codes import BID as B
from kernels.codes import CROSSED, RESYNC, UNDEF_PRICE, VALID
from kernels.codes import F_GAP as GAP
from kernels.codes import F_LAST as LAST
from kernels.codes import F_SNAPSHOT as SNAP
from kernels.codes import F_SUPERSEDED as SUPERSEDED
from kernels.codes import L3_ADD as A
from kernels.codes import L3_CANCEL as C
from kernels.codes import L3_CLEAR as R
from kernels.codes import L3_FILL as F
from kernels.codes import L3_MODIFY as M
from kernels.codes import L3_NONE as N
from kernels.codes import L3_TRADE as T
from kernels.l3book import apply_l3, l3_replay, new_l3_state
from kernels.reference_l3 import (
    ANOM_DUPLICATE_ADD,
    ANOM_SIZE_UNDERFLOW,
    ANOM_UNKNOWN_ORDER,
    l3_replay_reference,
)


def _arrays(rows: list[tuple[int, int, int, int, int, int]]) -> tuple[np.ndarray, ...]:
    """(order_id, action, side, price, size, flags) tuples -> the six kernel arrays."""
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    dtypes = (np.uint64, np.uint8, np.uint8, np.int64, np.int64, np.uint8)
    return tuple(np.array(c, dtype=d) for c, d in zip(cols, dtypes, strict=True))


def _random_stream(seed: int, n: int, n_ids: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    oid = rng.integers(0, n_ids, n).astype(np.uint64) * np.uint64(0x1_0000_0001)  # sparse 64-bit ids
    act = rng.choice(np.frombuffer(b"AAAAACCCMMFTN", np.uint8), n)
    act[rng.random(n) < 0.002] = R
    side = rng.choice(np.frombuffer(b"BBBAAAN", np.uint8), n)
    price = rng.integers(95, 106, n).astype(np.int64) * 250_000_000
    size = rng.integers(0, 12, n).astype(np.int64) * 1_000_000_000
    kinds = np.array([0, LAST, LAST, LAST, SNAP, SNAP | LAST, GAP | LAST, SUPERSEDED], np.uint8)
    flags = rng.choice(kinds, n)
    return oid, act, side, price, size, flags


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("batch_rows", [97, 1 << 20])
def test_kernel_equals_reference_on_random_streams(seed: int, batch_rows: int) -> None:
    args = _random_stream(seed, 6000, 150)
    rows = np.sort(np.random.default_rng(seed).choice(6000, 300, replace=False))
    got = l3_replay(*args, levels=4, snapshot_rows=rows, batch_rows=batch_rows)
    want = l3_replay_reference(*args, levels=4, snapshot_rows=rows)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # the stream must exercise every status and anomaly kind, or the comparison proves little
    assert set(np.unique(want["status"])) == {VALID, RESYNC, CROSSED}
    assert {ANOM_UNKNOWN_ORDER, ANOM_SIZE_UNDERFLOW, ANOM_DUPLICATE_ADD} <= set(np.unique(want["anomaly"]))


def test_growth_and_deletion_keep_every_order_findable() -> None:
    # 50k live orders force several rehashes; cancelling them in random order exercises the
    # backward-shift deletion across long probe runs
    rng = np.random.default_rng(7)
    ids = np.unique(rng.integers(0, 2**63 - 1, 50_000, dtype=np.int64)).astype(np.uint64)
    ids = ids[rng.permutation(len(ids))]
    px = rng.integers(1, 400, len(ids)).astype(np.int64)
    adds = [(int(i), A, B if p < 200 else S, int(p), 5, LAST) for i, p in zip(ids, px, strict=True)]
    cancels = [(int(ids[j]), C, N, 0, 5, LAST) for j in rng.permutation(len(ids))]
    args = _arrays(adds + cancels)
    got = l3_replay(*args, start_synced=True, batch_rows=20_000)
    assert not got["anomaly"].any()
    n = len(ids)
    assert got["bid_px"][n - 1] == px[px < 200].max() and got["ask_px"][n - 1] == px[px >= 200].min()
    assert got["bid_px"][-1] == UNDEF_PRICE and got["ask_sz"][-1] == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_list_is_the_occupied_slots(seed: int) -> None:
    # the dense list (what a re-anchor walks) against the table's own used flags, after every
    # batch of a stream with adds, deletes, clears and snapshots, from 16 slots through rehashes
    args = _random_stream(seed, 4000, 600)
    state = new_l3_state(order_capacity=16)
    for lo in range(0, 4000, 250):
        state, _ = apply_l3(state, *(a[lo:lo + 250] for a in args))
        n = int(state.meta[0])
        slots = state.dense[:n]
        assert sorted(slots.tolist()) == np.flatnonzero(state.used).tolist(), f"seed {seed}, row {lo}"
        assert (state.pos[slots] == np.arange(n)).all(), f"seed {seed}, row {lo}"
    assert len(state.keys) > 16, "the stream must force a rehash"


def test_a_state_pickled_before_the_dense_list_resumes() -> None:
    # a recovery snapshot written before round s27 holds the ten fields without dense/pos: it must
    # unpickle (the list rebuilt from the used flags) and carry on as the uninterrupted book does
    import pickle

    from kernels.l3book import L3State

    args = _random_stream(5, 3000, 400)
    state, _ = apply_l3(new_l3_state(order_capacity=16), *(a[:1500] for a in args))
    old = pickle.dumps(_OldShape(tuple(state)[:10]))  # what the snapshot held: the ten fields
    resumed = pickle.loads(old)
    assert isinstance(resumed, L3State) and resumed.dense is not None
    _, want = apply_l3(state, *(a[1500:] for a in args))
    _, got = apply_l3(resumed, *(a[1500:] for a in args))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


class _OldShape:
    """Pickles as the pre-s27 L3State did: ``L3State.__new__(L3State, *ten_fields)``."""

    def __init__(self, ten: tuple[np.ndarray, ...]) -> None:
        self.ten = ten

    def __reduce__(self) -> tuple:
        from kernels.l3book import L3State

        # the NEWOBJ opcode of a pickled namedtuple calls cls.__new__(cls, *fields)
        return L3State.__new__, (L3State, *self.ten)


def _ids_homed_at(slot: int, bits: int, count: int) -> list[int]:
    """Ids whose Fibonacci hash lands on ``slot`` of a 2**bits table (computed here, not by the kernel)."""
    found, oid = [], 1
    while len(found) < count:
        if ((oid * 0x9E3779B97F4A7C15) % 2**64) >> (64 - bits) == slot:
            found.append(oid)
        oid += 1
    return found


def test_deletion_across_the_table_end() -> None:
    # three ids homed on the last slot of a 16-slot table: two of them wrap to slots 0 and 1, and
    # deleting the first must pull the wrapped ones back so they stay findable
    a, b, c = _ids_homed_at(15, 4, 3)
    rows = [(a, A, B, 10, 1, LAST), (b, A, B, 11, 1, LAST), (c, A, B, 12, 1, LAST),
            (a, C, B, 10, 1, LAST), (b, C, B, 11, 1, LAST), (c, C, B, 12, 1, LAST)]
    state, out = apply_l3(new_l3_state(order_capacity=16, start_synced=True), *_arrays(rows))
    assert len(state.keys) == 16  # no growth happened: the wrap really was exercised
    assert out["anomaly"].tolist() == [0] * 6
    assert out["bid_px"].tolist() == [10, 11, 12, 12, 12, UNDEF_PRICE]
    assert int(state.meta[0]) == 0 and not state.used.any()


def test_hand_made_events() -> None:
    rows = [
        (1, A, B, 100, 5, SNAP),           # snapshot: book not yet valid
        (2, A, S, 101, 3, SNAP | LAST),    # snapshot complete: valid
        (3, A, B, 100, 2, LAST),           # level 100 now 7 in 2 orders
        (1, C, B, 100, 9, LAST),           # cancels more than left: underflow, order 1 gone
        (9, C, B, 100, 1, LAST),           # unknown order
        (3, M, B, 102, 2, LAST),           # modify through the ask: crossed
        (3, F, B, 102, 99, 0),             # fill bigger than shown (iceberg): no anomaly, no change
        (3, C, B, 102, 2, LAST | GAP),     # gap: resync
        (0, R, N, 0, 0, LAST),             # clear
    ]
    out = l3_replay(*_arrays(rows))
    assert out["status"].tolist() == [RESYNC, VALID, VALID, VALID, VALID, CROSSED, CROSSED, RESYNC, RESYNC]
    assert out["anomaly"].tolist() == [0, 0, 0, ANOM_SIZE_UNDERFLOW, ANOM_UNKNOWN_ORDER, 0, 0, 0, 0]
    assert out["bid_px"].tolist()[:6] == [100, 100, 100, 100, 100, 102]
    assert out["bid_sz"].tolist()[:6] == [5, 5, 7, 2, 2, 2]
    assert out["bid_ct"].tolist()[:4] == [1, 1, 2, 1]
    assert out["ask_px"][0] == UNDEF_PRICE and out["ask_px"][1] == 101
    assert out["bid_px"][-1] == UNDEF_PRICE and out["ask_px"][-1] == UNDEF_PRICE


def test_snapshot_without_f_last_completes_at_first_live_row() -> None:
    rows = [(1, A, B, 100, 5, SNAP), (2, A, S, 101, 3, SNAP), (3, A, B, 99, 1, LAST)]
    assert l3_replay(*_arrays(rows))["status"].tolist() == [RESYNC, RESYNC, VALID]


# ----------------------------------------------------------------- Hypothesis invariants
_event = st.tuples(st.integers(0, 30), st.sampled_from([A, A, A, C, C, M, F, T]), st.sampled_from([B, S]),
                   st.integers(95, 105), st.integers(0, 8), st.sampled_from([0, LAST, LAST]))


def _state_levels(state) -> dict[tuple[int, int], tuple[int, int]]:
    """(side, price) -> (size, count) summed from the order table of a kernel state."""
    sums: dict[tuple[int, int], tuple[int, int]] = {}
    for j in np.flatnonzero(state.used):
        key = (int(state.o_side[j]), int(state.o_px[j]))
        size, count = sums.get(key, (0, 0))
        sums[key] = (size + int(state.o_sz[j]), count + 1)
    return sums


@settings(max_examples=150, deadline=None)
@given(st.lists(_event, max_size=120), st.integers(1, 40))
def test_levels_equal_sum_of_orders_and_sizes_never_negative(events, cut: int) -> None:
    state = new_l3_state(order_capacity=16, level_capacity=2, start_synced=True)
    args = _arrays(events)
    for lo in range(0, len(events), cut):
        state, out = apply_l3(state, *(a[lo:lo + cut] for a in args))
        assert (out["bid_sz"] >= 0).all() and (out["ask_sz"] >= 0).all()
    levels = {(s, int(state.lv_px[s, q])): (int(state.lv_sz[s, q]), int(state.lv_ct[s, q]))
              for s in (0, 1) for q in range(int(state.n_lv[s]))}
    assert levels == _state_levels(state)
    assert all(size > 0 and count > 0 for size, count in levels.values())
    assert int(state.meta[0]) == int(state.used.sum())


@settings(max_examples=100, deadline=None)
@given(st.lists(_event, min_size=1, max_size=120), st.data())
def test_snapshot_plus_diffs_equals_direct_rebuild(events, data) -> None:
    cut = data.draw(st.integers(0, len(events)))
    args = _arrays(events)
    direct = l3_replay(*args, levels=20, snapshot_rows=np.array([len(events) - 1]), start_synced=True)
    state, _ = apply_l3(new_l3_state(start_synced=True), *(a[:cut] for a in args))
    live = np.flatnonzero(state.used)
    snapshot = [(int(state.keys[j]), A, B if state.o_side[j] == 0 else S, int(state.o_px[j]),
                 int(state.o_sz[j]), SNAP) for j in live]
    snapshot.append((0, N, N, 0, 0, SNAP | LAST))  # an empty book still ends its snapshot
    rebuilt_rows = snapshot + events[cut:]
    rebuilt = l3_replay(*_arrays(rebuilt_rows), levels=20, snapshot_rows=np.array([len(rebuilt_rows) - 1]))
    for name in ("snap_bid_px", "snap_bid_sz", "snap_bid_ct", "snap_ask_px", "snap_ask_sz", "snap_ask_ct"):
        np.testing.assert_array_equal(rebuilt[name], direct[name], err_msg=name)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10**6), st.integers(1, 20), st.integers(1, 9)),
                max_size=150))
def test_valid_input_never_crosses_and_has_no_anomalies(ops) -> None:
    # a model keeps bids below 100 and asks at or above it, and only cancels resting orders
    live: dict[int, int] = {}
    rows = []
    for j, (is_add, pick, offset, size) in enumerate(ops):
        if is_add or not live:
            side = B if offset % 2 else S
            price = 100 - offset if side == B else 100 + offset - 1
            rows.append((j + 1, A, side, price, size, LAST))
            live[j + 1] = size
        else:
            oid = sorted(live)[pick % len(live)]
            take = min(size, live[oid])
            rows.append((oid, C, N, 0, take, LAST))
            live[oid] -= take
            if not live[oid]:
                del live[oid]
    out = l3_replay(*_arrays(rows), start_synced=True)
    assert not out["anomaly"].any()
    assert (out["status"] == VALID).all()
