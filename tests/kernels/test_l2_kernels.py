"""The numba and JAX L2 kernels against the plain-Python reference, and their invariants.

JAX compiles once per (bucket, snapshot slots, spill size): the JAX cases reuse the 4096 bucket
and one snapshot count so the whole file compiles a handful of times.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import _l2state as s2
from kernels.l2book import l2_replay_jax
from kernels.l2book import run as run_jax
from kernels.l2book_numba import Stepper, l2_replay_numba
from kernels.l2book_numba import run as run_numba
from kernels.reference import CROSSED, RESYNC, VALID, l2_replay_reference
from tapeflow.schemas.records import ASK, BID, F_GAP, F_LAST, F_SNAPSHOT, F_SUPERSEDED, L2_SET
from tests.kernels.l2_streams import args, random_walk, snapshot_block

CASES = {
    "walk": {},
    "far_levels": {"far_frac": 0.15},
    "gaps_superseded_crossing": {"gap_frac": 0.005, "sup_frac": 0.05, "crossing": True},
    "drift_recenters": {"drift_ticks": 400},
    "far_and_drift": {"far_frac": 0.3, "drift_ticks": 60},
}


def assert_same(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
    assert set(ref) == set(got)
    for key in ref:
        bad = np.flatnonzero((np.asarray(ref[key]) != np.asarray(got[key])).reshape(len(ref[key]), -1).any(1))
        assert not len(bad), f"{key} differs first at row {bad[0]}: {ref[key][bad[0]]} vs {got[key][bad[0]]}"


def snap_rows(n: int, seed: int, k: int = 40) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


@pytest.mark.parametrize("case", list(CASES))
def test_numba_equals_reference(case: str) -> None:
    s = random_walk(11, 12_000, **CASES[case])
    rows = snap_rows(len(s["side"]), 1)
    ref = l2_replay_reference(*args(s), levels=7, snapshot_rows=rows)
    # a small window forces spill and re-centering even on the plain walk
    assert_same(ref, l2_replay_numba(*args(s), levels=7, snapshot_rows=rows, window_ticks=64, spill=2))
    assert_same(ref, l2_replay_numba(*args(s), levels=7, snapshot_rows=rows))


@pytest.mark.parametrize("case", ["far_levels", "gaps_superseded_crossing", "drift_recenters"])
def test_jax_equals_reference(case: str) -> None:
    s = random_walk(12, 3_000, **CASES[case])
    s = {k: v[:4096] for k, v in s.items()}
    rows = snap_rows(len(s["side"]), 2, k=16)
    ref = l2_replay_reference(*args(s), levels=5, snapshot_rows=rows)
    assert_same(ref, l2_replay_jax(*args(s), levels=5, snapshot_rows=rows, window_ticks=256, spill=64))


def test_statuses_are_exercised() -> None:
    """The comparison streams really contain valid, resync and crossed rows (else they prove little)."""
    s = random_walk(11, 12_000, **CASES["gaps_superseded_crossing"])
    counts = np.bincount(l2_replay_reference(*args(s))["status"], minlength=3)
    assert counts[VALID] > 0 and counts[RESYNC] > 0 and counts[CROSSED] > 0


@pytest.mark.parametrize("runner", [run_numba, run_jax], ids=["numba", "jax"])
def test_batch_split_invariance(runner) -> None:  # noqa: ANN001
    s = random_walk(13, 6_000, far_frac=0.1, drift_ticks=40, gap_frac=0.002)
    n = len(s["side"])
    whole = l2_replay_reference(*args(s))
    cuts = [0, 1, 2, 700, 701, 3000, n]
    # numba starts with a tiny spill to exercise growth; JAX with room, to keep compiles few
    state = s2.new_state(window_ticks=128, spill=8 if runner is run_numba else 64)
    parts = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        state, out = runner(state, *(x[a:b] for x in args(s)))
        parts.append(out)
    glued = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert_same(whole, glued)


def test_one_event_at_a_time_numba() -> None:
    s = random_walk(14, 1_500, far_frac=0.1, gap_frac=0.003)
    whole = l2_replay_reference(*args(s))
    state = s2.new_state()
    rows = []
    for i in range(len(s["side"])):
        state, out = run_numba(state, *(x[i:i + 1] for x in args(s)))
        rows.append(out)
    assert_same(whole, {k: np.concatenate([r[k] for r in rows]) for k in rows[0]})


def test_stepper_equals_reference() -> None:
    s = random_walk(17, 2_000, far_frac=0.1, gap_frac=0.003, drift_ticks=20)
    ref = l2_replay_reference(*args(s))
    stepper = Stepper(window_ticks=64)
    got = np.array([stepper.step(*row) for row in zip(*(c.tolist() for c in args(s)), strict=True)])
    for k, name in enumerate(("bid_px", "bid_sz", "ask_px", "ask_sz", "status")):
        assert np.array_equal(got[:, k], ref[name]), name


def test_far_levels_are_kept_and_ranked() -> None:
    """Levels a million ticks away land in the spill, show in deep snapshots and become the
    touch when everything nearer is deleted."""
    tick = 10_000_000
    snap = snapshot_block(np.random.default_rng(0), 50_000, tick, 3)
    far_bid, far_ask = (50_000 - 1_000_000) * tick, (50_000 + 2_000_000) * tick
    side = np.concatenate([snap["side"], [BID, ASK]]).astype(np.uint8)
    action = np.concatenate([snap["action"], [L2_SET, L2_SET]]).astype(np.uint8)
    price = np.concatenate([snap["price"], [far_bid, far_ask]]).astype(np.int64)
    size = np.concatenate([snap["size"], [5, 7]]).astype(np.int64)
    flags = np.concatenate([snap["flags"], [F_LAST, F_LAST]]).astype(np.uint8)
    # then delete every near level
    near = np.arange(1, 7)
    side = np.concatenate([side, side[near]])
    action = np.concatenate([action, np.full(6, ord("D"), np.uint8)])
    price = np.concatenate([price, price[near]])
    size = np.concatenate([size, np.zeros(6, np.int64)])
    flags = np.concatenate([flags, np.full(6, F_LAST, np.uint8)])
    n = len(side)
    rows = np.array([len(snap["side"]) + 1, n - 1])
    got = l2_replay_numba(side, action, price, size, flags, levels=4, snapshot_rows=rows, window_ticks=1024)
    assert got["snap_bid_px"][0][3] == far_bid and got["snap_ask_px"][0][3] == far_ask
    assert (got["bid_px"][-1], got["bid_sz"][-1]) == (far_bid, 5)
    assert (got["ask_px"][-1], got["ask_sz"][-1]) == (far_ask, 7)
    assert_same(l2_replay_reference(side, action, price, size, flags, levels=4, snapshot_rows=rows), got)


def test_tick_refines_when_a_finer_price_arrives() -> None:
    """The first batch looks like a 1.0 grid; a later 0.05 price must refine, not misplace."""
    state = s2.new_state()
    one = 1_000_000_000
    side = np.array([BID, ASK], np.uint8)
    flags = np.array([F_SNAPSHOT, F_SNAPSHOT | F_LAST], np.uint8)
    act = np.full(2, L2_SET, np.uint8)
    state, _ = run_numba(state, side, act, np.array([100 * one, 102 * one]), np.array([1, 2]), flags)
    assert state.meta[s2.TICK] == 2 * one
    state, out = run_numba(state, np.array([BID], np.uint8), act[:1], np.array([101 * one + one // 20]),
                           np.array([3]), np.zeros(1, np.uint8))
    assert state.meta[s2.TICK] == one // 20
    assert (out["bid_px"][0], out["bid_sz"][0], out["ask_px"][0]) == (101 * one + one // 20, 3, 102 * one)
    assert s2.levels(state) == ({100 * one: 1, 101 * one + one // 20: 3}, {102 * one: 2})


def _stream_from(draw_rows: list[tuple[int, int, int, int, int]]) -> tuple[np.ndarray, ...]:
    side = np.array([BID if r[0] else ASK for r in draw_rows], np.uint8)
    action = np.array([r[1] for r in draw_rows], np.uint8)
    price = np.array([r[2] * 25_000_000 for r in draw_rows], np.int64)
    size = np.array([r[3] for r in draw_rows], np.int64)
    flags = np.array([r[4] for r in draw_rows], np.uint8)
    return side, action, price, size, flags


ROW = st.tuples(st.booleans(), st.sampled_from([ord("U"), ord("U"), ord("D"), ord("R")]),
                st.integers(-40, 40), st.integers(0, 9),
                st.sampled_from([0, F_LAST, F_GAP, F_SUPERSEDED, F_SNAPSHOT, F_SNAPSHOT | F_LAST]))


@settings(max_examples=150, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=60))
def test_property_numba_equals_reference(rows: list) -> None:
    cols = _stream_from(rows)
    snaps = np.arange(len(rows))
    assert_same(l2_replay_reference(*cols, levels=3, snapshot_rows=snaps),
                l2_replay_numba(*cols, levels=3, snapshot_rows=snaps, window_ticks=16, spill=1))


@settings(max_examples=100, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=60), st.integers(0, 1_000))
def test_property_invariants(rows: list, seed: int) -> None:
    """Sizes never negative; snapshot + later diffs equals a direct rebuild from the final level
    map; RESYNC from an F_GAP until a completed snapshot; F_SUPERSEDED rows change nothing."""
    side, action, price, size, flags = _stream_from(rows)
    state, out = run_numba(s2.new_state(window_ticks=16, spill=1), side, action, price, size, flags)
    assert (out["bid_sz"] >= 0).all() and (out["ask_sz"] >= 0).all()
    bids, asks = s2.levels(state)
    # the final level map, rebuilt directly with dicts, equals the kernel's book
    book: tuple[dict[int, int], dict[int, int]] = ({}, {})
    for sd, a, p, z, f in zip(side, action, price, size, flags, strict=True):
        if f & F_SUPERSEDED:
            continue
        if a == ord("R"):
            book = ({}, {})
        elif a in (ord("U"), ord("D")):
            level = book[0 if sd == BID else 1]
            if a == ord("D") or z == 0:
                level.pop(int(p), None)
            else:
                level[int(p)] = int(z)
    assert (bids, asks) == book
    if bids:
        assert (out["bid_px"][-1], out["bid_sz"][-1]) == max(bids.items())
    if asks:
        assert (out["ask_px"][-1], out["ask_sz"][-1]) == min(asks.items())
    synced_by = F_SNAPSHOT | F_LAST
    for i in range(len(rows)):
        resynced_here = flags[i] & synced_by == synced_by and not flags[i] & F_SUPERSEDED
        if flags[i] & F_GAP and not resynced_here:
            assert out["status"][i] == RESYNC
    dropped = (flags & F_SUPERSEDED) != 0
    if dropped.any():
        kept = ~dropped
        again = run_numba(s2.new_state(), side[kept], action[kept], price[kept], size[kept],
                          np.where(dropped, 0, flags)[kept])[0]
        # superseded rows carry no state except their F_GAP bit, which only affects the status
        assert s2.levels(again) == (bids, asks)


def test_no_crossed_status_after_valid_uncrossed_input() -> None:
    s = random_walk(15, 20_000, drift_ticks=30)
    out = l2_replay_numba(*args(s), window_ticks=256)
    assert (out["status"] != CROSSED).all()
    assert (out["status"][len(snapshot_block(np.random.default_rng(0), 0, 1, 20)["side"]):] == VALID).all()


def test_resync_until_snapshot_after_gap() -> None:
    s = random_walk(16, 3_000)
    flags = s["flags"].copy()
    flags[1_000] |= F_GAP
    got = l2_replay_numba(s["side"], s["action"], s["price"], s["size"], flags)
    assert (got["status"][1_000:] == RESYNC).all()
    assert (got["status"][41:1_000] == VALID).all()


def test_jax_host_paths_equal_reference() -> None:
    """The JAX scan hands rare events to the host: next best farther than its search span, a
    full spill, clearing a non-empty book, snapshot rows. The replay still equals the reference."""
    from kernels.l2book import RESCAN_TICKS

    tick, mid = 10_000_000, 50_000
    gap = RESCAN_TICKS + 644  # next level beyond the scan's bounded search
    rows: list[tuple[int, int, int, int, int]] = []
    bids = [mid, mid - 100, mid - 100 - gap, mid - 200 - gap, mid - 100_000]
    asks = [mid + 10, mid + 100, mid + 100 + gap, mid + 200 + gap, mid + 100_000, mid + 100_001]
    for t in bids:
        rows.append((BID, L2_SET, t, 3, F_SNAPSHOT))
    for t in asks:
        rows.append((ASK, L2_SET, t, 4, F_SNAPSHOT))
    rows[-1] = (*rows[-1][:4], F_SNAPSHOT | F_LAST)
    for sd, t in ((BID, bids[0]), (BID, bids[1]), (ASK, asks[0]), (ASK, asks[1])):
        rows.append((sd, ord("D"), t, 0, 0))
    rows += [(BID, L2_SET, mid - 150, 9, 0), (ASK, ord("R"), 0, 0, 0),
             (BID, L2_SET, mid - 1, 2, F_SNAPSHOT), (ASK, L2_SET, mid + 1, 2, F_SNAPSHOT | F_LAST)]
    side, action, price, size, flags = (np.array([r[k] for r in rows], dt) for k, dt in
                                        enumerate((np.uint8, np.uint8, np.int64, np.int64, np.uint8)))
    price = price * tick
    snaps = np.array([len(bids) + len(asks) - 1, len(rows) - 3, len(rows) - 1])
    ref = l2_replay_reference(side, action, price, size, flags, levels=3, snapshot_rows=snaps)
    # the stream really has a best delete whose next level is beyond the search span, per side
    drop_b = np.diff(np.where(ref["bid_px"] == s2.UNDEF_PRICE, 0, ref["bid_px"]) // tick)
    rise_a = np.diff(np.where(ref["ask_px"] == s2.UNDEF_PRICE, 0, ref["ask_px"]) // tick)
    assert (-drop_b > RESCAN_TICKS).any() and (rise_a > RESCAN_TICKS).any()
    got = l2_replay_jax(side, action, price, size, flags, levels=3, snapshot_rows=snaps, window_ticks=4096,
                        spill=1)
    assert_same(ref, got)
