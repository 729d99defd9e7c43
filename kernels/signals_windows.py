"""Windowed detector statistics, JAX with a NumPy reference each (tested equal).

Three windows serve the detectors (tapeflow/signals/):

* ``block_quantiles``: a causal rolling baseline. Element ``i`` of block ``b = i // block`` gets
  quantiles of the elements of the ``lookback`` whole blocks before its own (NaN where none):
  a rolling window that moves a block at a time, so the JAX form is one sort of an
  ``(blocks, lookback * block)`` matrix instead of one per element.
* ``flow_windows``: signed and absolute volume over the last ``window`` bins of a time grid, and
  the root mean square of the signed window sums over the ``baseline`` bins before that window
  (the scale a parent order's net flow is judged against).
* ``trailing_sums``: per event of an irregular time series, the sum of the earlier events'
  values within a trailing window (a whale print's local flow: the busy-period look-alike).
* ``band_depths``: depth of one book side within ``ticks`` of the touch ``lag`` grid rows ago,
  then and now, so a fall in depth can be told from the touch moving away.

JAX entry points are jitted at the boundary with inputs padded to power-of-two buckets, so a
detector compiles once per bucket, not once per input length.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402  (after x64 is on)

# the live stage hands band_depths a few new grid rows per micro-batch: padded to 1,024 they cost
# ~2 ms per call on CPU, padded to 64 a dispatch (a few more buckets compile, once each)
_MIN_BUCKET = 64


def bucket(n: int) -> int:
    """The padded length for ``n`` elements: the next power of two, at least ``_MIN_BUCKET``."""
    return max(_MIN_BUCKET, 1 << max(0, int(n - 1).bit_length()))


# ---- block_quantiles ---------------------------------------------------------------------------


def block_quantiles_ref(x: np.ndarray, block: int, lookback: int, qs: tuple[float, ...]) -> np.ndarray:
    """NumPy reference of :func:`block_quantiles` (one block at a time)."""
    x = np.asarray(x, np.float64)
    out = np.full((len(x), len(qs)), np.nan)
    for b in range(-(-len(x) // block)):
        past = x[max(0, (b - lookback) * block):b * block]
        if len(past):
            out[b * block:(b + 1) * block] = np.quantile(past, qs)
    return out


def block_quantiles(x: np.ndarray, block: int, lookback: int, qs: tuple[float, ...]) -> np.ndarray:
    """Per element, quantiles (linear) of the ``lookback`` whole blocks before its own; shape (n, len(qs))."""
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return np.zeros((0, len(qs)))
    # the block count, not the element count, is what is padded: at least 8 blocks (not
    # _MIN_BUCKET), or every call sorts 1,024 blocks however few it was given (66 ms per live batch)
    whole = -(-n // block)
    blocks = max(8, 1 << max(0, (whole - 1).bit_length()))
    padded = np.full(blocks * block, np.nan)
    padded[:n] = x
    out = _block_quantiles(jnp.asarray(padded), block, lookback, tuple(float(q) for q in qs))
    return np.asarray(out)[:n]


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _block_quantiles(x: jax.Array, block: int, lookback: int, qs: tuple[float, ...]) -> jax.Array:
    rows = x.reshape(-1, block)
    nb = rows.shape[0]
    front = jnp.concatenate([jnp.full((lookback, block), jnp.nan), rows])
    windows = jnp.concatenate([front[k:k + nb] for k in range(lookback)], axis=1)
    q = jnp.nanquantile(windows, jnp.asarray(qs), axis=1).T  # (nb, len(qs)); NaN where all-NaN
    return jnp.repeat(q, block, axis=0)


# ---- flow_windows ------------------------------------------------------------------------------


def flow_windows_ref(signed: np.ndarray, total: np.ndarray, window: int, baseline: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`flow_windows` (a loop over bins)."""
    n = len(signed)
    net, gross, rms = np.zeros(n), np.zeros(n), np.full(n, np.nan)
    for t in range(n):
        net[t] = signed[max(0, t - window + 1):t + 1].sum()
        gross[t] = total[max(0, t - window + 1):t + 1].sum()
    for t in range(n):
        past = net[max(0, t - window - baseline + 1):max(0, t - window + 1)]
        if len(past):
            rms[t] = np.sqrt(np.mean(past ** 2))
    return net, gross, rms


def flow_windows(signed: np.ndarray, total: np.ndarray, window: int, baseline: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed and gross volume over the last ``window`` bins (this one included), and the RMS of
    the signed window sums ending in the ``baseline`` bins before that window (NaN with none)."""
    n = len(signed)
    size = bucket(n)
    s = np.zeros(size)
    g = np.zeros(size)
    s[:n], g[:n] = signed, total
    net, gross, rms = _flow_windows(jnp.asarray(s), jnp.asarray(g), window, baseline)
    return np.asarray(net)[:n], np.asarray(gross)[:n], np.asarray(rms)[:n]


def _window_sum(x: jax.Array, window: int) -> jax.Array:
    c = jnp.concatenate([jnp.zeros(1), jnp.cumsum(x)])
    idx = jnp.arange(1, x.shape[0] + 1)
    return c[idx] - c[jnp.maximum(0, idx - window)]


@functools.partial(jax.jit, static_argnums=(2, 3))
def _flow_windows(signed: jax.Array, total: jax.Array, window: int, baseline: int
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    net = _window_sum(signed, window)
    gross = _window_sum(total, window)
    sq = jnp.concatenate([jnp.zeros(1), jnp.cumsum(net * net)])
    t = jnp.arange(net.shape[0])
    hi = jnp.maximum(0, t - window + 1)
    lo = jnp.maximum(0, t - window - baseline + 1)
    count = hi - lo
    # a difference of running sums can come out a hair below zero: clamp before the root
    mean_sq = jnp.maximum(0.0, (sq[hi] - sq[lo]) / jnp.maximum(count, 1))
    rms = jnp.where(count > 0, jnp.sqrt(mean_sq), jnp.nan)
    return net, gross, rms


# ---- trailing_sums ----------------------------------------------------------------------------


def trailing_sums_ref(ts: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    """NumPy reference of :func:`trailing_sums` (a loop over events)."""
    ts = np.asarray(ts, np.int64)
    x = np.asarray(x, np.float64)
    out = np.zeros(len(ts))
    for i in range(len(ts)):
        out[i] = x[(ts >= ts[i] - window) & (ts < ts[i])].sum()
    return out


def trailing_sums(ts: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    """Per event ``i`` (``ts`` sorted), the sum of ``x`` over the events with
    ``ts[i] - window <= ts < ts[i]``: the events strictly before it in time (not those at its instant)."""
    ts = np.asarray(ts, np.int64)
    n = len(ts)
    if n == 0:
        return np.zeros(0)
    size = bucket(n)
    t = np.full(size, np.iinfo(np.int64).max)  # padding sorts after every event and adds nothing
    v = np.zeros(size)
    t[:n], v[:n] = ts, x
    # the window is traced, not static: one compile per bucket whatever the threshold
    return np.asarray(_trailing_sums(jnp.asarray(t), jnp.asarray(v), jnp.asarray(int(window), jnp.int64)))[:n]


@jax.jit
def _trailing_sums(ts: jax.Array, x: jax.Array, window: jax.Array) -> jax.Array:
    c = jnp.concatenate([jnp.zeros(1), jnp.cumsum(x)])
    hi = jnp.searchsorted(ts, ts, side="left")  # first event at this instant
    lo = jnp.searchsorted(ts, ts - window, side="left")
    return c[hi] - c[lo]


# ---- band_depths -------------------------------------------------------------------------------


def band_depths_ref(prices: np.ndarray, sizes: np.ndarray, touch: np.ndarray, side_sign: int,
                    tick: int, ticks: int, lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`band_depths` (a loop over grid rows and levels)."""
    g = len(touch)
    then, now, pulled = np.zeros(g), np.zeros(g), np.zeros(g, np.int64)
    for t in range(g):
        r = max(0, t - lag)
        ref = touch[r]
        dist_then = side_sign * (ref - prices[r]) // tick
        in_band = (sizes[r] > 0) & (dist_then >= 0) & (dist_then <= ticks)
        then[t] = sizes[r][in_band].sum()
        dist_now = side_sign * (ref - prices[t]) // tick
        now[t] = sizes[t][(sizes[t] > 0) & (dist_now <= ticks)].sum()
        for k in np.flatnonzero(in_band):
            left = sizes[t][(prices[t] == prices[r][k]) & (sizes[t] > 0)].sum()
            pulled[t] += int(2 * left <= sizes[r][k])
    return then, now, pulled


def band_depths(prices: np.ndarray, sizes: np.ndarray, touch: np.ndarray, side_sign: int,
                tick: int, ticks: int, lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth of one side within ``ticks`` of the touch ``lag`` rows ago: then, now, levels pulled.

    Args:
        prices, sizes: (grid rows, levels) of one side, best first; empty levels have size 0.
        touch: the side's best price per row.
        side_sign: +1 for bids (prices fall away from the touch), -1 for asks.
        tick: price increment; ticks: the band's width; lag: rows back to the reference.

    Returns:
        (then, now, pulled): per row ``t``, the depth at row ``t - lag`` within ``ticks`` behind
        that row's touch; the depth at row ``t`` at prices no further than that from the same
        touch (better prices count: orders that moved inside are not a withdrawal); and how many
        of the band's levels then hold at most half their size now (a withdrawal empties many
        levels at once, a single cancelled order one).
    """
    g, levels = prices.shape
    size = bucket(g)
    p = np.zeros((size, levels), np.int64)
    s = np.zeros((size, levels), np.float64)
    tc = np.zeros(size, np.int64)
    p[:g], s[:g], tc[:g] = prices, sizes, touch
    then, now, pulled = _band_depths(jnp.asarray(p), jnp.asarray(s), jnp.asarray(tc), side_sign, tick, ticks,
                                     lag)
    return np.asarray(then)[:g], np.asarray(now)[:g], np.asarray(pulled)[:g]


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _band_depths(prices: jax.Array, sizes: jax.Array, touch: jax.Array, side_sign: int, tick: int,
                 ticks: int, lag: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    t = jnp.arange(touch.shape[0])
    r = jnp.maximum(0, t - lag)
    ref = touch[r][:, None]
    then_p, then_s = prices[r], sizes[r]
    dist_then = side_sign * (ref - then_p) // tick
    in_band = (then_s > 0) & (dist_then >= 0) & (dist_then <= ticks)
    then = jnp.where(in_band, then_s, 0.0).sum(axis=1)
    dist_now = side_sign * (ref - prices) // tick
    now = jnp.where((sizes > 0) & (dist_now <= ticks), sizes, 0.0).sum(axis=1)
    # size left now at each level of then: (rows, levels then, levels now)
    same = (prices[:, None, :] == then_p[:, :, None]) & (sizes[:, None, :] > 0)
    left = jnp.where(same, sizes[:, None, :], 0.0).sum(axis=2)
    pulled = (in_band & (2 * left <= then_s)).sum(axis=1)
    return then, now, pulled
