"""A whale block or sweep is judged again ``hold_ns`` after its print (``whale.max_hold_ticks``):
a price jump's sweep (SIMULATOR.md's spike plant) moves the mid its way and holds there, a whale's
does not."""

from __future__ import annotations

import json

import numpy as np

from tapeflow.schemas.records import ASK, BID
from tapeflow.signals import whale
from tapeflow.signals.config import DEFAULT_PATH, load
from tests.signals.prints import print_columns

S = 1_000_000_000


def _day(jump_ticks: int):
    rng = np.random.default_rng(3)
    n = 600  # 30 min of ordinary prints, one every 3 s
    ts = list(np.arange(n) * 3 * S)
    side = list(rng.choice([BID, ASK], n))
    size = list(np.maximum(1, rng.lognormal(np.log(100), 0.3, n)).astype(np.int64))
    price = [10_000] * n
    sweep_at = 1000 * S + S // 2  # one buy through 5 levels, 10x the median print
    ts += [sweep_at] * 5
    side += [BID] * 5
    size += [200] * 5
    price += [10_001 + i for i in range(5)]
    trades = print_columns(ts, price, size, side)
    # a 100 ms grid: bid 10_000 / ask 10_001; from the sweep on, both moved up by jump_ticks
    grid_ts = np.arange(0, 1800 * S, S // 10)
    up = np.where(grid_ts >= sweep_at, jump_ticks, 0)
    book = {"ts": grid_ts, "recv": grid_ts + 7,
            "bid_p": (10_000 + up)[:, None], "ask_p": (10_001 + up)[:, None]}
    return trades, book, sweep_at


def _sweeps(rows):
    return [r for r in rows if json.loads(r["evidence"])["style"] == "sweep"]


def test_a_sweep_whose_price_jump_holds_is_not_a_whale():
    params = load(DEFAULT_PATH).for_instrument("whale", "SIMA", "equity")
    assert params["max_hold_ticks"] > 0 and params["hold_ns"] > 0
    trades, book, at = _day(jump_ticks=int(np.ceil(params["max_hold_ticks"])) + 1)
    assert _sweeps(whale.detect(trades, params, "sim", "SIMA", book=book).table().to_pylist()) == []
    # without the book there is nothing to judge it by: it alerts at the print, as before the check
    plain = _sweeps(whale.detect(trades, params, "sim", "SIMA").table().to_pylist())
    assert [r["ts_event_ns"] for r in plain] == [at]


def test_a_sweep_whose_price_comes_back_alerts_when_its_hold_has_passed():
    params = load(DEFAULT_PATH).for_instrument("whale", "SIMA", "equity")
    trades, book, at = _day(jump_ticks=1)
    got = _sweeps(whale.detect(trades, params, "sim", "SIMA", book=book).table().to_pylist())
    assert [(r["ts_event_ns"], r["start_ns"], r["end_ns"]) for r in got] == [(at + params["hold_ns"], at, at)]
    # its evidence is complete when the grid row at the end of the hold is captured
    assert got[0]["ts_recv_ns"] == (at + params["hold_ns"]) // (S // 10) * (S // 10) + 7
    assert json.loads(got[0]["evidence"])["held_ticks"] == 1.0
    # the check turned off: the same sweep alerts at its print
    off = {**params, "max_hold_ticks": 0.0}
    assert [r["ts_event_ns"] for r in _sweeps(whale.detect(trades, off, "sim", "SIMA", book=book)
                                                 .table().to_pylist())] == [at]
