"""tapeflow.ml.metrics against hand-computed values; the naive baselines' rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tapeflow.ml import baselines
from tapeflow.ml.metrics import accuracy, confusion, log_loss, macro_f1, matthews, score

Y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 0])
P = np.array([0, 1, 1, 1, 2, 2, 2, 0, 2, 0])


def test_confusion_f1_accuracy_by_hand() -> None:
    cm = confusion(Y, P)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 3]]
    # class 0: tp 2, fp 1, fn 1 -> 4/6; class 1: tp 2, fp 1, fn 1 -> 4/6; class 2: tp 3, fp 1, fn 1 -> 6/8
    assert macro_f1(cm) == pytest.approx((4 / 6 + 4 / 6 + 6 / 8) / 3)
    assert accuracy(cm) == pytest.approx(0.7)
    # one class predicted everywhere: the two never-predicted classes score 0
    assert macro_f1(confusion(Y, np.full(10, 2))) == pytest.approx((2 * 4 / (10 + 4)) / 3)


def test_matthews_binary_and_extremes() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    tp, tn, fp, fn = 3, 3, 1, 1
    want = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews(confusion(y, p, 2)) == pytest.approx(want)
    assert matthews(confusion(Y, Y)) == pytest.approx(1.0)
    assert matthews(confusion(Y, np.zeros(10, int))) == 0.0  # undefined -> 0


def test_log_loss_by_hand() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.0, 1.0, 0.0]])
    y = np.array([0, 2, 0])
    assert log_loss(y, proba) == pytest.approx(-(math.log(0.7) + math.log(0.8) + math.log(1e-15)) / 3)


def test_bootstrap_over_blocks() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, 3, n))
    proba = np.eye(3)[pred] * 0.9 + 0.1 / 3
    ts = np.arange(n) * 10**9 * 12  # 10 hours
    s = score(y, proba, ts)
    assert s.blocks == 10
    lo, hi = s.macro_f1_ci
    assert lo < s.macro_f1 < hi and hi - lo < 0.1
    one_block = score(y, proba, ts, block_ns=10**18)
    assert math.isnan(one_block.macro_f1_ci[0])  # one block: no interval, said so, never a fake one
    forced = score(y, proba, ts, pred=np.zeros(n, int))
    assert forced.confusion[:, 1:].sum() == 0 and forced.log_loss == s.log_loss


def test_baseline_rules() -> None:
    y = np.array([1, 1, 1, 0, 2, 1])
    cls, proba = baselines.majority(y, 4)
    assert cls.tolist() == [1] * 4 and proba.shape == (4, 3) and proba[0].argmax() == 1
    past_test = np.array([2, -1, 0])
    cls, proba = baselines.last_move(np.array([0, 1, -1, 2, 2, 1]), y, past_test)
    assert cls.tolist() == [2, 1, 0]  # the rule, unknown -> flat
    np.testing.assert_allclose(proba.sum(1), 1.0)
    # OFI linear: a return that rises with OFI; the classes come out in OFI order with the training shares
    ofi = np.linspace(-2, 2, 300)[:, None]
    ret = 1e-4 * ofi[:, 0]
    y = np.where(ret > 5e-5, 2, np.where(ret < -5e-5, 0, 1))
    cls, _ = baselines.ofi_linear(ofi, ret, y, np.array([[-1.9], [0.0], [1.9]]))
    assert cls.tolist() == [0, 1, 2]
    cls, _ = baselines.ofi_linear(-ofi, ret, y, np.array([[-1.9], [0.0], [1.9]]))
    assert cls.tolist() == [2, 1, 0]  # the fit's sign, not the feature's, decides
