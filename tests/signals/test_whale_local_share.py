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
