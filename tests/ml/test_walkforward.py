"""Walk-forward by day: purged splits, a planted rule beats every baseline, shuffled labels do not."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kernels.ml_train import TrainConfig
from tapeflow.errors import TapeflowError
from tapeflow.ml.dataset import Scaler, Segment, model_features, split_by, windows
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.metrics import confusion, macro_f1
from tapeflow.ml.report import render, to_json
from tapeflow.ml.walkforward import (
    BASELINES,
    WalkForwardConfig,
    _split_pool,
    decide,
    decision_offsets,
    walk_forward,
)

S = 10**9
DAY = 86_400 * S
NAMES = model_features(ExampleParams())
QUICK = TrainConfig(max_steps=400, eval_every=25, patience=4)


def _days(seed: int, n_days: int = 4, rows: int = 1200, planted: bool = True) -> list[Segment]:
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_days):
        x = rng.normal(size=(rows, len(NAMES)))
        signal = x[:, NAMES.index("imbalance_l1")] + 0.3 * rng.normal(size=rows)
        y = np.where(signal > 0.5, 2, np.where(signal < -0.5, 0, 1))
        if not planted:
            y = rng.permutation(y)
        ts = 1_700_000_000 * S - (1_700_000_000 * S) % DAY + d * DAY + np.arange(rows) * S
        past = np.concatenate([np.full(10, -1), y[:-10]])
        usable = np.arange(rows) >= 60
        out.append(Segment(f"day{d}", ts, x, y, rng.normal(size=rows) * 1e-4, past, usable))
    return out


def test_splits_are_purged_and_chronological() -> None:
    days = _days(1)
    h_ns = 10 * S
    test_start = int(days[3].ts_ns[0])
    train, val = _split_pool(days[:3], 0.2, h_ns, test_start)
    train_ts = np.concatenate([d.ts_ns[r] for d, r in zip(days[:3], train, strict=True)])
    val_ts = np.concatenate([d.ts_ns[r] for d, r in zip(days[:3], val, strict=True)])
    assert train_ts.max() + h_ns < val_ts.min()  # no training label window reaches validation
    assert val_ts.max() + h_ns < test_start
    assert 0.15 < len(val_ts) / (len(val_ts) + len(train_ts)) < 0.25
    # hours: the last rows of each hour lose their label window to the purge, never cross it
    hours = split_by(days[0], 3600 * S // 4)
    assert [len(h.ts_ns) for h in hours] == [900, 300]


def test_planted_rule_beats_every_baseline() -> None:
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    cfg = WalkForwardConfig(horizon_s=10, train_folds=2, models=("logreg", "mlp"), seed=seed, train=QUICK,
                            block_ns=600 * S)
    result = walk_forward(_days(seed), NAMES, cfg)
    print(render(result, "planted"))
    assert [f.name for f in result.folds] == ["day1", "day2", "day3"]
    best = max(result.scores[b].macro_f1 for b in BASELINES)
    for model in cfg.models:
        s = result.scores[model]
        assert s.macro_f1 > 0.65 and s.macro_f1 > best + 0.25
        assert s.macro_f1_ci[0] > best  # the interval clears the baselines too
    assert set(to_json(result)["scores"]) == {*cfg.models, *BASELINES}


def test_shuffled_labels_stay_at_chance() -> None:
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    cfg = WalkForwardConfig(horizon_s=10, train_folds=2, models=("logreg", "tcn"), window=5, seed=seed,
                            train=QUICK, block_ns=600 * S)
    result = walk_forward(_days(seed, n_days=3, planted=False), NAMES, cfg)
    for model in cfg.models:
        f1 = result.scores[model].macro_f1
        print(model, round(f1, 3))
        assert f1 < 0.42


def test_refuses_too_few_folds() -> None:
    with pytest.raises(TapeflowError, match="at least 2 folds"):
        walk_forward(_days(0, n_days=1), NAMES)


def test_scaler_and_windows() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0], [100.0, 5.0]])
    sc = Scaler.fit(x[:2])
    z = sc.transform(x)
    assert z[:, 1].tolist() == [0, 0, 0, 0]  # constant feature: std 1, not a division by 0
    assert z[2, 0] == 0.0 and z[3, 0] == 5.0  # NaN -> the training mean, outliers clipped
    w = windows(np.arange(5, dtype=np.float32)[:, None], np.array([0, 4]), 3)
    assert w[:, :, 0].tolist() == [[0, 0, 0], [2, 3, 4]]


def test_decision_offsets_recover_rare_classes() -> None:
    """A model whose probabilities always favour the common flat class still ranks rare moves: the
    offsets chosen on validation turn that ranking into up/down predictions."""
    rng = np.random.default_rng(4)
    y = rng.choice(3, 3000, p=[0.05, 0.9, 0.05])
    score_ = rng.normal(size=3000) + np.array([-1.5, 0.0, 1.5])[y]
    proba = np.stack([0.04 + 0.05 * (score_ < -1.5), np.full(3000, 0.9), 0.04 + 0.05 * (score_ > 1.5)], 1)
    assert (proba.argmax(1) == 1).all()
    off = decision_offsets(proba[:1500], y[:1500])
    before = macro_f1(confusion(y[1500:], proba[1500:].argmax(1)))
    after = macro_f1(confusion(y[1500:], decide(proba[1500:], off)))
    print(f"offsets {off}, macro-F1 {before:.3f} -> {after:.3f}")
    assert after > before + 0.2
    assert decision_offsets(proba[:10], np.ones(10, int)).tolist() == [0, 0, 0]


def test_model_features_are_causal() -> None:
    """Every model input at t (past returns and the past label included) is unchanged when only the
    rows after t change."""
    from tapeflow.ml import training_examples
    from tapeflow.ml.dataset import segment
    from tests.ml.test_examples import TRADES, _perturb_after, snaps

    rng = np.random.default_rng(9)
    mids = 1000 + np.cumsum(rng.integers(-1, 2, 300)) * 2
    book = snaps([(1_700_000_000 * S + i * S, [(int(m) - 1, int(rng.integers(1, 9)))],
                   [(int(m) + 1, int(rng.integers(1, 9)))]) for i, m in enumerate(mids)])
    p = ExampleParams()
    t_ns = int(book.column("ts_event_ns")[150].as_py())
    base = segment(training_examples(book, TRADES.slice(0, 0)), 10, p, "a")
    book2, _ = _perturb_after(book, TRADES, t_ns)
    other = segment(training_examples(book2, TRADES.slice(0, 0)), 10, p, "b")
    np.testing.assert_array_equal(base.x[:151], other.x[:151])
    np.testing.assert_array_equal(base.past_label[:151], other.past_label[:151])
    assert not np.array_equal(base.y[130:151], other.y[130:151])  # the labels did see the change


def _book(seed: int = 9, n: int = 300):  # type: ignore[no-untyped-def]
    from tests.ml.test_examples import snaps

    rng = np.random.default_rng(seed)
    mids = 1000 + np.cumsum(rng.integers(-1, 2, n)) * 2
    return snaps([(1_700_000_000 * S + i * S, [(int(m) - 1, int(rng.integers(1, 9)))],
                   [(int(m) + 1, int(rng.integers(1, 9)))]) for i, m in enumerate(mids)])


def test_relabel_matches_examples_built_at_that_alpha() -> None:
    """Relabelling a segment at another threshold gives what ``training_examples`` writes when built
    with that threshold (labels, past labels, the past-label input), and the same labels at its own."""
    from dataclasses import replace

    from tapeflow.ml import training_examples
    from tapeflow.ml.dataset import segment
    from tests.ml.test_examples import TRADES

    book, p = _book(), ExampleParams()
    base = segment(training_examples(book, TRADES.slice(0, 0), p), 10, p, "a")
    np.testing.assert_array_equal(base.relabel(p.alpha, 10).y, base.y)
    for alpha in (5e-4, 2e-3, 5e-3):
        q = replace(p, alpha=alpha)
        want = segment(training_examples(book, TRADES.slice(0, 0), q), 10, q, "b")
        got = base.relabel(alpha, 10)
        assert not np.array_equal(want.y, base.y)  # the threshold matters on this book
        np.testing.assert_array_equal(got.y, want.y)
        np.testing.assert_array_equal(got.past_label, want.past_label)
        np.testing.assert_array_equal(got.x, want.x)


def test_last_mid_move_by_hand() -> None:
    from tapeflow.ml.dataset import last_mid_move

    ts = np.arange(8) * S
    mid = np.array([10.0, 10.0, 11.0, np.nan, 11.0, 10.0, 10.0, 10.0])
    sign, age = last_mid_move(ts, mid, 60)
    assert sign.tolist() == [0, 0, 1, 1, 1, -1, -1, -1]
    np.testing.assert_allclose(np.expm1(age), [60, 60, 0, 1, 2, 0, 1, 2])
    sign, age = last_mid_move(ts, mid, 2)  # a move 2 s old or more has left the window (t - 2 s, t]
    assert sign.tolist() == [0, 0, 1, 1, 0, -1, -1, 0]
    np.testing.assert_allclose(np.expm1(age), [2, 2, 0, 1, 2, 0, 1, 2])


def test_fold_alpha_comes_from_training_rows_only() -> None:
    """``flat_share``: each fold's threshold makes that share of its training rows flat, and changing
    the returns of a day never trained on (the last test day) changes no fold's threshold."""
    days = _days(5)
    for i, d in enumerate(days):  # |return| of day i uniform on (0, (i + 1) * 1e-4)
        d.smoothed_return[:] = np.random.default_rng(i).uniform(-1, 1, len(d.y)) * (i + 1) * 1e-4
        d.y[:] = np.where(d.smoothed_return > 0, 2, 0)  # labels at alpha 0, to be replaced
    cfg = WalkForwardConfig(horizon_s=10, train_folds=1, models=("logreg",), block_ns=600 * S, flat_share=0.5,
                            train=TrainConfig(max_steps=50, eval_every=25, patience=1))  # alphas, not skill
    first = walk_forward(days, NAMES, cfg)
    # one training day each: the median |return| of day i - 1's training rows, ~ i * 0.5e-4
    for i, f in enumerate(first.folds, start=1):
        assert f.alpha is not None and abs(f.alpha - i * 0.5e-4) < 0.06 * i * 1e-4
    # test day i (|return| up to (i + 1) 1e-4) relabelled at alpha ~ i 0.5e-4: flat share i / (2 (i + 1))
    flat = (first.scores["majority"].confusion.sum(1) / first.scores["majority"].n)[1]
    assert abs(flat - np.mean([i / (2 * (i + 1)) for i in (1, 2, 3)])) < 0.03
    days[-1].smoothed_return[:] *= 100
    second = walk_forward(days, NAMES, cfg)
    assert [f.alpha for f in second.folds] == [f.alpha for f in first.folds]
