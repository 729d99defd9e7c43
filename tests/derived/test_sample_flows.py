"""kernels.metrics_live: the compiled fsum equals math.fsum; sample_flows equals the walk in Python."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.metrics_live import fsum, sample_flows

DAY = 86_400_000_000_000
floats = st.floats(min_value=0.0, max_value=1e30, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(floats, floats.map(lambda x: x * 1e-200), st.floats(-1e300, 1e300)),
                       max_size=50))
def test_fsum_equals_math_fsum_bit_for_bit(values: list[float]) -> None:
    got, want = fsum(np.array(values, np.float64)), math.fsum(values)
    assert (got, math.copysign(1.0, got)) == (want, math.copysign(1.0, want))


def test_fsum_of_specials() -> None:
    assert fsum(np.array([math.inf, 1.0])) == math.inf
    assert math.isnan(fsum(np.array([math.inf, -math.inf])))
    assert fsum(np.array([1.0, 1e100, 1.0, -1e100])) == 2.0  # a naive sum gives 0.0
    assert fsum(np.array([0.1] * 10)) == 1.0  # a naive sum gives 0.9999999999999999


def reference(samples: list[int], ofi: list, sq: list, bad: list, flow: list, carry: list) -> tuple:
    """The walk LiveMetrics did in Python before the kernel (dicts of instants, math.fsum)."""
    quote_bad, has_day, day_of, cvd = carry
    out = []
    lo = None
    def take(items: list, lo: int | None, g: int) -> list:
        return [it for it in items if (lo is None or it[0] > lo) and it[0] <= g]

    for g in samples:
        o = sum(v for _, v in take(ofi, lo, g))
        returns = [v for _, v in take(sq, lo, g)]
        rv = math.sqrt(math.fsum(returns)) if returns else math.nan
        flagged = quote_bad
        for _, any_bad, last_bad in take(bad, lo, g):
            flagged = flagged or any_bad
            quote_bad = last_bad
        for k, v in take(flow, lo, g):
            day = (k - 1) // DAY
            if not has_day or day != day_of:
                has_day, day_of, cvd = True, day, 0
            cvd += v
        out.append((o, cvd if has_day and day_of == (g - 1) // DAY else 0, rv, flagged))
        lo = g
    return out, [int(quote_bad), int(has_day), day_of, cvd]


instants = st.lists(st.integers(-3 * DAY, 3 * DAY), max_size=30).map(sorted)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), samples=st.lists(st.integers(-3 * DAY, 3 * DAY), min_size=1, max_size=12, unique=True)
       .map(sorted), carry=st.tuples(st.booleans(), st.booleans(), st.integers(-4, 4), st.integers(-99, 99)))
def test_sample_flows_equals_the_python_walk(data: st.DataObject, samples: list[int], carry: tuple) -> None:
    small = st.integers(-1000, 1000)
    ofi = [(k, data.draw(small)) for k in data.draw(instants)]
    sq = [(k, data.draw(st.floats(0, 1e-3))) for k in data.draw(instants)]
    bad = [(k, data.draw(st.booleans()), data.draw(st.booleans())) for k in data.draw(instants)]
    flow = [(k, data.draw(small)) for k in data.draw(instants)]
    state = np.array([int(carry[0]), int(carry[1]), carry[2], carry[3]], np.int64)
    want, want_state = reference(samples, ofi, sq, bad, flow, [carry[0], carry[1], carry[2], carry[3]])
    ofi_o, cvd_o, rv_o, bad_o, used = sample_flows(
        np.array(samples, np.int64),
        (np.array([k for k, _ in ofi], np.int64), np.array([v for _, v in ofi], np.int64)),
        (np.array([k for k, _ in sq], np.int64), np.array([v for _, v in sq], np.float64)),
        tuple(np.array([b[i] for b in bad], t) for i, t in ((0, np.int64), (1, np.bool_), (2, np.bool_))),
        (np.array([k for k, _ in flow], np.int64), np.array([v for _, v in flow], np.int64)), state)
    got = list(zip(ofi_o.tolist(), cvd_o.tolist(), rv_o.tolist(), bad_o.tolist(), strict=True))
    assert [(o, c, b) for o, c, _, b in got] == [(o, c, b) for o, c, _, b in want]
    assert [r if not math.isnan(r) else "nan" for *_, r, _ in got] == \
        [r if not math.isnan(r) else "nan" for *_, r, _ in want]
    assert state.tolist() == want_state
    last = samples[-1]
    assert used.tolist() == [sum(1 for it in items if it[0] <= last) for items in (ofi, sq, bad, flow)]
