"""The tick-time target: the next mid change within a span, on hand-made mid paths."""

from __future__ import annotations

import numpy as np

from tapeflow.ml.labels import next_move

S = 1_000_000_000


def test_next_move_by_hand() -> None:
    ts = S * np.arange(8)
    mid = np.array([100.0, 100.0, 101.0, 101.0, np.nan, 101.0, 101.0, 99.0])
    y, move = next_move(ts, mid, 3)
    # row 0: up at 2 s (within 3 s); row 1 the same; rows 2-3: no change by 5-6 s (the NaN row is no
    # change); row 4: no mid; rows 5-6: down at 7 s; row 7: span passes the last row
    assert y.tolist() == [2, 2, 1, 1, -1, 0, 0, -1]
    assert np.allclose(move[:2], 0.01) and move[2:4].tolist() == [0.0, 0.0]
    assert np.allclose(move[5:7], 99 / 101 - 1) and np.isnan(move[[4, 7]]).all()
    y2, _ = next_move(ts, mid, 1)
    # a 1 s span: row 0 sees no change by 1 s (flat), row 1 sees the up move at 2 s
    assert y2.tolist() == [1, 2, 1, 1, -1, 1, 0, -1]
