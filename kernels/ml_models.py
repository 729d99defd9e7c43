"""Classifier kernels for the up/flat/down labels: logistic regression, an MLP, a small TCN, DeepLOB-like.

Pure JAX: parameters are dicts of float32 arrays (pytrees), forward passes are pure functions
``logits(params, x)``. Flat models take ``x`` float32[n, F] (standardized features); the temporal model
takes float32[n, T, F], the features of the last ``T`` grid rows, oldest first, and is a causal
dilated 1-D convolution stack (a TCN, Bai, Kolter, Koltun 2018) read at the last step: DeepLOB-like
(Zhang, Zohren, Roberts 2019) in spirit, a few thousand parameters so it trains on a CPU in seconds.

``deeplob`` takes float32[n, T, C] too, but its ``C`` channels are the raw book of each of the last ``T``
grid rows (level distances from the mid in ticks, log sizes, the mid's change: ``tapeflow.ml.book_inputs``):
a per-step dense layer mixes the levels (DeepLOB's spatial convolutions, collapsed to one 1x1 layer),
then a pyramid of causal convolutions of kernel 2 and stride 2 runs over time down to one step
(DeepLOB's inception module and LSTM replaced by it, so it stays ~12k parameters and cheap on a CPU).

Everything is float32 on purpose: other kernels turn on ``jax_enable_x64`` for prices, and the models
must give the same numbers whichever module was imported first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]
F32 = jnp.float32


class ModelSpec(NamedTuple):
    """What to build: ``kind`` is ``logreg``, ``mlp``, ``tcn`` or ``deeplob``; sizes are ignored where
    unused (``deeplob``: ``hidden`` channels, ``window`` steps, ``layers`` temporal layers)."""

    kind: str
    n_features: int
    n_classes: int = 3
    hidden: int = 32         # MLP hidden units; TCN channels
    window: int = 1          # TCN input steps T (1 for flat models)
    kernel_size: int = 3     # TCN taps per layer
    layers: int = 3          # TCN layers; layer i has dilation 2**i


def _dense(key: jax.Array, n_in: int, n_out: int) -> tuple[jax.Array, jax.Array]:
    # Glorot-uniform weights, zero bias
    limit = jnp.sqrt(6.0 / (n_in + n_out)).astype(F32)
    w = jax.random.uniform(key, (n_in, n_out), F32, -limit, limit)
    return w, jnp.zeros((n_out,), F32)


def init_params(spec: ModelSpec, key: jax.Array) -> Params:
    """Fresh parameters for ``spec`` drawn from ``key`` (same key, same parameters).

    Shapes: logreg ``w`` [F, K], ``b`` [K]; mlp ``w1`` [F, H], ``w2`` [H, K]; tcn ``conv<i>`` [k, C_in, H]
    per layer, ``skip`` [F, H] (a 1x1 residual from the input), ``out`` [H, K].
    """
    if spec.kind == "logreg":
        w, b = _dense(key, spec.n_features, spec.n_classes)
        return {"w": w, "b": b}
    if spec.kind == "mlp":
        k1, k2 = jax.random.split(key)
        w1, b1 = _dense(k1, spec.n_features, spec.hidden)
        w2, b2 = _dense(k2, spec.hidden, spec.n_classes)
        return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    if spec.kind == "tcn":
        keys = jax.random.split(key, spec.layers + 2)
        out: Params = {}
        c_in = spec.n_features
        for i in range(spec.layers):
            w, b = _dense(keys[i], spec.kernel_size * c_in, spec.hidden)
            out[f"conv{i}"] = w.reshape(spec.kernel_size, c_in, spec.hidden)
            out[f"conv{i}_b"] = b
            c_in = spec.hidden
        out["skip"], out["skip_b"] = _dense(keys[-2], spec.n_features, spec.hidden)
        out["out"], out["out_b"] = _dense(keys[-1], spec.hidden, spec.n_classes)
        return out
    if spec.kind == "deeplob":
        if spec.window != 2**spec.layers:
            raise ValueError(f"deeplob needs window == 2**layers (got {spec.window} and {spec.layers})")
        keys = jax.random.split(key, spec.layers + 2)
        w_in, b_in = _dense(keys[0], spec.n_features, spec.hidden)
        out = {"embed": w_in, "embed_b": b_in}
        for i in range(spec.layers):
            out[f"pair{i}"], out[f"pair{i}_b"] = _dense(keys[i + 1], 2 * spec.hidden, spec.hidden)
        out["out"], out["out_b"] = _dense(keys[-1], spec.hidden, spec.n_classes)
        return out
    raise ValueError(f"unknown model kind {spec.kind!r} (logreg, mlp, tcn, deeplob)")


def logreg_logits(params: Params, x: jax.Array) -> jax.Array:
    """Multinomial logistic regression: ``x @ w + b``; x float32[n, F] -> logits float32[n, K]."""
    return jnp.asarray(x, F32) @ params["w"] + params["b"]


def mlp_logits(params: Params, x: jax.Array) -> jax.Array:
    """One hidden ReLU layer: x float32[n, F] -> logits float32[n, K]."""
    h = jax.nn.relu(jnp.asarray(x, F32) @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def _causal_conv(x: jax.Array, w: jax.Array, b: jax.Array, dilation: int) -> jax.Array:
    """x [n, T, C_in], w [k, C_in, C_out]: ``y[t] = b + sum_j w[j] x[t - j * dilation]`` (zeros before 0)."""
    steps = x.shape[1]
    y = jnp.zeros((*x.shape[:2], w.shape[2]), F32) + b
    for j in range(w.shape[0]):
        shift = j * dilation
        if shift >= steps:
            break
        past = jnp.pad(x[:, : steps - shift], ((0, 0), (shift, 0), (0, 0)))
        y = y + jnp.einsum("ntc,cd->ntd", past, w[j])
    return y


def tcn_logits(params: Params, x: jax.Array) -> jax.Array:
    """Causal dilated conv stack read at the last step: x float32[n, T, F] -> logits float32[n, K].

    Layer ``i`` has dilation ``2**i``, so the last step sees ``1 + (k - 1) * (2**layers - 1)`` inputs
    (15 with k=3 and 3 layers); a
    1x1 skip from the last input keeps the flat features' signal reachable from the start of training.
    """
    h = jnp.asarray(x, F32)
    i = 0
    while f"conv{i}" in params:
        h = jax.nn.relu(_causal_conv(h, params[f"conv{i}"], params[f"conv{i}_b"], 2**i))
        i += 1
    last = h[:, -1] + jnp.asarray(x, F32)[:, -1] @ params["skip"] + params["skip_b"]
    return jax.nn.relu(last) @ params["out"] + params["out_b"]


def deeplob_logits(params: Params, x: jax.Array) -> jax.Array:
    """Raw-book model: x float32[n, T, C] (C book channels per step, oldest step first) -> logits [n, K].

    ``h = relu(x @ embed)`` mixes the levels of each step (DeepLOB's spatial convolutions as one 1x1
    layer); each temporal layer is a causal convolution of kernel 2 and stride 2 (``relu([h_{2j}, h_{2j+1}]
    @ pair + b)``), halving the steps, so ``log2 T`` layers end on one step that has seen all ``T`` rows
    (a pyramid rather than a dilated stack: every layer costs half the one before, what keeps it
    CPU-cheap).
    """
    h = jax.nn.relu(jnp.asarray(x, F32) @ params["embed"] + params["embed_b"])
    i = 0
    while f"pair{i}" in params:
        n, steps, width = h.shape
        h = jax.nn.relu(h.reshape(n, steps // 2, 2 * width) @ params[f"pair{i}"] + params[f"pair{i}_b"])
        i += 1
    return h[:, -1] @ params["out"] + params["out_b"]


FORWARD: dict[str, Callable[[Params, jax.Array], jax.Array]] = {
    "logreg": logreg_logits, "mlp": mlp_logits, "tcn": tcn_logits, "deeplob": deeplob_logits,
}

TEMPORAL = ("tcn", "deeplob")  # kinds whose input is float32[n, T, F] (the last T grid rows)


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """``sum_i w_i * -log softmax(logits_i)[y_i] / sum_i w_i``; labels int32[n] in ``0..K-1``.

    Class weighting and padding both go through ``weights`` (a padded row has weight 0).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return -(weights * picked).sum() / jnp.maximum(weights.sum(), 1e-12)
