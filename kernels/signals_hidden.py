"""Hidden-liquidity statistics from trades and the level book only (no order ids): JAX, with a
NumPy reference each (tested equal).

* ``hidden_flags``: per print (trades at one time and price), the book row received before it
  and the one after: whether the price lay strictly inside the spread of each, and how much was
  displayed at that price before (a print larger than that traded against size nobody showed).
* ``level_refills``: per grid interval and book level, how much of the volume traded at that
  level's price is not explained by the level's displayed size going down ("executed volume
  without depletion": an iceberg's refills, or hidden size resting behind the display).

JAX entry points are jitted at the boundary with inputs padded to power-of-two buckets
(``kernels.signals_windows.bucket``), so a detector compiles once per bucket. ``hidden_flags``
runs its NumPy form (``hidden_flags_np``) below ``signals_windows.NUMPY_BELOW`` book elements
(the live stage's few rows per batch): the same bits where a row's sizes sum exactly.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from kernels.signals_windows import bucket, exact_sums, small

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402  (after x64 is on)

# ---- hidden_flags ------------------------------------------------------------------------------


def hidden_flags_ref(price: np.ndarray, before: np.ndarray, after: np.ndarray,
                     bid_p: np.ndarray, bid_s: np.ndarray, ask_p: np.ndarray, ask_s: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`hidden_flags` (a loop over prints)."""
    n = len(price)
    inside_b, inside_a = np.zeros(n, bool), np.zeros(n, bool)
    shown = np.zeros(n, np.float64)
    for i in range(n):
        rb, ra, p = int(before[i]), int(after[i]), int(price[i])
        if rb >= 0:
            inside_b[i] = bid_s[rb, 0] > 0 and ask_s[rb, 0] > 0 and bid_p[rb, 0] < p < ask_p[rb, 0]
            shown[i] = (bid_s[rb][(bid_p[rb] == p) & (bid_s[rb] > 0)].sum()
                        + ask_s[rb][(ask_p[rb] == p) & (ask_s[rb] > 0)].sum())
        if ra >= 0:
            inside_a[i] = bid_s[ra, 0] > 0 and ask_s[ra, 0] > 0 and bid_p[ra, 0] < p < ask_p[ra, 0]
    return inside_b, inside_a, shown


def hidden_flags(price: np.ndarray, before: np.ndarray, after: np.ndarray,
                 bid_p: np.ndarray, bid_s: np.ndarray, ask_p: np.ndarray, ask_s: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each print lay against the book around it.

    Args:
        price: per print (trades at one time and price).
        before, after: per print, the book row received before it and the first one at or after
            it (-1 where there is none).
        bid_p, bid_s, ask_p, ask_s: (book rows, levels), best first; an empty level has size 0.

    Returns:
        (inside_before, inside_after, shown): whether the price lay strictly inside the spread of
        the row before / after (a one-sided book has no inside), and the size displayed at the
        price in the row before (0 where none).
    """
    n, g = len(price), len(bid_p)
    if n == 0 or g == 0:
        return np.zeros(n, bool), np.zeros(n, bool), np.zeros(n)
    if small(max(g, n)) and exact_sums(bid_s, ask_s, axis=1):
        return hidden_flags_np(price, before, after, bid_p, bid_s, ask_p, ask_s)
    size_n, size_g = bucket(n), bucket(g)

    def pad(x: np.ndarray, size: int, fill: int, dtype: type) -> jax.Array:
        out = np.full((size, *x.shape[1:]), fill, dtype)
        out[:len(x)] = x
        return jnp.asarray(out)

    trades = [pad(np.asarray(x), size_n, fill, np.int64)
              for x, fill in ((price, 0), (before, -1), (after, -1))]
    book = [pad(x, size_g, 0, dtype)
            for x, dtype in ((bid_p, np.int64), (bid_s, np.float64), (ask_p, np.int64), (ask_s, np.float64))]
    out = _hidden_flags(*trades, *book)
    return tuple(np.asarray(x)[:n] for x in out)  # type: ignore[return-value]


def hidden_flags_np(price: np.ndarray, before: np.ndarray, after: np.ndarray,
                    bid_p: np.ndarray, bid_s: np.ndarray, ask_p: np.ndarray, ask_s: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`hidden_flags` in NumPy, the JAX form's formula."""
    price = np.asarray(price, np.int64)
    before, after = np.asarray(before, np.int64), np.asarray(after, np.int64)

    def inside(row: np.ndarray) -> np.ndarray:
        r = np.maximum(row, 0)
        both = (bid_s[r, 0] > 0) & (ask_s[r, 0] > 0)
        return (row >= 0) & both & (bid_p[r, 0] < price) & (price < ask_p[r, 0])

    r = np.maximum(before, 0)
    p = price[:, None]
    at_bid = np.where((bid_p[r] == p) & (bid_s[r] > 0), bid_s[r], 0.0).sum(axis=1)
    at_ask = np.where((ask_p[r] == p) & (ask_s[r] > 0), ask_s[r], 0.0).sum(axis=1)
    shown = np.where(before >= 0, at_bid + at_ask, 0.0)
    return inside(before), inside(after), shown


def _inside(p: jax.Array, row: jax.Array, bid_p: jax.Array, bid_s: jax.Array, ask_p: jax.Array,
            ask_s: jax.Array) -> jax.Array:
    r = jnp.maximum(row, 0)
    both = (bid_s[r, 0] > 0) & (ask_s[r, 0] > 0)
    return (row >= 0) & both & (bid_p[r, 0] < p) & (p < ask_p[r, 0])


@jax.jit
def _hidden_flags(price: jax.Array, before: jax.Array, after: jax.Array, bid_p: jax.Array, bid_s: jax.Array,
                  ask_p: jax.Array, ask_s: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    inside_b = _inside(price, before, bid_p, bid_s, ask_p, ask_s)
    inside_a = _inside(price, after, bid_p, bid_s, ask_p, ask_s)
    r = jnp.maximum(before, 0)
    p = price[:, None]
    at_bid = jnp.where((bid_p[r] == p) & (bid_s[r] > 0), bid_s[r], 0.0).sum(axis=1)
    at_ask = jnp.where((ask_p[r] == p) & (ask_s[r] > 0), ask_s[r], 0.0).sum(axis=1)
    shown = jnp.where(before >= 0, at_bid + at_ask, 0.0)
    return inside_b, inside_a, shown


# ---- level_refills -----------------------------------------------------------------------------


def level_refills_ref(prices: np.ndarray, sizes: np.ndarray, traded: np.ndarray, lag: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """NumPy reference of :func:`level_refills` (a loop over rows and levels)."""
    g, levels = prices.shape
    unexplained = np.zeros((g, levels))
    kept = np.zeros((g, levels), bool)
    for k in range(1, g):
        for j in range(levels):
            if sizes[k - 1, j] <= 0:
                continue
            now = max(sizes[r][(prices[r] == prices[k - 1, j]) & (sizes[r] > 0)].sum()
                      for r in range(k, min(g, k + lag + 1)))
            kept[k, j] = now > 0
            vol = traded[k, j]
            unexplained[k, j] = min(vol, max(0.0, vol - max(0.0, sizes[k - 1, j] - now)))
    return unexplained, kept


def level_refills(prices: np.ndarray, sizes: np.ndarray, traded: np.ndarray, lag: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Traded volume at a level that its displayed size does not account for, per grid interval.

    Args:
        prices, sizes: one side of the book, (grid rows, levels), best first; empty levels size 0.
        traded: (grid rows, levels): at row ``k``, level ``j``, the volume traded against this
            side at ``prices[k - 1, j]`` between rows ``k - 1`` and ``k``.
        lag: rows after ``k`` whose size at the price also counts as "now" (a refill that
            follows its fill by a few ms can land in the next grid interval).

    Returns:
        (unexplained, kept): per row ``k`` and level ``j`` of row ``k - 1``, the traded volume
        beyond the fall of the size displayed at that price (0 where the level went down by at
        least what traded there; the size after is the largest at rows ``k..k + lag``), and
        whether the price is still displayed then (not depleted). Row 0 is all zero / False.
    """
    g, levels = prices.shape
    if g == 0:
        return np.zeros((0, levels)), np.zeros((0, levels), bool)
    size = bucket(g)
    p = np.zeros((size, levels), np.int64)
    s = np.zeros((size, levels), np.float64)
    v = np.zeros((size, levels), np.float64)
    p[:g], s[:g], v[:g] = prices, sizes, traded
    # the padding must not lend a size to the last real rows' look-ahead
    p[g:] = -1
    unexplained, kept = _level_refills(jnp.asarray(p), jnp.asarray(s), jnp.asarray(v), int(lag))
    return np.asarray(unexplained)[:g], np.asarray(kept)[:g]


@functools.partial(jax.jit, static_argnums=(3,))
def _level_refills(prices: jax.Array, sizes: jax.Array, traded: jax.Array, lag: int
                   ) -> tuple[jax.Array, jax.Array]:
    then_p = jnp.concatenate([prices[:1], prices[:-1]])
    then_s = jnp.concatenate([jnp.zeros_like(sizes[:1]), sizes[:-1]])
    now = jnp.zeros_like(sizes)
    for m in range(lag + 1):
        # rows k + m (past the end: a row with no levels)
        later_p = jnp.concatenate([prices[m:], jnp.full((m, prices.shape[1]), -1, prices.dtype)])
        later_s = jnp.concatenate([sizes[m:], jnp.zeros((m, sizes.shape[1]), sizes.dtype)])
        # size displayed then at each level of the row before: (rows, levels before, levels then)
        same = (later_p[:, None, :] == then_p[:, :, None]) & (later_s[:, None, :] > 0)
        now = jnp.maximum(now, jnp.where(same, later_s[:, None, :], 0.0).sum(axis=2))
    live = then_s > 0
    fall = jnp.maximum(0.0, then_s - now)
    unexplained = jnp.where(live, jnp.minimum(traded, jnp.maximum(0.0, traded - fall)), 0.0)
    return unexplained, live & (now > 0)
