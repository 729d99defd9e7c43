"""The spike detector on a hand-built book grid: a jump with a sweep in a calm market alerts; the
same jump without a sweep does not, nor does the same jump and sweep inside a stretch of high
local volatility (the look-alike)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kernels.signals_walls import window_max_ref
from kernels.signals_windows import block_quantiles_ref, flow_windows_ref
from tapeflow.schemas.records import ASK, BID
from tapeflow.signals import spikes, walls
from tapeflow.signals.config import DEFAULT_PATH, load

GRID_NS = 100_000_000
T0 = 1_704_205_800_000_000_000
ROWS, LEVELS = 1200, 5


def _book() -> dict[str, np.ndarray]:
    shift = np.zeros(ROWS, np.int64)
    shift[300:] += 5  # A: up 5 ticks, with a sweep
    shift[600:] -= 5  # B: down 5 ticks, no sweep
    wobble = np.where((np.arange(ROWS) // 2) % 2 == 0, 3, -3)
    shift[800:1100] += wobble[800:1100]  # C: a stretch swinging 6 ticks every 200 ms ...
    shift[1000:] -= 5  # ... with a 5-tick fall and a sweep in its middle
    k = np.arange(LEVELS)
    bid_p = 1000 + shift[:, None] - k
    ask_p = 1002 + shift[:, None] + k
    size = np.full((ROWS, LEVELS), 10)
    ts = T0 + np.arange(ROWS) * GRID_NS
    return dict(ts=ts, recv=ts + 1000, flags=np.zeros(ROWS, np.uint8), bid_p=bid_p, bid_s=size,
                ask_p=ask_p, ask_s=size.copy())


def _trades() -> dict[str, np.ndarray]:
    # one aggressor print of 5 depths (50 lots over 5 levels) at A and at C, just before the row
    rows = np.array([300] * 5 + [1000] * 5)
    ts = T0 + rows * GRID_NS - 50_000
    price = np.r_[1002 + np.arange(5), 1000 + 5 - np.arange(5)]
    return dict(ts_event_ns=ts, ts_recv_ns=ts + 500, price_nanos=price, size_nanos=np.full(10, 10),
                aggressor_side=np.r_[np.full(5, BID), np.full(5, ASK)].astype(np.uint8))


def _params(**over: object) -> dict:
    params = load(DEFAULT_PATH).for_instrument("spike", "SIMA")
    assert (params["window_ns"], params["baseline_ns"], params["min_z"]) == (300_000_000, 10 * 10**9, 5.0)
    return {**params, **over}


def test_a_jump_with_a_sweep_in_calm_alerts_and_the_lookalikes_do_not() -> None:
    got = spikes.detect(_book(), _trades(), 1, _params(), "sim", "SIMA").table().to_pylist()
    assert [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got] == [(1, 300)], got
    ev = json.loads(got[0]["evidence"])
    # a flat mid before: the sigma is the floor (0.5 tick), the move 5 ticks, the print 5 depths
    assert (ev["move_ticks"], ev["sigma_ticks"], ev["z"], ev["sweep_x_depth"]) == (5.0, 0.5, 10.0, 5.0)
    # the ask (the swept touch) moved the 5 ticks too: 10 of its floored sigmas
    assert (ev["touch_move_ticks"], ev["touch_z"]) == (5.0, 10.0)
    assert got[0]["start_ns"] == T0 + 297 * GRID_NS and got[0]["size_nanos"] == 50
    assert got[0]["score"] == 2.0 and got[0]["confidence"] == pytest.approx(1 / (1 + np.exp(-0.24)))


def test_the_local_baseline_is_what_rejects_the_lookalike() -> None:
    # the stretch's swings make the local sigma ~5 ticks: the same jump is about one sigma there;
    # with a sigma floor above its swings the jump in the stretch alerts like A
    got = spikes.detect(_book(), _trades(), 1, {**_params(), "min_sigma_ticks": 0.5, "min_z": 0.9,
                                                "min_touch_z": 0.9}, "sim", "SIMA").table().to_pylist()
    assert [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got] == [(1, 300), (-1, 1000)]
    z_stretch = json.loads(got[1]["evidence"])["z"]
    assert z_stretch < 1.5, z_stretch


def test_without_the_sweep_rule_the_bare_jump_would_alert() -> None:
    got = spikes.detect(_book(), _trades(), 1, {**_params(), "min_sweep_x_depth": 0.0}, "sim", "SIMA").table()
    assert (-1, 600) in [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got.to_pylist()]


def test_a_mid_moved_by_the_other_side_stepping_in_is_no_jump() -> None:
    # a 12-tick spread; at A the bid alone steps up 10 ticks into it (the ask stays): the mid moves
    # 5 ticks with the same buy sweep, but the touch a jump goes through does not move
    book = _book()
    book["ask_p"] += 10
    book["ask_p"][300:] -= 5
    book["bid_p"][300:] += 5
    assert (book["bid_p"][:, 0] < book["ask_p"][:, 0]).all()
    assert [r["ts_event_ns"] for r in spikes.detect(book, _trades(), 1, _params(), "sim", "SIMA").table()
            .to_pylist() if r["side"] == 1] == []
    got = spikes.detect(book, _trades(), 1, {**_params(), "min_touch_z": 0.0}, "sim", "SIMA").table()
    assert (1, 300) in [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got.to_pylist()]


def test_the_mean_absolute_baseline_is_not_raised_by_an_earlier_jump() -> None:
    # a 5-tick bump up and back (no sweep) 3-5 s before A: its 6 window moves of 5 ticks in the
    # 100 of A's baseline make an RMS of 1.22 ticks (z 4.1 < 5), a mean absolute move of 0.3
    # (x sqrt(pi/2) 0.38, floored at 0.5: z 10); ``sigma_mean_abs`` (off in the shipped presets)
    book = _book()
    for name in ("bid_p", "ask_p"):
        book[name][250:270] += 5
    rms = spikes.detect(book, _trades(), 1, _params(), "sim", "SIMA").table().to_pylist()
    assert [r for r in rms if r["side"] == 1] == []
    got = spikes.detect(book, _trades(), 1, _params(sigma_mean_abs=1), "sim", "SIMA").table().to_pylist()
    assert [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got] == [(1, 300)], got
    assert json.loads(got[0]["evidence"])["sigma_ticks"] == 0.5


def test_a_sweep_lost_in_busy_flow_fails_the_share_rule() -> None:
    # 20 ordinary prints of 10 lots in the 10 s before A: its 50-lot sweep is 50 / 250 = 0.2 of
    # the flow, under a ``min_sweep_share`` of 0.3 (off in the shipped presets)
    rows = np.arange(210, 290, 4)
    ts = T0 + rows * GRID_NS
    side = np.where(np.arange(len(rows)) % 2 == 0, BID, ASK).astype(np.uint8)
    base = _trades()
    busy = dict(ts_event_ns=ts, ts_recv_ns=ts + 500, price_nanos=np.full(len(rows), 1001),
                size_nanos=np.full(len(rows), 10), aggressor_side=side)
    trades = {k: np.r_[busy[k], base[k]] for k in base}
    got = spikes.detect(_book(), trades, 1, _params(), "sim", "SIMA").table().to_pylist()
    assert [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got if r["side"] == 1] == [(1, 300)]
    for share, alerts in ((0.3, []), (0.19, [(1, 300)])):
        got = spikes.detect(_book(), trades, 1, _params(min_sweep_share=share), "sim", "SIMA").table()
        up = [(r["side"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got.to_pylist() if r["side"] == 1]
        assert up == alerts


def test_the_reference_kernels_give_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    jax_rows = spikes.detect(_book(), _trades(), 1, _params(), "sim", "SIMA").table().to_pylist()
    monkeypatch.setattr(spikes, "flow_windows", flow_windows_ref)
    monkeypatch.setattr(spikes, "window_max", window_max_ref)
    monkeypatch.setattr(walls, "block_medians", lambda x, b, k: block_quantiles_ref(x, b, k, (0.5,))[:, 0])
    assert spikes.detect(_book(), _trades(), 1, _params(), "sim", "SIMA").table().to_pylist() == jax_rows
    # and with the mean absolute baseline, the sweep's share and a hold (their windows too)
    on = _params(sigma_mean_abs=1, min_sweep_share=0.3, hold_ns=300_000_000)
    monkeypatch.undo()
    jax_rows = spikes.detect(_book(), _trades(), 1, on, "sim", "SIMA").table().to_pylist()
    assert jax_rows
    monkeypatch.setattr(spikes, "flow_windows", flow_windows_ref)
    monkeypatch.setattr(spikes, "window_max", window_max_ref)
    monkeypatch.setattr(walls, "block_medians", lambda x, b, k: block_quantiles_ref(x, b, k, (0.5,))[:, 0])
    assert spikes.detect(_book(), _trades(), 1, on, "sim", "SIMA").table().to_pylist() == jax_rows


def test_short_or_empty_inputs_give_no_rows() -> None:
    book, none = _book(), {k: v[:0] for k, v in _trades().items()}
    assert spikes.detect(book, none, 1, _params(), "sim", "SIMA").table().num_rows == 0  # no sweep
    for rows in (0, 1, 103):  # shorter than the window and its baseline
        part = {k: v[:rows] for k, v in book.items()}
        assert spikes.detect(part, _trades(), 1, _params(), "sim", "SIMA").table().num_rows == 0
    empty = {**{k: np.zeros_like(v) for k, v in book.items()}, "ts": book["ts"], "recv": book["recv"]}
    assert spikes.detect(empty, _trades(), 1, _params(), "sim", "SIMA").table().num_rows == 0
