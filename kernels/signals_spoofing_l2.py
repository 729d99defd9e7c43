"""Size that appears at a price level and vanishes again, from the level book alone (no order
ids): JAX with a NumPy reference each (tested equal).

* ``level_jumps``: per grid row and level, how much the size displayed at that level's price
  grew since the row before (a price not displayed before grew from 0).
* ``first_fall``: per candidate (a row and a price), the first of the next rows where the size
  displayed at that price is at most a given size (the added size is gone again).

The per-candidate logic (distance from the touch, trades at the price, the other side) is NumPy
in ``tapeflow/signals/spoofing_l2.py``. The JAX entry points are jitted at the boundary with
inputs padded to power-of-two buckets (``kernels.signals_windows.bucket``), so a detector
compiles once per bucket.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from kernels.signals_windows import bucket

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402  (after x64 is on)


def _size_at(prices_row: np.ndarray, sizes_row: np.ndarray, price: int) -> float:
    return float(sizes_row[(prices_row == price) & (sizes_row > 0)].sum())


def level_jumps_ref(prices: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """NumPy reference of :func:`level_jumps` (a loop over rows and levels)."""
    g, levels = prices.shape
    out = np.zeros((g, levels))
    for k in range(1, g):
        for j in range(levels):
            if sizes[k, j] > 0:
                out[k, j] = sizes[k, j] - _size_at(prices[k - 1], sizes[k - 1], int(prices[k, j]))
    return out


def level_jumps(prices: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Growth of the size displayed at each level's price since the row before.

    Args:
        prices, sizes: one side of the book, (grid rows, levels), best first; empty levels size 0.

    Returns:
        (grid rows, levels): ``sizes[k, j]`` less the size displayed at ``prices[k, j]`` in row
        ``k - 1`` (negative where it shrank); 0 at row 0 and at empty levels.
    """
    g, levels = prices.shape
    if g == 0:
        return np.zeros((0, levels))
    size = bucket(g)
    p = np.zeros((size, levels), np.int64)
    s = np.zeros((size, levels), np.float64)
    p[:g], s[:g] = prices, sizes
    return np.asarray(_level_jumps(jnp.asarray(p), jnp.asarray(s)))[:g]


@jax.jit
def _level_jumps(prices: jax.Array, sizes: jax.Array) -> jax.Array:
    then_p, then_s = prices[:-1], sizes[:-1]
    now_p, now_s = prices[1:], sizes[1:]
    same = (then_p[:, None, :] == now_p[:, :, None]) & (then_s[:, None, :] > 0)
    before = jnp.where(same, then_s[:, None, :], 0.0).sum(axis=2)
    jump = jnp.where(now_s > 0, now_s - before, 0.0)
    return jnp.concatenate([jnp.zeros_like(sizes[:1]), jump])


def first_fall_ref(prices: np.ndarray, sizes: np.ndarray, rows: np.ndarray, price: np.ndarray,
                   at_most: np.ndarray, window: int) -> np.ndarray:
    """NumPy reference of :func:`first_fall` (a loop over candidates and rows)."""
    g = len(prices)
    out = np.full(len(rows), -1, np.int64)
    for i in range(len(rows)):
        for m in range(1, window + 1):
            r = int(rows[i]) + m
            if r >= g:
                break
            if _size_at(prices[r], sizes[r], int(price[i])) <= at_most[i]:
                out[i] = m
                break
    return out


def first_fall(prices: np.ndarray, sizes: np.ndarray, rows: np.ndarray, price: np.ndarray,
               at_most: np.ndarray, window: int) -> np.ndarray:
    """Rows until the size displayed at a price falls back to a given size.

    Args:
        prices, sizes: one side of the book, (grid rows, levels), best first; empty levels size 0.
        rows, price, at_most: per candidate, its grid row, the price and the size it must fall to.
        window: how many rows after the candidate's to look at.

    Returns:
        Per candidate, the offset ``m`` in ``1..window`` of the first row ``rows + m`` (before the
        end of the book) where the size at ``price`` is at most ``at_most``; -1 where there is none.
    """
    n, g = len(rows), len(prices)
    if n == 0 or g == 0:
        return np.full(n, -1, np.int64)
    size_n = bucket(n)
    r = np.full(size_n, g, np.int64)  # padding: a row past the end, never a fall
    pr = np.zeros(size_n, np.int64)
    lim = np.full(size_n, -1.0)
    r[:n], pr[:n], lim[:n] = rows, price, at_most
    # one empty row after the book: look-ahead past its end finds no size but must not count
    p = np.concatenate([np.asarray(prices, np.int64), np.zeros((1, prices.shape[1]), np.int64)])
    s = np.concatenate([np.asarray(sizes, np.float64), np.zeros((1, prices.shape[1]))])
    out = _first_fall(jnp.asarray(p), jnp.asarray(s), jnp.asarray(r), jnp.asarray(pr), jnp.asarray(lim),
                      int(window))
    return np.asarray(out)[:n]


@functools.partial(jax.jit, static_argnums=(5,))
def _first_fall(prices: jax.Array, sizes: jax.Array, rows: jax.Array, price: jax.Array, at_most: jax.Array,
                window: int) -> jax.Array:
    end = prices.shape[0] - 1  # the empty row appended
    found = jnp.full(rows.shape, -1, jnp.int64)
    for m in range(window, 0, -1):  # the last one written is the first fall
        r = rows + m
        rr = jnp.minimum(r, end)
        here = jnp.where((prices[rr] == price[:, None]) & (sizes[rr] > 0), sizes[rr], 0.0).sum(axis=1)
        found = jnp.where((r < end) & (here <= at_most), m, found)
    return found
