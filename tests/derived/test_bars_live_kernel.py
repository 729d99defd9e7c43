"""kernels.bars_live.partial_bars vs a Python-integer reference, per interval and in any input order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bars import rounded_vwap
from kernels.bars_live import admit, notional_ints, partial_bars, rounded_vwaps

B, A, N = ord("B"), ord("A"), ord("N")

rows_st = st.lists(
    st.tuples(st.integers(-(10**11), 10**11), st.integers(-(2**62), 2**62), st.integers(0, 2**50),
              st.sampled_from([B, A, N]), st.booleans(), st.integers(0, 10**12)),
    max_size=60,
)


def reference(rows: list[tuple], steps: list[int]) -> list[tuple]:
    out = []
    for j, step in enumerate(steps):
        buckets: dict[int, list[tuple]] = {}
        for r in rows:
            buckets.setdefault(r[0] // step * step, []).append(r)  # Python // floors, as the epoch grid
        for start in sorted(buckets):
            b = buckets[start]
            out.append((
                j, start, b[0][1], max(r[1] for r in b), min(r[1] for r in b), b[-1][1], sum(r[2] for r in b),
                len(b), sum(r[2] for r in b if r[3] == B), sum(r[2] for r in b if r[3] == A),
                max(r[5] for r in b), int(any(r[4] for r in b)), sum(r[1] * r[2] for r in b),
            ))
    return out


@settings(max_examples=200, deadline=None)
@given(rows=rows_st, steps=st.lists(st.sampled_from([1, 7, 10**9, 3 * 10**9, 60 * 10**9]), min_size=1,
                                    max_size=4))
def test_partials_equal_python_integers(rows: list, steps: list) -> None:
    cols = [np.array([r[i] for r in rows], dtype=t) for i, t in
            enumerate((np.int64, np.int64, np.int64, np.uint8, np.bool_, np.int64))]
    p = partial_bars(*cols, np.array(steps, np.int64))
    got = list(zip(*(c.tolist() for c in p[:12]), notional_ints(p.notional), strict=True))
    assert got == reference(rows, steps)


@settings(max_examples=200, deadline=None)
@given(rows=rows_st, steps=st.lists(st.sampled_from([1, 2, 4, 7, 14, 10**9, 3 * 10**9, 60 * 10**9]),
                                    min_size=1, max_size=6))
def test_partials_of_time_ordered_trades_equal_python_integers(rows: list, steps: list) -> None:
    # In time order a coarser interval is merged from a finer one that divides it (2 -> 4, 7 -> 14,
    # 1 s -> 3 s and 1 m); intervals with no divisor before them are built from the trades.
    rows = sorted(rows, key=lambda r: r[0])
    cols = [np.array([r[i] for r in rows], dtype=t) for i, t in
            enumerate((np.int64, np.int64, np.int64, np.uint8, np.bool_, np.int64))]
    p = partial_bars(*cols, np.array(steps, np.int64))
    got = list(zip(*(c.tolist() for c in p[:12]), notional_ints(p.notional), strict=True))
    assert got == reference(rows, steps)


def test_coarse_partials_from_fine_ones_by_hand() -> None:
    # three trades in time order over two 1 s buckets and one 2 s bucket; the 2 s partial is the
    # merge of the two 1 s partials: open of the first, close of the last, exact notional
    ts = np.array([0, 999_999_999, 1_000_000_000], np.int64)
    price = np.array([10, -30, 20], np.int64)
    size = np.array([1, 2, 3], np.int64)
    side = np.array([B, A, N], np.uint8)
    p = partial_bars(ts, price, size, side, np.array([False, True, False]), np.array([5, 9, 7], np.int64),
                     np.array([10**9, 2 * 10**9], np.int64))
    assert p.interval.tolist() == [0, 0, 1]
    assert p.start_ns.tolist() == [0, 10**9, 0]
    assert p.open_price_nanos.tolist() == [10, 20, 10]
    assert p.close_price_nanos.tolist() == [-30, 20, 20]
    assert p.high_price_nanos.tolist() == [10, 20, 20] and p.low_price_nanos.tolist() == [-30, 20, -30]
    assert p.volume_nanos.tolist() == [3, 3, 6] and p.trade_count.tolist() == [2, 1, 3]
    assert p.buy_volume_nanos.tolist() == [1, 0, 1] and p.sell_volume_nanos.tolist() == [2, 0, 2]
    assert p.recv_max_ns.tolist() == [9, 7, 9] and p.gap.tolist() == [1, 0, 1]
    assert notional_ints(p.notional) == [10 - 60, 60, 10 - 60 + 60]


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 100), st.integers(-2, 5)), max_size=40),
       start=st.integers(0, 100), lateness=st.integers(0, 20), horizon=st.integers(0, 30))
def test_admit_equals_the_policy_per_trade(rows: list, start: int, lateness: int, horizon: int) -> None:
    top, expected = start, []
    for ts, size in rows:
        top = max(top, ts)
        wm = top - lateness
        expected.append((wm, 1 if ts < wm - horizon else 2 if size < 0 else 0, ts < wm))
    wm, status, new_top, late, too_late, negative = admit(
        np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64), start, lateness,
        horizon)
    assert list(zip(wm.tolist(), status.tolist(), strict=True)) == [(w, s) for w, s, _ in expected]
    assert new_top == top
    statuses = [s for _, s, _ in expected]
    assert late == sum(s == 0 and lt for _, s, lt in expected)
    assert (too_late, negative) == (statuses.count(1), statuses.count(2))


@settings(max_examples=300, deadline=None)
@given(bars=st.lists(st.tuples(st.integers(-(2**62), 2**62), st.integers(0, 2**62), st.integers(0, 2**62),
                               st.integers(-(10**12), 10**12)), max_size=30))
def test_rounded_vwaps_equal_the_python_integer_rounding(bars: list) -> None:
    # notional = q * volume + r, the shape of price * size sums (|vwap| < 2**63), beyond 64 bits
    rows = [(q * v + r % v if v else 0, v, o) for q, v, r, o in bars]
    # exact halves round away from zero, both signs
    rows += [(sign * (7 * v + v // 2), v, 1) for _, v, _, _ in bars[:3] if v % 2 == 0 for sign in (1, -1)]
    notional = np.array([b[0] for b in rows], dtype=object)
    volume = np.array([b[1] for b in rows], np.int64)
    open_price = np.array([b[2] for b in rows], np.int64)
    assert rounded_vwaps(notional, volume, open_price).tolist() == [rounded_vwap(*b) for b in rows]
