"""A whale sweep must stand out from its local flow (``whale.min_local_share``): the same sweep alerts
after a quiet stretch and not inside a busy period of ordinary prints (SIMULATOR.md's look-alike)."""

from __future__ import annotations

import json

import numpy as np

from tapeflow.schemas.records import ASK, BID
from tapeflow.signals import whale
from tapeflow.signals.config import DEFAULT_PATH, load

S = 1_000_000_000


def _trades(busy: bool) -> dict[str, np.ndarray]:
    """20 min of one 100-lot print a second (the shapes of test_whale_parent_children: its JAX
    compiles serve both), then (``busy``) 10 s of 4 prints a second of 100-200 lots, then one buy
    sweep of 800 lots through 4 levels."""
    ts = list(np.arange(1200) * S)
    side = [BID if i % 2 else ASK for i in range(1200)]
    size = [100] * 1200
    price = [10_000] * 1200
    t_sweep = 1200 * S + S // 2
    if busy:
        ts += list(t_sweep - 10 * S + np.arange(40) * (S // 4) + 1000)
        side += [BID, ASK] * 20
        size += [100, 200] * 20
        price += [10_000] * 40
    ts += [t_sweep] * 4
    side += [BID] * 4
    size += [200] * 4
    price += [10_000, 10_001, 10_002, 10_003]
    order = np.argsort(np.asarray(ts), kind="stable")
    ts_ns = np.asarray(ts, np.int64)[order]
    return {"ts_event_ns": ts_ns, "ts_recv_ns": ts_ns + 1000,
            "price_nanos": np.asarray(price, np.int64)[order],
            "size_nanos": np.asarray(size, np.int64)[order],
            "aggressor_side": np.asarray(side, np.uint8)[order]}


def _sweeps(trades: dict[str, np.ndarray], share: float) -> list[dict]:
    params = {**load(DEFAULT_PATH).for_instrument("whale", "SIMA", "equity"), "min_local_share": share}
    rows = whale.detect(trades, params, "sim", "SIMA").table().to_pylist()
    return [json.loads(r["evidence"]) for r in rows if '"sweep"' in r["evidence"]]


def test_a_sweep_alerts_after_a_quiet_stretch_not_inside_a_busy_period():
    share = load(DEFAULT_PATH).for_instrument("whale", "SIMA", "equity")["min_local_share"]
    assert 0.0 < share < 0.6
    quiet = _sweeps(_trades(busy=False), share)
    # 800 lots after 10 prints of 100 in the last 10 s: 800 / 1,800 of the local flow
    assert len(quiet) == 1 and quiet[0]["local_share"] >= 0.4, quiet
    # after 7,000 lots in the 10 s before it the same sweep is 800 / 7,800 of it: an ordinary print there
    assert _sweeps(_trades(busy=True), share) == []
    # without the gate it alerts there too: what the gate is for
    busy = _sweeps(_trades(busy=True), 0.0)
    assert len(busy) == 1 and busy[0]["local_share"] < 0.15, busy


def _with_burst_after(trades: dict[str, np.ndarray], after_ns: int) -> dict[str, np.ndarray]:
    """``trades`` plus 8 ordinary two-sided prints of 100-200 lots in the ``after_ns`` after the sweep."""
    t_sweep = 1200 * S + S // 2
    ts = np.r_[trades["ts_event_ns"], t_sweep + 1000 + np.arange(8) * (after_ns // 8)]
    order = np.argsort(ts, kind="stable")
    extra = {"ts_recv_ns": ts[-8:] + 1000, "price_nanos": np.full(8, 10_000),
             "size_nanos": np.array([100, 200] * 4), "aggressor_side": np.array([BID, ASK] * 4, np.uint8)}
    out = {"ts_event_ns": ts[order]}
    for c, v in extra.items():
        out[c] = np.r_[trades[c], v].astype(trades[c].dtype)[order]
    return out


def test_the_flow_within_the_hold_after_a_sweep_counts_in_its_local_share():
    params = load(DEFAULT_PATH).for_instrument("whale", "SIMA", "equity")
    after = params["local_after_ns"]
    assert 0 < after <= params["hold_ns"] and params["max_hold_ticks"] > 0
    grid_ts = np.arange(0, 1300 * S, S // 10)  # a flat book: the hold check passes every sweep
    book = {"ts": grid_ts, "recv": grid_ts + 7, "bid_p": np.full((len(grid_ts), 1), 10_000),
            "ask_p": np.full((len(grid_ts), 1), 10_001)}

    def sweeps(trades, **over):
        rows = whale.detect(trades, {**params, **over}, "sim", "SIMA", book=book).table().to_pylist()
        return [json.loads(r["evidence"]) for r in rows if '"sweep"' in r["evidence"]]

    quiet = _trades(busy=False)
    # nothing after it, 9 prints of 100 in the 10 s before: 800 / 1,700 of the flow around it
    assert [e["local_share"] for e in sweeps(quiet)] == [round(800 / 1700, 3)]
    # a burst of 1,200 lots right after it: 800 / 2,900, an ordinary print of a busy period
    burst = _with_burst_after(quiet, after)
    assert sweeps(burst) == []
    # the burst counts only while the hold delays the alert: with the window off, or without a
    # book (no hold: the alert comes at the print), the same sweep alerts
    assert len(sweeps(burst, local_after_ns=0)) == 1
    plain = whale.detect(burst, params, "sim", "SIMA").table().to_pylist()
    assert len([r for r in plain if '"sweep"' in r["evidence"]]) == 1
