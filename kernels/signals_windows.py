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

Below ``NUMPY_BELOW`` elements an entry point runs its vectorized NumPy form (``*_np``) instead
(here and in ``signals_walls``, ``signals_stealth``, ``signals_hidden``): the live signals stage
hands these kernels a look-back of a few thousand rows per micro-batch, where a JAX call
(dispatch, padding, the copy back) costs 0.3-6 ms on this CPU and the NumPy form tens of
microseconds. The two give the same bits: the forms compute the same formula, and where it sums
floats (a running sum's differences, a row's levels) the NumPy form is taken only when those sums
are exact (:func:`exact_sums`: every value a multiple of 1/256, the absolute total below 2**45),
so the order of the additions cannot matter; otherwise the JAX form runs. Days and backfills
(long arrays) stay on JAX.
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


NUMPY_BELOW = 1 << 15  # rows below which the NumPy forms run (tests set 0: JAX always)
_EXACT_SCALE = 256.0


def small(n: int) -> bool:
    """Whether ``n`` rows go to the NumPy form (see the module's docstring)."""
    return n < NUMPY_BELOW


def exact_sums(*xs: np.ndarray, axis: int | None = None) -> bool:
    """Whether every sum of values of each of ``xs`` (along ``axis``, or all of them), added in
    any order, is exact in float64: finite multiples of 1/256 whose absolute total is below
    2**45. Then running sums and their differences are the same bits whatever the order of the
    additions (JAX's tree or NumPy's loop)."""
    for x in xs:
        if not x.size:
            continue
        scaled = np.asarray(x, np.float64) * _EXACT_SCALE
        with np.errstate(invalid="ignore", over="ignore"):
            total = np.abs(scaled).sum(axis=axis)
            if not (total < float(2 ** 53)).all() or not (scaled == np.rint(scaled)).all():
                return False
    return True


def _running(x: np.ndarray) -> np.ndarray:
    """``[0, x0, x0 + x1, ...]`` in float64 (exact where :func:`exact_sums` said so)."""
    out = np.zeros(len(x) + 1)
    np.cumsum(x, out=out[1:])
    return out


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
    if small(n) and all(float(q) == 0.5 for q in qs):
        # medians only: their weights (0, 1/2, 1) make every product exact. Other quantiles'
        # products round, and whether XLA fuses the multiply-add depends on the compiled program
        # (it did for one quantile a call, not for three): those stay on JAX
        return block_quantiles_np(x, block, lookback, qs)
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


def quantiles_sorted(a: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``jnp.nanquantile(..., method="linear")``'s arithmetic over ``a`` (sorted, no NaN):
    position ``q * (n - 1)``, its floor and ceiling clamped into ``a``, the two values weighted
    ``1 - w`` and ``w`` and added; NaN where ``a`` is empty. The same bits as JAX's for a median
    (exact products); for other quantiles XLA may fuse the multiply-add (it rounds once)."""
    n = len(a)
    if not n:
        return [float("nan")] * len(qs)
    out = []
    for q in qs:
        pos = float(q) * float(n - 1)
        low, high = np.floor(pos), np.ceil(pos)
        w = float(pos - low)
        lo, hi = min(max(int(low), 0), n - 1), min(max(int(high), 0), n - 1)
        out.append(float(a[lo] * (1.0 - w) + a[hi] * w))
    return out


def block_quantiles_np(x: np.ndarray, block: int, lookback: int, qs: tuple[float, ...]) -> np.ndarray:
    """:func:`block_quantiles` in NumPy (a sort per block), bit for bit."""
    x = np.asarray(x, np.float64)
    out = np.full((len(x), len(qs)), np.nan)
    for b in range(1, -(-len(x) // block)):
        past = x[max(0, b - lookback) * block:b * block]
        past = np.sort(past[~np.isnan(past)])
        out[b * block:(b + 1) * block] = quantiles_sorted(past, qs)
    return out


# ---- flow_windows ------------------------------------------------------------------------------


def flow_windows_ref(signed: np.ndarray, total: np.ndarray, window: int, baseline: int, *, rms: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy reference of :func:`flow_windows` (a loop over bins)."""
    n = len(signed)
    net, gross = np.zeros(n), np.zeros(n)
    for t in range(n):
        net[t] = signed[max(0, t - window + 1):t + 1].sum()
        gross[t] = total[max(0, t - window + 1):t + 1].sum()
    spread = np.full(n, np.nan)
    for t in range(n if rms else 0):
        past = net[max(0, t - window - baseline + 1):max(0, t - window + 1)]
        if len(past):
            spread[t] = np.sqrt(np.mean(past ** 2))
    return net, gross, spread


def flow_windows(signed: np.ndarray, total: np.ndarray, window: int, baseline: int, *, rms: bool = True
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed and gross volume over the last ``window`` bins (this one included), and the RMS of
    the signed window sums ending in the ``baseline`` bins before that window (NaN with none;
    all NaN with ``rms=False``: a caller that reads no RMS spares its sums)."""
    n = len(signed)
    if small(n):
        got = flow_windows_np(signed, total, window, baseline, rms=rms)
        if got is not None:
            return got
    size = bucket(n)
    s = np.zeros(size)
    g = np.zeros(size)
    s[:n], g[:n] = signed, total
    net, gross, spread = _flow_windows(jnp.asarray(s), jnp.asarray(g), window, baseline)
    return np.asarray(net)[:n], np.asarray(gross)[:n], np.asarray(spread)[:n] if rms else np.full(n, np.nan)


def flow_windows_np(signed: np.ndarray, total: np.ndarray, window: int, baseline: int, *, rms: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`flow_windows` in NumPy, the JAX form's bits; None where its sums are not exact
    (:func:`exact_sums`): the caller runs the JAX form then."""
    signed, total = np.asarray(signed, np.float64), np.asarray(total, np.float64)
    if not exact_sums(signed, total):
        return None
    n = len(signed)
    idx = np.arange(1, n + 1)
    back = np.maximum(0, idx - window)
    c, cg = _running(signed), _running(total)
    net, gross = c[idx] - c[back], cg[idx] - cg[back]
    if not rms:
        return net, gross, np.full(n, np.nan)
    squares = net * net
    if not exact_sums(squares):
        return None
    sq = _running(squares)
    t = np.arange(n)
    hi = np.maximum(0, t - window + 1)
    lo = np.maximum(0, t - window - baseline + 1)
    count = hi - lo
    mean_sq = np.maximum(0.0, (sq[hi] - sq[lo]) / np.maximum(count, 1))
    return net, gross, np.where(count > 0, np.sqrt(mean_sq), np.nan)


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
    x = np.asarray(x, np.float64)
    if small(n) and exact_sums(x):
        return trailing_sums_np(ts, x, window)
    size = bucket(n)
    t = np.full(size, np.iinfo(np.int64).max)  # padding sorts after every event and adds nothing
    v = np.zeros(size)
    t[:n], v[:n] = ts, x
    # the window is traced, not static: one compile per bucket whatever the threshold
    return np.asarray(_trailing_sums(jnp.asarray(t), jnp.asarray(v), jnp.asarray(int(window), jnp.int64)))[:n]


def trailing_sums_np(ts: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    """:func:`trailing_sums` in NumPy, the JAX form's formula (its bits where ``x`` sums exactly)."""
    ts = np.asarray(ts, np.int64)
    c = _running(np.asarray(x, np.float64))
    return c[np.searchsorted(ts, ts, side="left")] - c[np.searchsorted(ts, ts - window, side="left")]


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
    if small(g) and exact_sums(sizes, axis=1):
        return band_depths_np(prices, sizes, touch, side_sign, tick, ticks, lag)
    size = bucket(g)
    p = np.zeros((size, levels), np.int64)
    s = np.zeros((size, levels), np.float64)
    tc = np.zeros(size, np.int64)
    p[:g], s[:g], tc[:g] = prices, sizes, touch
    then, now, pulled = _band_depths(jnp.asarray(p), jnp.asarray(s), jnp.asarray(tc), side_sign, tick, ticks,
                                     lag)
    return np.asarray(then)[:g], np.asarray(now)[:g], np.asarray(pulled)[:g]


def band_depths_np(prices: np.ndarray, sizes: np.ndarray, touch: np.ndarray, side_sign: int,
                   tick: int, ticks: int, lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`band_depths` in NumPy, the JAX form's formula (the same bits where a row's sizes
    sum exactly: :func:`exact_sums`)."""
    prices, sizes = np.asarray(prices, np.int64), np.asarray(sizes, np.float64)
    touch = np.asarray(touch, np.int64)
    r = np.maximum(0, np.arange(len(touch)) - lag)
    ref = touch[r][:, None]
    then_p, then_s = prices[r], sizes[r]
    dist_then = side_sign * (ref - then_p) // tick
    in_band = (then_s > 0) & (dist_then >= 0) & (dist_then <= ticks)
    then = np.where(in_band, then_s, 0.0).sum(axis=1)
    dist_now = side_sign * (ref - prices) // tick
    now = np.where((sizes > 0) & (dist_now <= ticks), sizes, 0.0).sum(axis=1)
    same = (prices[:, None, :] == then_p[:, :, None]) & (sizes[:, None, :] > 0)
    left = np.where(same, sizes[:, None, :], 0.0).sum(axis=2)
    pulled = (in_band & (2 * left <= then_s)).sum(axis=1)
    return then, now, pulled


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
