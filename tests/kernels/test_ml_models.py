"""kernels.ml_models / ml_train: forwards against NumPy, planted rules learned, shuffled labels at chance."""

from __future__ import annotations

import random

import jax
import numpy as np
import pytest

from kernels.ml_models import FORWARD, ModelSpec, init_params, weighted_cross_entropy
from kernels.ml_train import TrainConfig, class_weights, fit, predict_proba


def _np(params: dict) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def ref_logreg(p: dict, x: np.ndarray) -> np.ndarray:
    return x @ p["w"] + p["b"]


def ref_mlp(p: dict, x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]


def ref_tcn(p: dict, x: np.ndarray) -> np.ndarray:
    n, steps, _ = x.shape
    h = x
    i = 0
    while f"conv{i}" in p:
        w, b, d = p[f"conv{i}"], p[f"conv{i}_b"], 2**i
        y = np.zeros((n, steps, w.shape[2])) + b
        for t in range(steps):
            for j in range(w.shape[0]):
                if t - j * d >= 0:
                    y[:, t] += h[:, t - j * d] @ w[j]
        h = np.maximum(y, 0)
        i += 1
    last = h[:, -1] + x[:, -1] @ p["skip"] + p["skip_b"]
    return np.maximum(last, 0) @ p["out"] + p["out_b"]


@pytest.mark.parametrize("kind, ref", [("logreg", ref_logreg), ("mlp", ref_mlp), ("tcn", ref_tcn)])
def test_forward_matches_numpy(kind: str, ref: object) -> None:
    rng = np.random.default_rng(7)
    spec = ModelSpec(kind, n_features=5, hidden=8, window=9 if kind == "tcn" else 1)
    params = init_params(spec, jax.random.key(3))
    x = rng.normal(size=(17, 9, 5) if kind == "tcn" else (17, 5)).astype(np.float32)
    got = np.asarray(FORWARD[kind](params, x))
    want = ref(_np(params), x.astype(np.float64))  # type: ignore[operator]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_weighted_cross_entropy_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(11, 3)).astype(np.float32)
    y = rng.integers(0, 3, 11)
    w = rng.uniform(0, 2, 11).astype(np.float32)
    w[3] = 0.0
    logp = logits - np.log(np.exp(logits.astype(np.float64)).sum(1, keepdims=True))
    want = -(w * logp[np.arange(11), y]).sum() / w.sum()
    assert float(weighted_cross_entropy(logits, y, w)) == pytest.approx(want, rel=1e-5)


def test_class_weights_balance_the_classes() -> None:
    y = np.array([0] * 6 + [1] * 3 + [2] * 1)
    cw = class_weights(y, 3)
    totals = np.bincount(y, weights=cw[y])
    np.testing.assert_allclose(totals, [10 / 3] * 3, rtol=1e-6)
    assert class_weights(np.array([0, 0, 2]), 3)[1] == 0.0


def _split(x: np.ndarray, y: np.ndarray) -> tuple:
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    return x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:]


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    scores = []
    for c in range(3):
        tp = np.sum((pred == c) & (y == c))
        denom = np.sum(pred == c) + np.sum(y == c)
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _fit_score(spec: ModelSpec, x: np.ndarray, y: np.ndarray, seed: int) -> float:
    xt, yt, xv, yv, xs, ys = _split(x, y)
    res = fit(spec, xt, yt, xv, yv, TrainConfig(seed=seed, max_steps=800))
    assert res.best_step > 0 and res.history
    return _macro_f1(ys, predict_proba(spec, res.params, xs).argmax(1))


def _planted_flat(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    score = x[:, 0] - 0.5 * x[:, 2]
    # imbalanced like the real labels: a wide flat band in the middle
    y = np.where(score > 0.9, 2, np.where(score < -0.9, 0, 1))
    return x, y


def test_logreg_and_mlp_learn_a_planted_linear_rule() -> None:
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    x, y = _planted_flat(seed)
    for kind in ("logreg", "mlp"):
        f1 = _fit_score(ModelSpec(kind, 6, hidden=16), x, y, seed)
        print(kind, "macro-F1", round(f1, 3))
        assert f1 > 0.8, kind


def test_mlp_learns_a_nonlinear_rule_logreg_cannot() -> None:
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4000, 4)).astype(np.float32)
    y = np.where(x[:, 0] * x[:, 1] > 0.4, 2, np.where(x[:, 0] * x[:, 1] < -0.4, 0, 1))
    mlp = _fit_score(ModelSpec("mlp", 4, hidden=32), x, y, seed)
    lin = _fit_score(ModelSpec("logreg", 4), x, y, seed)
    print(f"mlp {mlp:.3f} logreg {lin:.3f}")
    assert mlp > 0.8 and lin < 0.5


def test_tcn_learns_a_lagged_rule() -> None:
    """The label is a function of a feature 6 steps back: only the temporal model can see it."""
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    rng = np.random.default_rng(seed)
    series = rng.normal(size=(4000 + 16, 3)).astype(np.float32)
    window = 12
    x = np.stack([series[i: i + window] for i in range(4000)])
    lagged = x[:, -7, 1]
    y = np.where(lagged > 0.6, 2, np.where(lagged < -0.6, 0, 1))
    tcn = _fit_score(ModelSpec("tcn", 3, hidden=16, window=window), x, y, seed)
    flat = _fit_score(ModelSpec("mlp", 3, hidden=16), x[:, -1], y, seed)
    print(f"tcn {tcn:.3f} mlp on the last step {flat:.3f}")
    assert tcn > 0.8 and flat < 0.45


def test_shuffled_labels_give_chance() -> None:
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    x, y = _planted_flat(seed)
    y = np.random.default_rng(seed + 1).permutation(y)
    for kind in ("logreg", "mlp"):
        f1 = _fit_score(ModelSpec(kind, 6, hidden=16), x, y, seed)
        print(kind, "macro-F1 on shuffled labels", round(f1, 3))
        assert f1 < 0.45, kind  # chance with balanced weighting is ~1/3


def test_same_seed_same_model() -> None:
    x, y = _planted_flat(5, n=600)
    spec = ModelSpec("mlp", 6, hidden=8)
    config = TrainConfig(seed=11, max_steps=100)
    runs = [fit(spec, x[:400], y[:400], x[400:], y[400:], config) for _ in range(2)]
    for k in runs[0].params:
        assert np.array_equal(np.asarray(runs[0].params[k]), np.asarray(runs[1].params[k]))
    other = fit(spec, x[:400], y[:400], x[400:], y[400:], TrainConfig(seed=12, max_steps=100))
    assert not np.array_equal(np.asarray(other.params["w1"]), np.asarray(runs[0].params["w1"]))


def test_early_stopping_stops_before_max_steps_on_noise() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(800, 6)).astype(np.float32)
    y = rng.integers(0, 3, 800)
    res = fit(ModelSpec("mlp", 6, hidden=64), x[:500], y[:500], x[500:], y[500:],
              TrainConfig(max_steps=5000, eval_every=20, patience=3))
    assert res.steps_run < 5000
    assert res.best_step == min(res.history, key=lambda h: h[1])[0]


def ref_deeplob(p: dict, x: np.ndarray) -> np.ndarray:
    """Per-step dense, then pairs of consecutive steps (older, newer) through a dense layer, as loops."""
    h = np.maximum(x @ p["embed"] + p["embed_b"], 0)
    i = 0
    while f"pair{i}" in p:
        steps = h.shape[1]
        h = np.stack([np.maximum(np.concatenate([h[:, 2 * j], h[:, 2 * j + 1]], axis=1) @ p[f"pair{i}"]
                                 + p[f"pair{i}_b"], 0) for j in range(steps // 2)], axis=1)
        i += 1
    assert h.shape[1] == 1
    return h[:, 0] @ p["out"] + p["out_b"]


def test_deeplob_forward_matches_numpy_and_sizes() -> None:
    rng = np.random.default_rng(8)
    spec = ModelSpec("deeplob", n_features=5, hidden=8, window=8, layers=3)
    params = init_params(spec, jax.random.key(4))
    x = rng.normal(size=(13, 8, 5)).astype(np.float32)
    got = np.asarray(FORWARD["deeplob"](params, x))
    assert got.shape == (13, 3)
    np.testing.assert_allclose(got, ref_deeplob(_np(params), x.astype(np.float64)), rtol=2e-4, atol=2e-5)
    # the protocol's size (10 levels per side: 41 channels, 32 steps, 32 channels, 5 layers)
    full = init_params(ModelSpec("deeplob", 41, hidden=32, window=32, layers=5), jax.random.key(0))
    n_params = sum(int(np.asarray(v).size) for v in full.values())
    assert n_params == 41 * 32 + 32 + 5 * (64 * 32 + 32) + 32 * 3 + 3 == 11_843
    with pytest.raises(ValueError, match="window == 2"):
        init_params(ModelSpec("deeplob", 5, hidden=8, window=6, layers=3), jax.random.key(0))


def test_deeplob_learns_a_lagged_rule_and_is_deterministic() -> None:
    """The label reads channel 1 five steps back: the raw-book model learns it, one seed one model."""
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    rng = np.random.default_rng(seed)
    window, n = 8, 1500
    series = rng.normal(size=(n + window, 4)).astype(np.float32)
    x = np.stack([series[i: i + window] for i in range(n)])
    lagged = x[:, -6, 1]
    y = np.where(lagged > 0.6, 2, np.where(lagged < -0.6, 0, 1))
    spec = ModelSpec("deeplob", 4, hidden=8, window=window, layers=3)
    xt, yt, xv, yv, xs, ys = _split(x, y)
    config = TrainConfig(seed=seed, max_steps=300, learning_rate=1e-2)
    res = fit(spec, xt, yt, xv, yv, config)
    f1 = _macro_f1(ys, predict_proba(spec, res.params, xs).argmax(1))
    print(f"deeplob macro-F1 {f1:.3f} after {res.steps_run} steps")
    assert f1 > 0.7
    short = [fit(spec, xt, yt, xv, yv, config._replace(max_steps=20)) for _ in range(2)]
    for k in res.params:
        assert np.array_equal(np.asarray(short[0].params[k]), np.asarray(short[1].params[k])), k
