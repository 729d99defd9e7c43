"""Signal scores as features: hand-computed sums, the known-instant rule, and no look-ahead."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.errors import TapeflowError
from tapeflow.ml import ExampleParams, feature_schema_hash, training_examples
from tapeflow.ml.dataset import model_features, segment
from tapeflow.ml.examples import feature_names
from tapeflow.ml.signal_features import signal_feature_names, signal_features
from tapeflow.signals.rows import Alerts
from tests.ml.test_examples import snaps, trades

S = 1_000_000_000
T0 = 1_700_000_000 * S
W = 5  # signal window (s)
P = ExampleParams(levels=2, ofi_windows_s=(1, 2), vol_window_s=2, flow_windows_s=(2,), horizons_s=(1, 2),
                  alpha=1e-3, signal_window_s=W)


def alerts(rows: list[tuple[int, int, str, int, float]], symbol: str = "s") -> pa.Table:
    """rows: (ts_event_ns, ts_recv_ns, kind, side, confidence)."""
    a = Alerts("v", symbol, "test/1", {"platt_a": 1.0, "platt_b": 0.0})
    for ev, rc, kind, side, conf in rows:
        a.add(ts_event_ns=ev, ts_recv_ns=rc, kind=kind, side=side, size_nanos=1, start_ns=ev, end_ns=ev,
              score=1.0, evidence={}, confidence=conf)
    return a.table()


def test_sums_by_hand_and_the_known_instant() -> None:
    grid = T0 + S * np.arange(8)
    sig = alerts([
        (T0 + S, T0 + S, "whale", 1, 0.5),                 # known at 1 s
        (T0 + 3 * S // 2, T0 + 22 * S // 10, "spoofing", -1, 0.8),  # event 1.5 s, received 2.2 s: known 2.2 s
        (T0 + 2 * S, T0 + 2 * S, "contraction", 0, 0.25),  # no side: counts +1 * confidence
        (T0 + 2 * S, T0 + 2 * S, "whale", -1, 0.125),
    ])
    f = signal_features(grid, sig, 2)  # window (t - 2 s, t]
    assert f["signal_whale_2s"].tolist() == [0, 0.5, 0.375, -0.125, 0, 0, 0, 0]
    assert f["signal_spoofing_2s"].tolist() == [0, 0, 0, -0.8, -0.8, 0, 0, 0]
    assert f["signal_contraction_2s"].tolist() == [0, 0, 0.25, 0.25, 0, 0, 0, 0]
    assert f["signal_any_2s"].tolist() == pytest.approx([0, 0.5, 0.875, 1.175, 0.8, 0, 0, 0])
    assert f["signal_iceberg_2s"].tolist() == [0] * 8
    none = signal_features(grid, None, 2)
    assert set(none) == set(signal_feature_names(2)) and all(not v.any() for v in none.values())


def test_bad_input_is_a_clear_error() -> None:
    grid = T0 + S * np.arange(3)
    with pytest.raises(TapeflowError, match="confidence was nan at row 1"):
        signal_features(grid, alerts([(T0, T0, "whale", 1, 0.5), (T0, T0, "whale", 1, float("nan"))]), 2)
    with pytest.raises(TapeflowError, match="signal table"):
        signal_features(grid, pa.table({"x": [1]}), 2)
    with pytest.raises(TapeflowError, match="pass the signal rows"):
        training_examples(*_day(random.Random(1), 10), P)


def test_default_dataset_is_unchanged() -> None:
    assert not any(n.startswith("signal_") for n in feature_names(ExampleParams()))
    assert feature_schema_hash(ExampleParams()) != feature_schema_hash(ExampleParams(signal_window_s=60))
    names = model_features(P)
    assert names[-1] == "past_label" and set(signal_feature_names(W)) <= set(names)


def _day(rng: random.Random, n: int) -> tuple[pa.Table, pa.Table]:
    mid, rows, tr = 1000, [], []
    for i in range(n):
        mid += rng.choice((-2, 0, 0, 2))
        bids, asks = [(mid - 1, rng.randint(1, 9)), (mid - 3, 5)], [(mid + 1, rng.randint(1, 9))]
        rows.append((T0 + i * S, bids, asks))
        tr.append((T0 + i * S + S // 3, rng.randint(1, 20), rng.choice((ord("B"), ord("A")))))
    return snaps(rows), trades(tr)


def _random_alerts(rng: random.Random, n_rows: int, span_s: int) -> list[tuple[int, int, str, int, float]]:
    kinds = ("whale", "spoofing", "hidden", "contraction", "stealth")
    out = []
    for _ in range(n_rows):
        ev = T0 + rng.randrange(span_s * S)
        out.append((ev, ev + rng.randrange(2 * S), rng.choice(kinds), rng.choice((-1, 0, 1)),
                    rng.random()))
    return out


def test_a_shifted_future_signal_leaves_earlier_windows_unchanged() -> None:
    seed = random.randrange(1_000_000)
    print(f"seed {seed}")
    rng = random.Random(seed)
    book, tape = _day(rng, 60)
    rows = _random_alerts(rng, 40, 60)
    base = training_examples(book, tape, P, signals=alerts(rows))
    base_x = segment(base, 1, P, "base").x
    grid = base.column("ts_event_ns").to_numpy()
    names = signal_feature_names(W)
    for t_ns in (int(grid[15]), int(grid[30]), int(grid[45])):
        future = [i for i, r in enumerate(rows) if max(r[0], r[1]) > t_ns]
        i = rng.choice(future)
        ev, rc, kind, side, conf = rows[i]
        # just after t (1 ns: a one-step look-ahead would see it) with its side flipped, another
        # confidence and kind; and received late (event time at t, capture after it)
        other_conf = conf + 0.25 if conf < 0.75 else conf - 0.5
        for moved in ((t_ns + 1, t_ns + 1, "whale", -side or 1, 1 - conf),
                      (t_ns, t_ns + 1, kind, side, other_conf)):
            shifted = [*rows[:i], moved, *rows[i + 1:]]
            other = training_examples(book, tape, P, signals=alerts(shifted))
            upto = int(np.searchsorted(grid, t_ns, side="right"))
            for name in names:
                a, b = base.column(name).to_numpy()[:upto], other.column(name).to_numpy()[:upto]
                assert a.tobytes() == b.tobytes(), f"{name} at or before t changed when a later signal moved"
            assert segment(other, 1, P, "other").x[:upto].tobytes() == base_x[:upto].tobytes()
            # the move reaches the windows after t: the perturbation is seen where it is allowed
            after = slice(upto, upto + W)
            assert any(base.column(n).to_numpy()[after].tobytes()
                       != other.column(n).to_numpy()[after].tobytes() for n in names)
