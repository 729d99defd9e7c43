"""Cross-strike coordination kernels: one underlying's signed option flow per instrument over a
trailing window, at every trade, and which instruments take part in a one-way flow.

``window_flows`` (JAX, jit, inputs padded to power-of-two buckets: one compile per bucket pair)
and ``window_flows_ref`` (NumPy) give, for each trade ``i`` and instrument ``s``, the net and gross
flow of ``s`` over the trades in ``(t_i - window, t_i]``. ``participation`` reduces a row: the
instruments whose net flow reaches ``threshold`` and is one-sided (``|net| >= one_sided * gross``)
count on their sign's side. ``rolling_median`` is the causal baseline (NumPy: a median is a sort,
and the trades of one expiry are few).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

_MIN_BUCKET = 64


class Participation(NamedTuple):
    """Per row: instruments taking part on the buy / sell side, and their summed |net| flow."""

    n_buy: np.ndarray
    n_sell: np.ndarray
    flow_buy: np.ndarray
    flow_sell: np.ndarray


def _bucket(n: int) -> int:
    return max(_MIN_BUCKET, 1 << max(0, int(n - 1).bit_length()))


@jax.jit
def _flows(t_ns: jax.Array, inst: jax.Array, flow: jax.Array, lo: jax.Array, n_inst_mask: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
    onehot = (inst[:, None] == jnp.arange(n_inst_mask.shape[0])[None, :]).astype(jnp.float64)
    signed = jnp.concatenate([jnp.zeros((1, onehot.shape[1])), jnp.cumsum(onehot * flow[:, None], axis=0)])
    gross = jnp.concatenate([jnp.zeros((1, onehot.shape[1])),
                             jnp.cumsum(onehot * jnp.abs(flow)[:, None], axis=0)])
    rows = jnp.arange(1, t_ns.shape[0] + 1)
    return signed[rows] - signed[lo], gross[rows] - gross[lo]


def _lower(t_ns: np.ndarray, window_ns: int) -> np.ndarray:
    """First row inside each row's window ``(t - window, t]``."""
    return np.searchsorted(t_ns, t_ns - window_ns, side="right").astype(np.int64)


def window_flows(t_ns: np.ndarray, inst: np.ndarray, flow: np.ndarray, n_inst: int, window_ns: int,
                 block_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Net and gross flow per instrument over each trade's trailing window.

    Args:
        t_ns: trade times, ascending.
        inst: each trade's instrument, 0 .. n_inst - 1.
        flow: each trade's signed flow (+ buyer-initiated).
        n_inst: number of instruments.
        window_ns: the window's length.
        block_rows: rows per kernel call (each call also takes the rows its first window reaches
            back to): the work is rows x instruments, so a day of a whole chain goes in blocks.

    Returns:
        ``(net, gross)``, both ``(len(t_ns), n_inst)`` float64.
    """
    t_ns = np.asarray(t_ns, np.int64)
    inst = np.asarray(inst, np.int64)
    flow = np.asarray(flow, np.float64)
    n = len(t_ns)
    lo = _lower(t_ns, window_ns)
    net, gross = np.zeros((n, n_inst)), np.zeros((n, n_inst))
    for a in range(0, n, block_rows):
        b = min(n, a + block_rows)
        first = int(lo[a])
        block = _block(t_ns[first:b], inst[first:b], flow[first:b], lo[first:b] - first, n_inst)
        net[a:b], gross[a:b] = block[0][a - first:], block[1][a - first:]
    return net, gross


def _block(t_ns: np.ndarray, inst: np.ndarray, flow: np.ndarray, lo: np.ndarray, n_inst: int
           ) -> tuple[np.ndarray, np.ndarray]:
    n = len(t_ns)
    rows, cols = _bucket(n), _bucket(n_inst)
    t = np.full(rows, np.iinfo(np.int64).max, np.int64)
    t[:n] = t_ns
    ins = np.full(rows, cols, np.int64)  # padding rows belong to no instrument
    ins[:n] = inst
    f = np.zeros(rows)
    f[:n] = flow
    low = np.zeros(rows, np.int64)
    low[:n] = lo
    net, gross = _flows(jnp.asarray(t), jnp.asarray(ins), jnp.asarray(f), jnp.asarray(low), jnp.zeros(cols))
    return np.asarray(net)[:n, :n_inst], np.asarray(gross)[:n, :n_inst]


def window_flows_ref(t_ns: np.ndarray, inst: np.ndarray, flow: np.ndarray, n_inst: int, window_ns: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Reference of :func:`window_flows`: each window summed directly."""
    t_ns = np.asarray(t_ns, np.int64)
    n = len(t_ns)
    net, gross = np.zeros((n, n_inst)), np.zeros((n, n_inst))
    lo = _lower(t_ns, window_ns)
    for i in range(n):
        for j in range(lo[i], i + 1):
            net[i, inst[j]] += flow[j]
            gross[i, inst[j]] += abs(flow[j])
    return net, gross


def participation(net: np.ndarray, gross: np.ndarray, net_count: np.ndarray, gross_count: np.ndarray,
                  threshold: float, one_sided: float, min_trades: int) -> Participation:
    """Instruments whose window net flow reaches ``threshold`` with ``|net| >= one_sided * gross``
    and at least ``min_trades`` trades its way (``net_count``/``gross_count``: the same windows over
    each trade's sign), counted and summed per side, per row."""
    ok = (np.abs(net) >= threshold) & (np.abs(net) >= one_sided * gross - 1e-12)
    buys, sells = 0.5 * (gross_count + net_count), 0.5 * (gross_count - net_count)
    buy = ok & (net > 0) & (buys >= min_trades - 1e-9)
    sell = ok & (net < 0) & (sells >= min_trades - 1e-9)
    return Participation(buy.sum(axis=1), sell.sum(axis=1), np.where(buy, net, 0.0).sum(axis=1),
                         -np.where(sell, net, 0.0).sum(axis=1))


def rolling_median(values: np.ndarray, group: np.ndarray, lookback: int, min_count: int) -> np.ndarray:
    """Causal baseline: per row, the median of ``values`` over the previous ``lookback`` rows of its
    ``group`` (NaN until the group has ``min_count`` earlier rows)."""
    values = np.asarray(values, np.float64)
    out = np.full(values.size, np.nan)
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        v = values[rows]
        for i in range(min_count, rows.size):
            out[rows[i]] = np.median(v[max(0, i - lookback):i])
    return out
