"""Institutional pressure kernels: per-fill flow attribution (numba) and the time-of-day baseline (JAX).

``fill_flow`` is one sequential pass over one instrument's ``order_event`` rows (arrival order).
Every fill (``F``) of a resting order is a trade whose aggressor is the other side; the pass
attributes its volume to a side:

* the resting order was **two-sided quoting** (added within ``pair_ns`` of an add on the other
  side: a market maker posts both quotes at once, and the simulator has no owner ids to say so):
  its fill counts for the aggressor, never for the maker;
* the resting order was **young at the touch** (added at or inside its side's touch, filled
  within ``child_fill_ns`` of its add, not quoting both sides): a passive child of a parent rests
  at the touch and is filled within seconds, so
  ``passive_weight`` of the fill counts for the resting side and the rest is left out (a young
  background order looks the same: the weight is how far that guess is trusted);
* otherwise the fill counts for the aggressor.

``day_bucket_baseline`` turns per-bin window sums into the baseline a bin is judged against: the
root mean square of the same time-of-day bucket's window sums over up to ``max_days`` earlier
days of the input (NaN where the input holds none; the detector then falls back to the day's own
causal history, ``kernels.signals_windows.flow_windows``).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from numba import njit

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402  (after x64 is on)

from kernels.codes import L3_ADD as A  # noqa: E402
from kernels.codes import L3_FILL as F  # noqa: E402

NONE_NS = np.iinfo(np.int64).min


@njit(cache=True)
def _fill_flow(ts, oid, action, side, size, at_touch, n_orders, pair_ns, child_fill_ns, passive_weight):
    o_ts = np.full(n_orders, NONE_NS, np.int64)
    o_paired = np.zeros(n_orders, np.bool_)
    o_touch = np.zeros(n_orders, np.bool_)
    last_add_ns = np.full(2, NONE_NS, np.int64)
    last_add_oid = np.full(2, -1, np.int64)
    return _fill_flow_step(ts, oid, action, side, size, at_touch, o_ts, o_paired, o_touch, last_add_ns,
                           last_add_oid, pair_ns, child_fill_ns, passive_weight)


@njit(cache=True)
def _fill_flow_step(ts, oid, action, side, size, at_touch, o_ts, o_paired, o_touch, last_add_ns, last_add_oid,
                    pair_ns, child_fill_ns, passive_weight):
    n = len(ts)
    flow = np.zeros(n, np.float64)
    passive = np.zeros(n, np.float64)
    maker = np.zeros(n, np.bool_)
    for i in range(n):
        s = side[i]
        k = oid[i]
        if s < 0 or k < 0:
            continue
        a = action[i]
        t = ts[i]
        if a == A:
            o_ts[k] = t
            o_paired[k] = False
            o_touch[k] = at_touch[i]
            o = 1 - s
            if last_add_ns[o] != NONE_NS and t - last_add_ns[o] <= pair_ns:
                o_paired[k] = True
                o_paired[last_add_oid[o]] = True
            last_add_ns[s] = t
            last_add_oid[s] = k
        elif a == F and o_ts[k] != NONE_NS:
            sign = 1.0 if s == 0 else -1.0
            v = float(size[i])
            if o_paired[k]:
                maker[i] = True
                flow[i] = -sign * v
            elif o_touch[k] and t - o_ts[k] <= child_fill_ns:
                passive[i] = sign * v * passive_weight
                flow[i] = passive[i]
            else:
                flow[i] = -sign * v
    return flow, passive, maker


def fill_flow(ts_ns: np.ndarray, order_id: np.ndarray, action: np.ndarray, side: np.ndarray,
              size: np.ndarray, at_touch: np.ndarray, *, pair_ns: int, child_fill_ns: int,
              passive_weight: float) -> dict[str, np.ndarray]:
    """Signed volume each fill adds to the pressure (+ buy, - sell), per event.

    Args:
        ts_ns, order_id, action, side, size: the rows (``side`` coded 0 bid, 1 ask, -1 none;
            ``action`` the record's byte codes; order id 0 is anonymous and left out).
        at_touch: at adds, whether the order joined (or improved) its side's touch.
        pair_ns: an add this close to an add on the other side is two-sided quoting.
        child_fill_ns: a fill this soon after its order's add is a passive child's.
        passive_weight: share of a passive child's fill counted for its resting side.

    Returns:
        ``flow`` (signed volume, 0 off fills), ``passive`` (the part from passive children) and
        ``maker`` (the fill hit a two-sided quote), each of the events' length.
    """
    ids, oid = np.unique(np.asarray(order_id), return_inverse=True)
    oid = np.where(np.asarray(order_id) == 0, -1, oid).astype(np.int64)
    flow, passive, maker = _fill_flow(np.asarray(ts_ns, np.int64), oid, np.asarray(action, np.int64),
                                      np.asarray(side, np.int64), np.asarray(size, np.int64),
                                      np.asarray(at_touch, np.bool_), max(1, len(ids)), int(pair_ns),
                                      int(child_fill_ns), float(passive_weight))
    return dict(flow=flow, passive=passive, maker=maker)


class FillFlowState:
    """:func:`fill_flow`'s pass carried across batches (the live stage's): the same numba step
    over the same per-order state, the order ids given slots as they first show (sorted ids and
    their slots, searched per batch), so any cuts give the one pass's rows."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.uint64)  # sorted
        self.slots = np.zeros(0, np.int64)  # the slot of each id in ``ids``
        self.o_ts = np.zeros(0, np.int64)
        self.o_paired = np.zeros(0, np.bool_)
        self.o_touch = np.zeros(0, np.bool_)
        self.last_add_ns = np.full(2, NONE_NS, np.int64)
        self.last_add_oid = np.full(2, -1, np.int64)

    def step(self, ts_ns: np.ndarray, order_id: np.ndarray, action: np.ndarray, side: np.ndarray,
             size: np.ndarray, at_touch: np.ndarray, *, pair_ns: int, child_fill_ns: int,
             passive_weight: float) -> dict[str, np.ndarray]:
        """:func:`fill_flow` of the next events, the state carried."""
        order_id = np.asarray(order_id, np.uint64)
        seen = np.unique(order_id[order_id != 0])
        pos = np.searchsorted(self.ids, seen)
        known = pos < len(self.ids)
        known[known] = self.ids[pos[known]] == seen[known]
        fresh = seen[~known]
        if len(fresh):
            first = len(self.o_ts)
            ids = np.r_[self.ids, fresh]
            slots = np.r_[self.slots, np.arange(first, first + len(fresh))]
            order = np.argsort(ids, kind="stable")
            self.ids, self.slots = ids[order], slots[order]
            grow = len(fresh)
            self.o_ts = np.r_[self.o_ts, np.full(grow, NONE_NS, np.int64)]
            self.o_paired = np.r_[self.o_paired, np.zeros(grow, np.bool_)]
            self.o_touch = np.r_[self.o_touch, np.zeros(grow, np.bool_)]
        at = np.minimum(np.searchsorted(self.ids, order_id), max(0, len(self.ids) - 1))
        oid = np.where(order_id == 0, -1, self.slots[at] if len(self.slots) else -1).astype(np.int64)
        flow, passive, maker = _fill_flow_step(
            np.asarray(ts_ns, np.int64), oid, np.asarray(action, np.int64), np.asarray(side, np.int64),
            np.asarray(size, np.int64), np.asarray(at_touch, np.bool_), self.o_ts, self.o_paired,
            self.o_touch, self.last_add_ns, self.last_add_oid, int(pair_ns), int(child_fill_ns),
            float(passive_weight))
        return dict(flow=flow, passive=passive, maker=maker)


def fill_flow_ref(ts_ns: np.ndarray, order_id: np.ndarray, action: np.ndarray, side: np.ndarray,
                  size: np.ndarray, at_touch: np.ndarray, *, pair_ns: int, child_fill_ns: int,
                  passive_weight: float) -> dict[str, np.ndarray]:
    """Pure-Python reference of :func:`fill_flow` (dicts keyed by raw order ids)."""
    n = len(ts_ns)
    out = dict(flow=np.zeros(n), passive=np.zeros(n), maker=np.zeros(n, bool))
    orders: dict[int, list] = {}
    last_add: dict[int, tuple[int, int]] = {}
    for i in range(n):
        s, k, a, t = int(side[i]), int(order_id[i]), int(action[i]), int(ts_ns[i])
        if s not in (0, 1) or k == 0:
            continue
        if a == A:
            orders[k] = [t, False, bool(at_touch[i])]
            prev = last_add.get(1 - s)
            if prev is not None and t - prev[0] <= pair_ns:
                orders[k][1] = True
                orders[prev[1]][1] = True
            last_add[s] = (t, k)
        elif a == F and k in orders:
            sign = 1.0 if s == 0 else -1.0
            add_ns, paired, touch = orders[k]
            if paired:
                out["maker"][i] = True
                out["flow"][i] = -sign * float(size[i])
            elif touch and t - add_ns <= child_fill_ns:
                out["passive"][i] = out["flow"][i] = sign * float(size[i]) * passive_weight
            else:
                out["flow"][i] = -sign * float(size[i])
    return out


def day_bucket_baseline_ref(net: np.ndarray, day: np.ndarray, bucket: np.ndarray, n_days: int, n_buckets: int,
                            max_days: int) -> np.ndarray:
    """NumPy reference of :func:`day_bucket_baseline` (a loop over days and buckets)."""
    sq = np.zeros((n_days, n_buckets))
    cnt = np.zeros((n_days, n_buckets))
    np.add.at(sq, (day, bucket), net * net)
    np.add.at(cnt, (day, bucket), 1.0)
    base = np.full((n_days, n_buckets), np.nan)
    for d in range(n_days):
        for b in range(n_buckets):
            lo = max(0, d - max_days)
            c = cnt[lo:d, b].sum()
            if c > 0:
                base[d, b] = np.sqrt(sq[lo:d, b].sum() / c)
    return base[day, bucket]


def day_bucket_baseline(net: np.ndarray, day: np.ndarray, bucket: np.ndarray, n_days: int, n_buckets: int,
                        max_days: int) -> np.ndarray:
    """Per bin, the RMS of the window sums of the same time-of-day bucket over the up to
    ``max_days`` days before the bin's own (NaN where no earlier day has that bucket).

    Args:
        net: per-bin signed window sums.
        day, bucket: per bin, the day index (0 = first day of the input) and time-of-day bucket.
        n_days, n_buckets: their ranges; max_days: how many earlier days the baseline spans.
    """
    n = len(net)
    if n == 0:
        return np.zeros(0)
    size = max(1024, 1 << max(0, int(n - 1).bit_length()))
    x = np.zeros(size)
    d = np.full(size, n_days, np.int64)  # padding lands in a day of its own, never read
    b = np.zeros(size, np.int64)
    x[:n], d[:n], b[:n] = net, day, bucket
    days = max(1, 1 << max(0, int(n_days).bit_length()))  # > n_days: room for the padding day
    out = _day_bucket_baseline(jnp.asarray(x), jnp.asarray(d), jnp.asarray(b), days, int(n_buckets),
                               int(max_days))
    return np.asarray(out)[:n]


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _day_bucket_baseline(net: jax.Array, day: jax.Array, bucket: jax.Array, n_days: int, n_buckets: int,
                         max_days: int) -> jax.Array:
    sq = jnp.zeros((n_days, n_buckets)).at[day, bucket].add(net * net)
    cnt = jnp.zeros((n_days, n_buckets)).at[day, bucket].add(1.0)
    # earlier days through a (day, day) mask, not running sums: no cancellation of large squares
    d = jnp.arange(n_days)
    back = d[:, None] - d[None, :]
    mask = ((back >= 1) & (back <= max_days)).astype(net.dtype)
    s = mask @ sq
    c = mask @ cnt
    base = jnp.where(c > 0, jnp.sqrt(jnp.maximum(0.0, s) / jnp.maximum(c, 1.0)), jnp.nan)
    return base[day, bucket]


class RunningWindows:
    """:func:`kernels.signals_windows.flow_windows` (net, gross and passive window sums and the RMS
    of the net window sums over the ``baseline`` bins before the window) as running sums carried
    from bin to bin: :meth:`extend` takes the next bins' per-bin sums and gives their values.

    Every sum is sequential (``np.cumsum``: ``P[k] = P[k - 1] + x[k]``), so a day extended in any
    cuts gives the same bits as the day in one call: what lets the live stage carry the windows of
    a whole day in a bounded look-back and still equal the batch. NumPy, not JAX: a prefix scan on
    XLA may associate differently with the array's length. ``flow_windows_ref`` is its reference
    (equal up to rounding; exactly on integer volumes).
    """

    def __init__(self, window: int, baseline: int) -> None:
        self.window, self.baseline = int(window), int(baseline)
        self.bins = 0  # bins taken so far
        self.prefix = np.zeros((3, 1))  # P[first..bins] of signed, gross, passive
        self.prefix_first = 0
        self.sq = np.zeros(1)  # S[first..bins]: prefix sums of the squared net window sums
        self.sq_first = 0

    def extend(self, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The next bins' per-bin (signed, gross, passive) sums, shape (3, m), in; per bin the
        net, gross and passive window sums and the RMS baseline (NaN with none) out."""
        sums = np.asarray(sums, np.float64)
        m = sums.shape[1]
        t0, w = self.bins, self.window
        prefix = np.cumsum(np.concatenate([self.prefix[:, -1:], sums], axis=1), axis=1)
        full = np.concatenate([self.prefix, prefix[:, 1:]], axis=1)  # P[prefix_first..t0 + m]
        t = np.arange(t0, t0 + m)
        hi = t + 1 - self.prefix_first
        lo = np.maximum(0, t + 1 - w) - self.prefix_first
        win = full[:, hi] - full[:, lo]
        net = win[0]
        sq = np.cumsum(np.r_[self.sq[-1], net * net])
        sq_full = np.r_[self.sq, sq[1:]]  # S[sq_first..t0 + m]
        top = np.maximum(0, t - w + 1)
        bottom = np.maximum(0, t - w - self.baseline + 1)
        count = top - bottom
        mean_sq = np.maximum(0.0, (sq_full[top - self.sq_first] - sq_full[bottom - self.sq_first])
                             / np.maximum(count, 1))
        with np.errstate(invalid="ignore"):
            rms = np.where(count > 0, np.sqrt(mean_sq), np.nan)
        self.bins = t0 + m
        # keep what the next bins look back on: P from bins + 1 - window, S from bins - window - baseline + 1
        keep_p = max(0, self.bins + 1 - w) - self.prefix_first
        self.prefix, self.prefix_first = full[:, max(0, keep_p):], self.prefix_first + max(0, keep_p)
        keep_s = max(0, self.bins - w - self.baseline + 1) - self.sq_first
        self.sq, self.sq_first = sq_full[max(0, keep_s):], self.sq_first + max(0, keep_s)
        return net, win[1], win[2], rms
