"""Windowed statistics of absorption and stealth accumulation, JAX with a NumPy reference each.

* ``held_volume``: per book-grid row, the volume traded at one side's touch price over the last
  ``window`` rows while that price stayed the touch (the run restarts when it changes), in how
  many separate rows, the most size the price showed meanwhile, and how many rows the run has
  lasted: aggressive volume into a price that holds and keeps showing size.
* ``range_windows``: per row of a regular (1 s) grid, over the last ``window`` rows, the mid's
  high-low range, its net move, the root of the summed squared steps (realized volatility) and
  the summed activity (events), so a quiet period (few events, each as volatile as usual) can be
  told from a contraction (as many events, each far less volatile).

JAX entry points are jitted at the boundary with inputs padded to power-of-two buckets
(``kernels.signals_windows.bucket``), so a detector compiles once per bucket and window. Below
``signals_windows.NUMPY_BELOW`` rows (the live stage's look-backs) the NumPy forms (``*_np``)
run instead, where their running sums are exact (``signals_windows.exact_sums``): the same bits.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from kernels.signals_windows import _running, bucket, exact_sums, small

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402  (after x64 is on)

# ---- held_volume -------------------------------------------------------------------------------


def held_volume_ref(touch: np.ndarray, vol: np.ndarray, shown: np.ndarray, window: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`held_volume` (a loop over rows)."""
    g = len(touch)
    held, pushes, peak = np.zeros(g), np.zeros(g, np.int64), np.zeros(g)
    run = np.zeros(g, np.int64)
    start = 0
    for t in range(g):
        if t and touch[t] != touch[t - 1]:
            start = t
        run[t] = t - start + 1
        # the row that opened the run carries trades at the previous touch: not this price's
        lo = max(start + 1, t - window + 1)
        held[t] = vol[lo:t + 1].sum() if lo <= t else 0.0
        pushes[t] = int((vol[lo:t + 1] > 0).sum()) if lo <= t else 0
        peak[t] = shown[start:t + 1].max()
    return held, pushes, peak, run


def held_volume(touch: np.ndarray, vol: np.ndarray, shown: np.ndarray, window: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Volume traded at the touch while it held, over the last ``window`` rows.

    Args:
        touch: one side's best price per grid row (0 where the side is empty).
        vol: per row, the volume traded since the previous row at the previous row's touch price
            against that side's resting orders.
        shown: per row, the size shown at the touch.
        window: rows looked back.

    Returns:
        (held, pushes, peak, run): per row ``t``, with ``start`` the first row of the run of rows
        at ``touch[t]``'s price: the sum of ``vol`` over the rows ``(start, t]`` within the
        window; how many of those rows traded (separate aggressions, at the grid's resolution);
        the largest size shown at the price since ``start``; and the run's length in rows.
    """
    g = len(touch)
    if small(g) and exact_sums(np.asarray(vol, np.float64)) and not np.isnan(shown).any():
        return held_volume_np(touch, vol, shown, window)
    size = bucket(g)
    tc = np.zeros(size, np.int64)
    v = np.zeros(size, np.float64)
    sh = np.zeros(size, np.float64)
    tc[:g], v[:g], sh[:g] = touch, vol, shown
    # the padding gets a price of its own, so no run crosses into it
    tc[g:] = -1
    out = _held_volume(jnp.asarray(tc), jnp.asarray(v), jnp.asarray(sh), window)
    return tuple(np.asarray(x)[:g] for x in out)  # type: ignore[return-value]


def held_volume_np(touch: np.ndarray, vol: np.ndarray, shown: np.ndarray, window: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`held_volume` in NumPy: the JAX form's formula (its bits where ``vol`` sums exactly)."""
    touch = np.asarray(touch, np.int64)
    vol, shown = np.asarray(vol, np.float64), np.asarray(shown, np.float64)
    g = len(touch)
    t = np.arange(g)
    changed = np.concatenate([[True], touch[1:] != touch[:-1]]) if g else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(changed, t, 0)) if g else t
    lo = np.maximum(start + 1, t - window + 1)
    inside = lo <= t
    c = _running(vol)
    n = np.zeros(g + 1, np.int64)
    np.cumsum(vol > 0, out=n[1:])
    top = np.minimum(lo, t + 1)
    held = np.where(inside, c[t + 1] - c[top], 0.0)
    pushes = np.where(inside, n[t + 1] - n[top], 0)
    # the running maximum of ``shown`` since each run's start, exact: on the values' ranks, each
    # run lifted above every earlier one (run number x distinct values), one accumulate
    values, rank = np.unique(shown, return_inverse=True)
    lift = (np.cumsum(changed) - 1) * len(values)
    peak = values[np.maximum.accumulate(lift + rank.reshape(-1)) - lift] if g else shown.copy()
    return held, pushes, peak, t - start + 1


def _max_since_reset(pair_a: tuple[jax.Array, jax.Array], pair_b: tuple[jax.Array, jax.Array]
                     ) -> tuple[jax.Array, jax.Array]:
    # associative: a segment's running max restarts where a later element opens a new segment
    reset_a, max_a = pair_a
    reset_b, max_b = pair_b
    return reset_a | reset_b, jnp.where(reset_b, max_b, jnp.maximum(max_a, max_b))


@functools.partial(jax.jit, static_argnums=(3,))
def _held_volume(touch: jax.Array, vol: jax.Array, shown: jax.Array, window: int
                 ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    t = jnp.arange(touch.shape[0])
    changed = jnp.concatenate([jnp.ones(1, bool), touch[1:] != touch[:-1]])
    start = jax.lax.cummax(jnp.where(changed, t, 0))
    lo = jnp.maximum(start + 1, t - window + 1)
    inside = lo <= t
    c = jnp.concatenate([jnp.zeros(1), jnp.cumsum(vol)])
    n = jnp.concatenate([jnp.zeros(1, jnp.int64), jnp.cumsum((vol > 0).astype(jnp.int64))])
    top = jnp.minimum(lo, t + 1)
    held = jnp.where(inside, c[t + 1] - c[top], 0.0)
    pushes = jnp.where(inside, n[t + 1] - n[top], 0)
    _, peak = jax.lax.associative_scan(_max_since_reset, (changed, shown))
    return held, pushes, peak, t - start + 1


# ---- range_windows -----------------------------------------------------------------------------


def range_windows_ref(mid: np.ndarray, activity: np.ndarray, window: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`range_windows` (a loop over rows)."""
    n = len(mid)
    rng, move, rv, act = (np.zeros(n) for _ in range(4))
    for t in range(n):
        lo = max(0, t - window)
        m = mid[lo:t + 1]
        rng[t] = m.max() - m.min()
        move[t] = m[-1] - m[0]
        rv[t] = np.sqrt((np.diff(m) ** 2).sum())
        act[t] = activity[max(0, t - window + 1):t + 1].sum()
    return rng, move, rv, act


def range_windows(mid: np.ndarray, activity: np.ndarray, window: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Range, net move, realized volatility and activity of the mid over the last ``window`` steps.

    Args:
        mid: the mid price per row of a regular grid (ticks; gaps already filled).
        activity: events per row (what arrived since the previous row).
        window: steps looked back (row ``t`` spans rows ``t - window .. t``, fewer at the start).

    Returns:
        (range, move, rv, activity): per row, max - min of the mid, its last minus first value,
        the root of its summed squared steps, and the activity of the window's last ``window``
        rows (this one included).
    """
    n = len(mid)
    if small(n + window):
        got = range_windows_np(mid, activity, window)
        if got is not None:
            return got
    size = bucket(n + window)
    m = np.zeros(size, np.float64)
    a = np.zeros(size, np.float64)
    # padded in front with the first value: a window reaching before the start sees no move
    m[:window] = mid[0] if n else 0.0
    m[window:window + n], a[window:window + n] = mid, activity
    out = _range_windows(jnp.asarray(m), jnp.asarray(a), window)
    return tuple(np.asarray(x)[window:window + n] for x in out)  # type: ignore[return-value]


def range_windows_np(mid: np.ndarray, activity: np.ndarray, window: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`range_windows` in NumPy, the JAX form's bits; None where its running sums are not
    exact (the caller runs the JAX form)."""
    mid, activity = np.asarray(mid, np.float64), np.asarray(activity, np.float64)
    n = len(mid)
    if not n:
        return tuple(np.zeros(0) for _ in range(4))  # type: ignore[return-value]
    m = np.concatenate([np.full(window, mid[0]), mid])
    a = np.concatenate([np.zeros(window), activity])
    step = np.concatenate([[0.0], np.diff(m)])
    squares = step * step
    if not exact_sums(squares, a):
        return None
    t = np.arange(window, window + n)
    back = t - window
    view = np.lib.stride_tricks.sliding_window_view(m, window + 1)  # row k: m[k .. k + window]
    hi, lo = view.max(axis=1), view.min(axis=1)
    sq, ca = _running(squares), _running(a)
    rv = np.sqrt(np.maximum(0.0, sq[t + 1] - sq[back + 1]))
    act = ca[t + 1] - ca[back + 1]
    return hi - lo, m[t] - m[back], rv, act


@functools.partial(jax.jit, static_argnums=(2,))
def _range_windows(mid: jax.Array, activity: jax.Array, window: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    dims, strides = (window + 1,), (1,)
    pad = ((window, 0),)
    hi = jax.lax.reduce_window(mid, -jnp.inf, jax.lax.max, dims, strides, pad)
    lo = jax.lax.reduce_window(mid, jnp.inf, jax.lax.min, dims, strides, pad)
    t = jnp.arange(mid.shape[0])
    back = jnp.maximum(0, t - window)
    step = jnp.concatenate([jnp.zeros(1), jnp.diff(mid)])
    sq = jnp.concatenate([jnp.zeros(1), jnp.cumsum(step * step)])
    ca = jnp.concatenate([jnp.zeros(1), jnp.cumsum(activity)])
    rv = jnp.sqrt(jnp.maximum(0.0, sq[t + 1] - sq[back + 1]))
    act = ca[t + 1] - ca[back + 1]
    return hi - lo, mid - mid[back], rv, act
