"""Naive baselines the models must beat: majority class, last move, and the sign of OFI via a linear fit.

Each is fitted on the training rows and returns, for the test rows, its rule's hard prediction (what
macro-F1, accuracy, MCC and the confusion matrix score) and class probabilities for log loss: the
training rows' class frequencies given the rule's prediction (add-one smoothed).
"""

from __future__ import annotations

import numpy as np

K = 3
FLAT = 1


def _calibrate(pred_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """float64[K, K]: row c = P(y | prediction c) on the training rows, add-one smoothed."""
    counts = np.ones((K, K))
    np.add.at(counts, (pred_train, y_train), 1)
    return counts / counts.sum(1, keepdims=True)


Prediction = tuple[np.ndarray, np.ndarray]  # (int64[n] classes, float64[n, K] probabilities)


def majority(y_train: np.ndarray, n_test: int) -> Prediction:
    """The majority training class, with the training class frequencies as probabilities."""
    freq = np.bincount(y_train, minlength=K).astype(np.float64) + 1
    return np.full(n_test, int(freq.argmax()), np.int64), np.tile(freq / freq.sum(), (n_test, 1))


def last_move(past_train: np.ndarray, y_train: np.ndarray, past_test: np.ndarray) -> Prediction:
    """Predict the label the last horizon earned (the move over ``(t - h, t]``, known at ``t``).

    ``past_*`` are the labels of the rows ``h`` earlier (``-1`` unknown: predicted flat).
    """
    pt = np.where(past_train < 0, FLAT, past_train)
    ps = np.where(past_test < 0, FLAT, past_test)
    return ps.astype(np.int64), _calibrate(pt, y_train)[ps]


def ofi_linear(ofi_train: np.ndarray, ret_train: np.ndarray, y_train: np.ndarray,
               ofi_test: np.ndarray) -> Prediction:
    """A least-squares fit of the smoothed return on OFI over several windows, read as a class.

    ``ofi_*`` float[n, W] (standardized OFI windows). The fitted return is cut into down/flat/up at the
    training quantiles that reproduce the training class shares, so the baseline predicts flat as often
    as flat happens (a pure sign rule never would, and would lose the flat class's F1 entirely).
    """
    design = np.column_stack([np.ones(len(ofi_train)), ofi_train])
    coef, *_ = np.linalg.lstsq(design, ret_train, rcond=None)
    fitted = design @ coef
    shares = np.bincount(y_train, minlength=K) / max(len(y_train), 1)
    lo, hi = np.quantile(fitted, [shares[0], shares[0] + shares[1]]) if len(fitted) else (0.0, 0.0)

    def classify(values: np.ndarray) -> np.ndarray:
        return np.where(values <= lo, 0, np.where(values > hi, 2, FLAT)).astype(np.int64)

    test_fit = np.column_stack([np.ones(len(ofi_test)), ofi_test]) @ coef
    pred = classify(test_fit)
    return pred, _calibrate(classify(fitted), y_train)[pred]
