"""The withdrawal detector on a hand-built book grid: a pull alerts; a price move and depth eaten by
trades (the look-alikes) do not."""

from __future__ import annotations

import numpy as np

from tapeflow.signals import withdrawal
from tapeflow.signals.config import DEFAULT_PATH, load

GRID_NS = 100_000_000
T0 = 1_704_205_800_000_000_000
ROWS, LEVELS = 800, 11  # A, B and C lie more than the 5 s refractory period apart


def _book():
    k = np.arange(LEVELS)
    bid_p = np.tile(1000 - k, (ROWS, 1))
    ask_p = np.tile(1001 + k, (ROWS, 1))
    bid_s = np.full((ROWS, LEVELS), 10)
    ask_s = np.full((ROWS, LEVELS), 10)
    bid_s[650:660, 1:7] = 0  # A: six bid levels behind the touch pulled, the touch and asks stay
    bid_p[710:720] -= 8  # B: the whole book moves 8 ticks down (the look-alike)
    ask_p[710:720] -= 8
    bid_s[770:780, 1:7] = 0  # C: the same six levels, but sold into (traded)
    ts = T0 + np.arange(ROWS) * GRID_NS
    return dict(ts=ts, recv=ts + 1000, flags=np.zeros(ROWS, np.uint8), bid_p=bid_p, bid_s=bid_s,
                ask_p=ask_p, ask_s=ask_s)


def test_a_pull_alerts_a_price_move_and_eaten_depth_do_not():
    params = load(DEFAULT_PATH).for_instrument("withdrawal", "SIMA")
    assert (params["window_ns"], params["within_ticks"], params["min_levels_pulled"]) == (100_000_000, 10, 3)
    sold = np.zeros(ROWS)
    sold[770:] = 60  # 60 lots sold into the bids at row 770: the whole fall of C
    traded = {1: sold, -1: np.zeros(ROWS)}
    got = withdrawal.detect(_book(), traded, 1, params, "sim", "SIMA").table().to_pylist()
    assert [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got] == [(1, 650)], got
    alert = got[0]
    assert alert["price_nanos"] == 1000 and alert["size_nanos"] == 60
    assert alert["start_ns"] == T0 + 649 * GRID_NS and alert["end_ns"] == alert["ts_event_ns"]
    assert '"levels_pulled": 6' in alert["evidence"] and '"drop": 0.545' in alert["evidence"]
    assert 0.5 < alert["confidence"] < 1.0


def test_without_the_trades_the_eaten_depth_would_alert():
    params = load(DEFAULT_PATH).for_instrument("withdrawal", "SIMA")
    traded = {1: np.zeros(ROWS), -1: np.zeros(ROWS)}
    got = withdrawal.detect(_book(), traded, 1, params, "sim", "SIMA").table().to_pylist()
    assert [(r["ts_event_ns"] - T0) // GRID_NS for r in got] == [650, 770]


def test_without_the_touch_rule_the_price_move_would_alert():
    params = dict(load(DEFAULT_PATH).for_instrument("withdrawal", "SIMA"), max_opposite_move_ticks=1000)
    sold = np.zeros(ROWS)
    sold[770:] = 60
    got = withdrawal.detect(_book(), {1: sold, -1: np.zeros(ROWS)}, 1, params, "sim", "SIMA").table()
    rows = [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got.to_pylist()]
    # the bids fall away at 710, and when the book moves back the asks do at 720
    assert rows == [(1, 650), (1, 710), (-1, 720)]
