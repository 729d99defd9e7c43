"""Training loop for the ``kernels.ml_models`` classifiers: AdamW (optax), class weights, early stopping.

Deterministic: the parameters come from ``jax.random.key(seed)`` and the mini-batches from a NumPy
generator seeded with the same ``seed``, so one seed gives one model. Shapes are fixed per call site
(mini-batches of ``batch_size`` rows, evaluation sets padded to a power of two with weight-0 rows),
so the jitted step compiles once per model shape, not once per fold.

A Dagster backfill trains each model once per instrument-day by design (``tapeflow.ml.candidates``:
the ``model`` asset stores what it trained, ``champion`` and ``model_backtest`` read it), so
:func:`fit` keeps no memory of earlier calls.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kernels.ml_models import FORWARD, ModelSpec, Params, init_params, weighted_cross_entropy


class TrainConfig(NamedTuple):
    """Optimizer and stopping rule; every field has a default that works on the 1 s examples."""

    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_steps: int = 1500
    eval_every: int = 50     # steps between validation losses
    patience: int = 6        # evaluations without a better validation loss before stopping
    seed: int = 0


class FitResult(NamedTuple):
    """The parameters at the best validation loss and how training went."""

    params: Params
    best_step: int
    best_val_loss: float
    steps_run: int
    history: tuple[tuple[int, float], ...]  # (step, validation loss) at each evaluation


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced weights ``n / (K_present * count_k)`` (0 for an absent class); float32[K].

    Each present class then carries the same total weight, so a rare up/down class counts as much
    as the common flat one (what macro-F1 rewards).
    """
    counts = np.bincount(labels.astype(np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    out = np.zeros(n_classes, np.float64)
    out[present] = counts.sum() / (present.sum() * counts[present])
    return out.astype(np.float32)


def _bucket(n: int) -> int:
    return max(64, 1 << max(0, int(n - 1).bit_length()))


def _pad(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = _bucket(len(y))
    extra = size - len(y)
    xp = np.concatenate([x, np.zeros((extra, *x.shape[1:]), np.float32)])
    return xp, np.concatenate([y, np.zeros(extra, y.dtype)]), np.concatenate([w, np.zeros(extra, np.float32)])


@lru_cache(maxsize=32)
def _compiled(kind: str, learning_rate: float, weight_decay: float) -> tuple:
    forward = FORWARD[kind]
    opt = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss(params: Params, x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
        return weighted_cross_entropy(forward(params, x), y, w)

    @jax.jit
    def step(params: Params, state: optax.OptState, x: jax.Array, y: jax.Array,
             w: jax.Array) -> tuple[Params, optax.OptState, jax.Array]:
        value, grads = jax.value_and_grad(loss)(params, x, y, w)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    return opt, step, jax.jit(loss)


@lru_cache(maxsize=8)
def _proba(kind: str) -> object:
    forward = FORWARD[kind]
    return jax.jit(lambda p, x: jax.nn.softmax(forward(p, x), axis=-1))


def fit(spec: ModelSpec, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        config: TrainConfig | None = None) -> FitResult:
    """Train ``spec`` on ``(x_train, y_train)``, keeping the parameters with the best validation loss.

    Args:
        spec: the model.
        x_train: float32[n, F] (flat models) or float32[n, T, F] (tcn), standardized.
        y_train: int[n] classes ``0..K-1``.
        x_val, y_val: the validation split, same shapes; both losses use the training class weights.
        config: optimizer and early-stopping settings.

    Returns:
        The best parameters and the history. Stops after ``patience`` evaluations without a lower
        validation loss, or at ``max_steps``.
    """
    if len(y_train) == 0 or len(y_val) == 0:
        raise ValueError(f"fit needs training and validation rows (got {len(y_train)} and {len(y_val)})")
    config = config or TrainConfig()
    opt, step, loss = _compiled(spec.kind, config.learning_rate, config.weight_decay)
    cw = class_weights(y_train, spec.n_classes)
    w_train = cw[y_train]
    xv, yv, wv = (jnp.asarray(a) for a in _pad(x_val.astype(np.float32), y_val.astype(np.int32), cw[y_val]))
    params = init_params(spec, jax.random.key(config.seed))
    state = opt.init(params)
    rng = np.random.default_rng(config.seed)
    best, best_loss, best_step, waited = params, np.inf, 0, 0
    history: list[tuple[int, float]] = []
    x32, y32 = x_train.astype(np.float32), y_train.astype(np.int32)
    steps = 0
    while steps < config.max_steps:
        idx = rng.integers(0, len(y32), config.batch_size)
        params, state, _ = step(params, state, x32[idx], y32[idx], w_train[idx])
        steps += 1
        if steps % config.eval_every and steps < config.max_steps:
            continue
        val = float(loss(params, xv, yv, wv))
        history.append((steps, val))
        if val < best_loss - 1e-6:
            best, best_loss, best_step, waited = params, val, steps, 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    return FitResult(best, best_step, float(best_loss), steps, tuple(history))


def predict_proba(spec: ModelSpec, params: Params, x: np.ndarray) -> np.ndarray:
    """Class probabilities float64[n, K] for ``x`` (padded to a power of two, so shapes repeat)."""
    if len(x) == 0:
        return np.zeros((0, spec.n_classes))
    proba = _proba(spec.kind)
    xp, _, _ = _pad(x.astype(np.float32), np.zeros(len(x), np.int32), np.zeros(len(x), np.float32))
    return np.asarray(proba(params, jnp.asarray(xp)), np.float64)[: len(x)]  # type: ignore[operator]
