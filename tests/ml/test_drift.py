"""Feature PSI and live performance decay: the drift sensor's two measures."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa

from tapeflow.ml.dataset import Segment
from tapeflow.ml.drift import PSI_THRESHOLD, feature_drift, live_decay, performance_decay, psi
from tapeflow.schemas.ml import NO_LABEL


def _seg(x: np.ndarray) -> Segment:
    n = len(x)
    return Segment("s", np.arange(n), x, np.ones(n, np.int64), np.zeros(n), np.zeros(n, np.int64),
                   np.ones(n, bool))


def test_psi_against_a_hand_computed_value() -> None:
    expected = np.arange(100, dtype=float)  # deciles at 9.9, 19.8, ...: ten bins of 10 rows
    actual = np.concatenate([np.full(50, 1.0), np.arange(50, 100, dtype=float)])
    # bin 0 holds 50% of actual against 10%; bins 1-4 0% (floored at 1e-4); bins 5-9 10% each
    want = (0.5 - 0.1) * np.log(0.5 / 0.1) + 4 * (1e-4 - 0.1) * np.log(1e-4 / 0.1)
    assert abs(psi(expected, actual) - want) < 1e-9
    assert psi(np.full(50, 3.0), np.full(40, 3.0)) == 0.0


def test_planted_shift_drifts_and_sampling_noise_does_not() -> None:
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c"]
    train = _seg(rng.normal(size=(3000, 3)))
    same = _seg(rng.normal(size=(2000, 3)))
    quiet = feature_drift([train], [same], names)
    print(quiet.psi)
    assert not quiet.drifted and quiet.worst[1] < 0.05
    shifted = rng.normal(size=(2000, 3))
    shifted[:, 1] += 0.8
    loud = feature_drift([train], [_seg(shifted)], names)
    print(loud.psi)
    assert loud.drifted and loud.worst[0] == "b" and loud.worst[1] > PSI_THRESHOLD
    assert loud.psi["a"] < 0.05
    # too few recent rows: no verdict either way
    assert not feature_drift([train], [_seg(shifted[:50])], names).drifted


def test_live_decay_joins_predictions_with_the_labels_that_became_known() -> None:
    y = np.array([-1, 0, 1] * 100)
    ts = np.arange(len(y)) * 10**9
    examples = pa.table({"ts_event_ns": ts, "label_10s": pa.array(np.where(np.arange(len(y)) % 50 == 0,
                                                                           NO_LABEL, y), pa.int32())})
    preds = pa.table({"ts_event_ns": ts, "predicted": pa.array(y, pa.int32()),
                      "model_version": pa.array(np.full(len(y), 3), pa.int32()),
                      "horizon_s": pa.array(np.full(len(y), 10), pa.int32())})
    good = live_decay(preds, examples, 3, 10, reference_f1=0.9)
    assert good.rows == 294 and good.live_f1 == 1.0 and not good.decayed
    wrong = preds.set_column(1, "predicted", pa.array(np.zeros(len(y), np.int32)))
    bad = live_decay(wrong, examples, 3, 10, reference_f1=0.9)
    assert bad.decayed and bad.live_f1 < 0.3
    assert live_decay(preds, examples, 4, 10, 0.9).rows == 0  # another version's rows are not its own
    # a model with its own label threshold: labels recomputed from the smoothed returns at it
    smoothed = examples.append_column("smoothed_return_10s", pa.array(y * 3e-5))
    assert live_decay(preds, smoothed, 3, 10, 0.9, alpha=1e-5).live_f1 == 1.0  # the same labels
    at_5bp = live_decay(preds, smoothed, 3, 10, 0.9, alpha=5e-5)  # every label flat: up/down predictions miss
    assert at_5bp.rows == 294 and at_5bp.decayed
    assert not performance_decay(np.zeros(10, np.int64), np.ones(10, np.int64), 0.9).decayed  # too few rows
