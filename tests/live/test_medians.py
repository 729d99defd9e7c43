"""Integer medians of the health stage equal numpy's, truncated as ``int(np.median(...))`` gives them."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.live.medians import RollingMedian


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**62, 2**62), min_size=1, max_size=200), st.integers(1, 70))
def test_rolling_median_is_numpys_median_of_the_last_values(values: list[int], size: int) -> None:
    rolling = RollingMedian(size)
    for i, value in enumerate(values):
        window = np.asarray(values[max(0, i + 1 - size):i + 1], np.int64)
        assert rolling.push(value) == int(np.median(window))
        assert rolling.median() == int(np.median(window))
    assert len(rolling) == min(size, len(values))
    rolling.clear()
    assert rolling.median() is None and len(rolling) == 0


def test_rolling_median_drops_one_of_equal_values() -> None:
    rolling = RollingMedian(2)
    assert [rolling.push(v) for v in (5, 5, 1, 1)] == [5, 5, 3, 1]
