"""kernels.bars_live.partial_bars vs a Python-integer reference, per interval and in any input order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bars_live import notional_ints, partial_bars

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
