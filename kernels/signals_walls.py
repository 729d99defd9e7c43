"""Wall runs and windowed maxima on the book snapshot grid: JAX with a NumPy reference each
(tested equal).

``wall_runs`` follows, per grid row of one book side, the largest visible level and how many
rows in a row (this one included) it has stood at the same price with at least the row's
threshold of size: a wall is a level that is large *and* stays, so the run length is what tells
it from a large order cancelled at once. The per-wall logic (persistence, outcome, refractory)
is NumPy in ``tapeflow/signals/walls.py``. ``window_max`` is the largest aggressor print of the
last rows, the sweep that confirms a spike (``tapeflow/signals/spikes.py``).

The JAX entry points are jitted at the boundary with the rows padded to power-of-two buckets
(``signals_windows.bucket``), so they compile once per bucket (and book depth, window). Below
``signals_windows.NUMPY_BELOW`` elements (the live stage's look-backs) the NumPy forms
(``*_np``, the same formulas: argmax, comparisons and maxima, exact) run instead.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from kernels.signals_windows import bucket, small

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402  (after x64 is on)


def wall_runs_ref(prices: np.ndarray, sizes: np.ndarray, threshold: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`wall_runs` (a loop over grid rows)."""
    g = len(threshold)
    price = np.zeros(g, np.int64)
    size = np.zeros(g)
    level = np.zeros(g, np.int64)
    run = np.zeros(g, np.int64)
    for t in range(g):
        k = int(np.argmax(sizes[t]))
        level[t], price[t], size[t] = k, prices[t, k], sizes[t, k]
        if size[t] > 0 and size[t] >= threshold[t]:
            same = t > 0 and run[t - 1] > 0 and price[t - 1] == price[t]
            run[t] = run[t - 1] + 1 if same else 1
    return price, size, level, run


def wall_runs(prices: np.ndarray, sizes: np.ndarray, threshold: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The largest level of one book side per grid row, and how long it has stood as a wall.

    Args:
        prices, sizes: (grid rows, levels) of one side, best first; empty levels have size 0.
        threshold: (grid rows,) the size a wall must have on that row (NaN: no wall possible).

    Returns:
        (price, size, level, run): per row, the price, size and level index (0 = the touch) of the
        largest level (the first of equal ones), and the number of consecutive rows ending at this
        one whose largest level was at this price and at least their threshold (0 when this
        row's is not).
    """
    g, levels = sizes.shape
    if small(g):
        return wall_runs_np(prices, sizes, threshold)
    n = bucket(g)
    p = np.zeros((n, levels), np.int64)
    s = np.zeros((n, levels), np.float64)
    thr = np.full(n, np.nan)
    p[:g], s[:g], thr[:g] = prices, sizes, threshold
    price, size, level, run = _wall_runs(jnp.asarray(p), jnp.asarray(s), jnp.asarray(thr))
    return (np.asarray(price)[:g], np.asarray(size)[:g], np.asarray(level)[:g], np.asarray(run)[:g])


def wall_runs_np(prices: np.ndarray, sizes: np.ndarray, threshold: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`wall_runs` in NumPy (the JAX form's formula; no arithmetic to round)."""
    g = len(threshold)
    if not g:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    level = np.argmax(sizes, axis=1)
    price = np.take_along_axis(np.asarray(prices, np.int64), level[:, None], axis=1)[:, 0]
    size = np.take_along_axis(np.asarray(sizes, np.float64), level[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        big = (size > 0) & (size >= threshold)  # NaN threshold compares False
    goes_on = np.concatenate([[False], big[1:] & big[:-1] & (price[1:] == price[:-1])])
    t = np.arange(g)
    start = np.maximum.accumulate(np.where(goes_on, 0, t))
    run = np.where(big, t - start + 1, 0)
    return price, size, level.astype(np.int64), run


@jax.jit
def _wall_runs(prices: jax.Array, sizes: jax.Array, threshold: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    level = jnp.argmax(sizes, axis=1)
    price = jnp.take_along_axis(prices, level[:, None], axis=1)[:, 0]
    size = jnp.take_along_axis(sizes, level[:, None], axis=1)[:, 0]
    big = (size > 0) & (size >= threshold)  # NaN threshold compares False
    goes_on = jnp.concatenate([jnp.zeros(1, bool), big[1:] & big[:-1] & (price[1:] == price[:-1])])
    t = jnp.arange(size.shape[0])
    start = jax.lax.cummax(jnp.where(goes_on, 0, t))
    run = jnp.where(big, t - start + 1, 0)
    return price, size, level, run


# ---- window_max (spikes' sweep confirmation) ----------------------------------------------------


def window_max_ref(x: np.ndarray, window: int) -> np.ndarray:
    """NumPy reference of :func:`window_max` (a loop over rows)."""
    x = np.asarray(x, np.float64)
    return np.array([x[max(0, t - window + 1):t + 1].max() for t in range(len(x))])


def window_max(x: np.ndarray, window: int) -> np.ndarray:
    """Per row, the maximum of the last ``window`` rows (this one included) of ``x`` (>= 0)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if small(n):
        return window_max_np(x, window)
    padded = np.zeros(bucket(n))
    padded[:n] = x
    return np.asarray(_window_max(jnp.asarray(padded), int(window)))[:n]


def window_max_np(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`window_max` in NumPy (a strided view of the padded rows; maxima are exact)."""
    x = np.asarray(x, np.float64)
    if not len(x):
        return np.zeros(0)
    padded = np.concatenate([np.full(window - 1, -np.inf), x])
    return np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)


@functools.partial(jax.jit, static_argnums=(1,))
def _window_max(x: jax.Array, window: int) -> jax.Array:
    # a causal window: pad window - 1 rows of the neutral value in front (the inputs are >= 0)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (window,), (1,), [(window - 1, 0)])
