"""The derived signals' confidences (tapeflow/derivatives/calibration.py): the shipped per-kind maps
are the fit on the training seeds of the planted-episode simulator, and they are reliable on held-out
seeds, where the old uncalibrated map (a = 1, b = 1) is not. The held-out seeds are fixed: signals of
one seed are correlated (a level crossing back and forth), so a fresh draw each run would make the
reliability check fail by chance now and then (3 of 25 draws of 16 seeds at three standard errors)."""

from __future__ import annotations

import math

import pytest

from tapeflow.derivatives.calibration import KEYS, KINDS, TRAIN_SEEDS, fit, labelled, reliability
from tapeflow.signals.config import DEFAULT_PATH, load

HELD_OUT = range(1000, 1024)  # seeds, apart from TRAIN_SEEDS


@pytest.fixture(scope="module")
def thresholds():  # noqa: ANN201
    return load(DEFAULT_PATH)


def _shipped(thresholds, kind: str) -> tuple[float, float]:  # noqa: ANN001
    params = thresholds.for_instrument("derivatives", "SIMUSDT")
    return params[f"{KEYS[kind]}_platt_a"], params[f"{KEYS[kind]}_platt_b"]


def test_shipped_maps_are_the_fit_on_the_training_seeds(thresholds) -> None:  # noqa: ANN001
    rows = labelled(TRAIN_SEEDS, thresholds)
    for kind in KINDS:
        a, b = fit(rows, kind)
        assert _shipped(thresholds, kind) == pytest.approx((a, b), abs=2e-3), kind
        mine = [r for r in rows if r.kind == kind]
        assert 0 < sum(r.hit for r in mine) < len(mine), kind  # both hits and false alarms to fit on


def _reliable(bins: list[tuple[int, float, float]]) -> bool:
    # each bin's mean confidence within three binomial standard errors (plus 0.05) of its hit share,
    # counting half the signals as independent (they come in runs)
    return all(abs(conf - share) <= 3 * math.sqrt(max(conf * (1 - conf), 0.01) / (n / 2)) + 0.05
               for n, conf, share in bins)


def _brier(rows: list, a: float, b: float) -> float:  # noqa: ANN001
    return sum((1 / (1 + math.exp(-(a * math.log(r.score) + b))) - r.hit) ** 2 for r in rows)


def test_confidences_are_reliable_on_held_out_seeds(thresholds) -> None:  # noqa: ANN001
    assert not set(HELD_OUT) & set(TRAIN_SEEDS)
    rows = labelled(HELD_OUT, thresholds)
    uncalibrated_fails, brier, brier_old = 0, 0.0, 0.0
    for kind in KINDS:
        a, b = _shipped(thresholds, kind)
        bins = reliability(rows, kind, a, b, bins=3)
        print(kind, bins)
        assert sum(n for n, _, _ in bins) >= 40, kind  # enough signals to judge
        assert _reliable(bins), (kind, bins)
        mine = [r for r in rows if r.kind == kind]
        brier, brier_old = brier + _brier(mine, a, b), brier_old + _brier(mine, 1.0, 1.0)
        uncalibrated_fails += not _reliable(reliability(rows, kind, 1.0, 1.0, bins=3))
    assert brier < 0.9 * brier_old  # over all kinds, closer to the truth than the old map
    assert uncalibrated_fails >= 2  # the check can fail: the old map claimed 0.73 and more for every signal
