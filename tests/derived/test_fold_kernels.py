"""kernels.metrics.fold_quotes / fold_trades vs per-row quote_events + grid_end grouped in Python."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.metrics import UNDEF, fold_quotes, fold_trades, grid_end, quote_events

STEP = 10
price = st.one_of(st.just(int(UNDEF)), st.integers(90, 110))
quote_rows = st.lists(st.tuples(price, st.integers(0, 5), price, st.integers(0, 5), st.integers(0, 60),
                                st.booleans()), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(rows=quote_rows, start=st.one_of(st.none(), st.integers(0, 60)), first=st.integers(0, 30))
def test_fold_quotes_equals_rows_grouped_by_instant(rows: list, start: int | None, first: int) -> None:
    cols = [np.array([r[i] for r in rows], np.int64) for i in range(5)]
    bad = np.array([r[5] for r in rows], bool)
    # the same carried quote state for both: the quotes before this batch (first of them, or none)
    prev_ref = np.zeros(5, np.int64)
    quote_events(*(c[:first] for c in cols[:4]), prev_ref)
    prev = prev_ref.copy()
    _, ofi, sq = quote_events(*cols[:4], prev_ref)
    at = grid_end(cols[4], STEP, start).tolist()
    expected: dict[int, list] = {}
    for i, g in enumerate(at):
        e = expected.setdefault(g, [0, [], False, False])
        e[0] += int(ofi[i])
        if not math.isnan(sq[i]):
            e[1].append(float(sq[i]))
        e[2] = e[2] or bool(bad[i])
        e[3] = bool(bad[i])
    runs, flags, returns, top = fold_quotes(*cols, bad, prev, start, STEP)
    got, lo = {}, 0
    for (g, _, total, hi), (any_bad, last_bad) in zip(runs.tolist(), flags.tolist(), strict=True):
        got[g] = [total, returns[lo:hi].tolist(), any_bad, last_bad]
        lo = hi
    assert got == expected
    assert runs[:, 0].tolist() == sorted(expected) and runs[-1, 1] == len(rows)
    assert top == max([*cols[4].tolist(), *([] if start is None else [start])])
    assert prev.tolist() == prev_ref.tolist()


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 60), st.sampled_from([ord("B"), ord("A"), ord("N")]),
                               st.integers(0, 2**40)), min_size=1, max_size=40),
       start=st.one_of(st.none(), st.integers(0, 60)))
def test_fold_trades_equals_rows_grouped_by_instant(rows: list, start: int | None) -> None:
    recv = np.array([r[0] for r in rows], np.int64)
    expected: dict[int, int] = {}
    for g, (_, side, size) in zip(grid_end(recv, STEP, start).tolist(), rows, strict=True):
        expected[g] = expected.get(g, 0) + (size if side == ord("B") else -size if side == ord("A") else 0)
    runs, top = fold_trades(recv, np.array([r[1] for r in rows], np.uint8), np.array([r[2] for r in rows]),
                            start, STEP)
    assert {g: v for g, _, v in runs.tolist()} == expected and runs[:, 0].tolist() == sorted(expected)
    assert top == max([*recv.tolist(), *([] if start is None else [start])])
