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


def test_spread_scaled_labels_by_hand() -> None:
    from tapeflow.ml.dataset import Segment
    from tapeflow.ml.labels import fit_spread_scale, spread_scaled_segment

    # spreads 10, 10, 2, 2 bp; smoothed returns 1, -3, 1, -0.1 bp; the past label is 1 row back (1 s)
    spread = np.array([10.0, 10.0, 2.0, 2.0])
    smoothed = np.array([1e-4, -3e-4, 1e-4, -1e-5])
    x = np.stack([spread, np.zeros(4)], axis=1)
    seg = Segment("s", S * np.arange(4), x, np.ones(4, np.int64), smoothed, np.full(4, -1), np.ones(4, bool),
                  np.zeros((4, 3)))
    # |return| / relative spread = 0.1, 0.3, 0.5, 0.05: half of them at or below 0.1
    assert fit_spread_scale(seg, 0, 0.5) == np.quantile([0.1, 0.3, 0.5, 0.05], 0.5)
    out = spread_scaled_segment(seg, 0, 0.2, 1)  # thresholds 2, 2, 0.4, 0.4 bp
    assert out.y.tolist() == [1, 0, 2, 1]
    assert out.past_label.tolist() == [-1, 1, 0, 2] and out.x[:, -1].tolist() == [0, 0, -1, 1]
    assert out.book is seg.book
