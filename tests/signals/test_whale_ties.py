"""Two whale events at the same instant (two parent windows ending on one print) must not crash the
detector: found by an evaluation seed of tests/signals/test_l3_scores.py (sorting compared dicts)."""

from __future__ import annotations

import numpy as np

from tapeflow.schemas.records import ASK, BID
from tapeflow.signals import whale
from tapeflow.signals.config import DEFAULT_PATH, load

S = 1_000_000_000


def test_two_parent_events_at_one_instant(monkeypatch):
    params = load(DEFAULT_PATH).for_instrument("whale", "SIMA")
    ts = np.arange(50, dtype=np.int64) * S
    side = np.where(np.arange(50) % 2, BID, ASK).astype(np.uint8)
    trades = {"ts_event_ns": ts, "ts_recv_ns": ts + 1000, "price_nanos": np.full(50, 10_000, np.int64),
              "size_nanos": np.full(50, 100, np.int64), "aggressor_side": side}

    def two_parents(p, median, params):
        t = int(p["ts"][-1])
        return [(t, "parent", dict(ts_event_ns=t, ts_recv_ns=t, size_nanos=1, start_ns=t, end_ns=t, score=2.0,
                                   side=side, evidence=dict(style="parent"))) for side in (1, -1)]

    monkeypatch.setattr(whale, "_parents", two_parents)
    got = whale.detect(trades, params, "sim", "SIMA").table().to_pylist()
    assert sorted(r["side"] for r in got) == [-1, 1]
