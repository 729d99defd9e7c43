"""``training_examples``: causal book features and FI-2010 style labels on the snapshot grid.

One example per ``book_snapshot`` row of one instrument (the decision grid is the snapshot grid:
``snapshots_for_format(..., interval_ns=step_ns)``). A feature at decision time ``t`` reads only
snapshot rows with ``ts_event_ns <= t`` and trades whose grid instant (``kernels.metrics.grid_end``
of their arrival time, the rule ``tapeflow.derived.metrics`` uses) is ``<= t``:

* ``spread_nanos``, ``mid_price_nanos``, ``microprice_minus_mid_nanos``, ``imbalance_l1`` and
  ``imbalance_l<levels>`` (``(bid_depth - ask_depth) / (bid_depth + ask_depth)``) from the row itself
  (``tapeflow.derived.metrics.book_fields``);
* ``ofi_<w>s``: level-1 order-flow imbalance (Cont, Kukanov, Stoikov; ``kernels.metrics.quote_events``
  over consecutive snapshots' best quotes) summed over rows in ``(t - w, t]``;
* ``realized_vol_<w>s``: ``sqrt`` of the summed squared log mid returns between snapshots in
  ``(t - w, t]`` (0 when the mid did not move);
* ``trade_flow_<w>s``: buyer- minus seller-initiated size of the trades in ``(t - w, t]``.

Labels at horizon ``h`` (FI-2010, Ntakaris et al. 2018): ``smoothed_return_<h>s = mean(defined mids
of rows in (t, t + h]) / mid_t - 1`` and ``label_<h>s`` = 1 up (``> alpha``), -1 down (``< -alpha``),
0 flat, with one stationary ``alpha``; ``return_<h>s = mid(last row at or before t + h) / mid_t - 1``.
Both are absent (label null, return NaN) where ``t + h`` lies past the last snapshot, ``mid_t`` is
undefined (a one-sided book) or no mid in the window is. ``warmed_up`` is true once the longest
trailing window lies inside the data; ``two_sided`` is false where the book misses a side (spread,
mid and microprice are NaN there).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from kernels.metrics import UNDEF, grid_end, quote_events
from tapeflow.derived.metrics import book_fields, by_instrument, signed_volume
from tapeflow.errors import TapeflowError
from tapeflow.ml.book_inputs import book_input_names, book_inputs
from tapeflow.ml.signal_features import signal_feature_names, signal_features
from tapeflow.schemas.records import BOOK_SNAPSHOT, TRADE

SECOND_NS = 1_000_000_000
SCHEMA_VERSION = 1
HASH_KEY = b"tapeflow.feature_schema_hash"


@dataclass(frozen=True)
class ExampleParams:
    """Everything that defines the dataset; all of it enters the feature-schema hash."""

    step_ns: int = SECOND_NS
    levels: int = 10
    ofi_windows_s: tuple[int, ...] = (1, 10, 60)
    vol_window_s: int = 60
    flow_windows_s: tuple[int, ...] = (10, 60)
    horizons_s: tuple[int, ...] = (1, 10, 60)
    alpha: float = 2e-5
    signal_window_s: int = 0  # > 0: signal-score features over this trailing window (0: none)
    book_levels: int = 0      # > 0: raw book-level inputs of this many levels per side (0: none)


def feature_names(params: ExampleParams) -> list[str]:
    """The feature columns in table order."""
    return [
        "spread_nanos", "mid_price_nanos", "microprice_minus_mid_nanos", "imbalance_l1",
        f"imbalance_l{params.levels}", *(f"ofi_{w}s" for w in params.ofi_windows_s),
        f"realized_vol_{params.vol_window_s}s", *(f"trade_flow_{w}s" for w in params.flow_windows_s),
        *signal_feature_names(params.signal_window_s), *book_input_names(params.book_levels),
    ]


def feature_schema_hash(params: ExampleParams) -> str:
    """Stable sha256 (hex) of the feature names, label horizons and parameters."""
    fields = asdict(params)
    if not params.signal_window_s:  # datasets without signal features keep the hash they always had
        del fields["signal_window_s"]
    if not params.book_levels:  # nor do datasets without raw book-level inputs
        del fields["book_levels"]
    doc = {"version": SCHEMA_VERSION, "features": feature_names(params), "params": fields}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _defined(values: np.ndarray) -> np.ndarray:
    out = values.astype(np.float64)
    out[values == UNDEF] = np.nan
    return out


def _window_sums(grid: np.ndarray, instants: np.ndarray, values: np.ndarray, window_ns: int) -> np.ndarray:
    """Sum of ``values`` whose instant lies in ``(t - window_ns, t]`` for each ``t`` of ``grid``.

    ``instants`` must be non-decreasing. The prefix sums only ever read rows up to ``t``, so
    rows after ``t`` cannot change the result (for floats too: the prefix is the same sequence of adds).
    """
    prefix = np.concatenate([np.zeros(1, values.dtype), np.cumsum(values)])
    hi = np.searchsorted(instants, grid, side="right")
    lo = np.searchsorted(instants, grid - window_ns, side="right")
    return prefix[hi] - prefix[lo]


def _first_level(snap: pa.Table, column: str) -> np.ndarray:
    arr = snap.column(column).combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy()
    has = np.diff(offsets) > 0
    out = np.full(len(has), UNDEF if "price" in column else 0, np.int64)
    out[has] = values[offsets[:-1][has]]
    return out


def _features(snap: pa.Table, trades: pa.Table, grid: np.ndarray, p: ExampleParams) -> dict[str, np.ndarray]:
    top = book_fields(snap, 1)
    deep = book_fields(snap, p.levels)
    mid = _defined(deep["mid_price_nanos"])
    micro = _defined(deep["microprice_nanos"])
    cols: dict[str, np.ndarray] = {
        "spread_nanos": _defined(deep["spread_nanos"]), "mid_price_nanos": mid,
        "microprice_minus_mid_nanos": micro - mid, "imbalance_l1": top["imbalance"],
        f"imbalance_l{p.levels}": deep["imbalance"],
    }
    _, ofi, sq = quote_events(*(_first_level(snap, c) for c in (
        "bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")), np.zeros(5, np.int64))
    for w in p.ofi_windows_s:
        cols[f"ofi_{w}s"] = _window_sums(grid, grid, ofi, w * SECOND_NS).astype(np.float64)
    var = _window_sums(grid, grid, np.nan_to_num(sq, nan=0.0), p.vol_window_s * SECOND_NS)
    cols[f"realized_vol_{p.vol_window_s}s"] = np.sqrt(np.maximum(var, 0.0))
    inst = grid_end(trades.column("ts_recv_ns").to_numpy(), p.step_ns)
    signed = signed_volume(trades)
    for w in p.flow_windows_s:
        cols[f"trade_flow_{w}s"] = _window_sums(grid, inst, signed, w * SECOND_NS).astype(np.float64)
    return cols


def _labels(grid: np.ndarray, mid: np.ndarray, p: ExampleParams) -> dict[str, pa.Array]:
    n = len(grid)
    out: dict[str, pa.Array] = {}
    # a one-sided book has no mid: the mean runs over the defined mids of the window
    defined = ~np.isnan(mid)
    total = np.concatenate([[0.0], np.cumsum(np.where(defined, mid, 0.0))])
    count = np.concatenate([[0], np.cumsum(defined)])
    last_ns = grid[-1] if n else 0
    for h in p.horizons_s:
        h_ns = h * SECOND_NS
        lo = np.arange(n) + 1
        hi = np.searchsorted(grid, grid + h_ns, side="right")
        seen = count[hi] - count[lo]
        inside = (grid + h_ns <= last_ns) & (seen > 0) & defined
        at = np.maximum(hi - 1, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            smoothed = np.where(inside, (total[hi] - total[lo]) / np.maximum(seen, 1) / mid - 1.0, np.nan)
            point = np.where(inside, mid[at] / mid - 1.0, np.nan)
        label = np.where(smoothed > p.alpha, 1, np.where(smoothed < -p.alpha, -1, 0)).astype(np.int8)
        out[f"return_{h}s"] = pa.array(point, pa.float64())
        out[f"smoothed_return_{h}s"] = pa.array(smoothed, pa.float64())
        out[f"label_{h}s"] = pa.array(label, pa.int8(), mask=np.isnan(smoothed))
    return out


def training_examples(snapshots: pa.Table, trades: pa.Table, params: ExampleParams | None = None, *,
                      source: str = "", signals: pa.Table | None = None) -> pa.Table:
    """Features and labels for one instrument on its snapshot grid (definitions: module docstring).

    Args:
        snapshots: one instrument's ``book_snapshot`` rows on the ``params.step_ns`` grid, in time order.
        trades: that instrument's ``trade`` rows in arrival order (other instruments' rows are refused).
        params: the dataset definition (defaults: 1 s grid, horizons 1/10/60 s).
        source: the source partitions, recorded in the metadata for lineage.
        signals: that instrument's ``signal`` rows, needed when ``params.signal_window_s`` > 0
            (``tapeflow.ml.signal_features``: rows known after ``t`` never reach the row at ``t``).

    Returns:
        A table ``ts_event_ns, warmed_up, two_sided, <features>, return_/smoothed_return_/label_<h>s``
        whose schema metadata holds ``tapeflow.feature_schema_hash``, ``tapeflow.feature_params`` and
        ``tapeflow.source``.

    Raises:
        TapeflowError: wrong record, several instruments, snapshots off the grid or out of order, or
            signal features asked without ``signals``.
    """
    p = params or ExampleParams()
    if p.signal_window_s and signals is None:
        raise TapeflowError(f"the dataset has signal features ({p.signal_window_s} s): pass the signal rows")
    if snapshots.schema.names != BOOK_SNAPSHOT.column_names or trades.schema.names != TRADE.column_names:
        raise TapeflowError("training_examples needs a book_snapshot table and a trade table")
    keys = {(v, s) for v, s, _ in by_instrument(snapshots)} | {(v, s) for v, s, _ in by_instrument(trades)}
    if len(keys) > 1:
        raise TapeflowError(f"training_examples takes one instrument, got {sorted(keys)}")
    grid = snapshots.column("ts_event_ns").to_numpy()
    if (grid % p.step_ns != 0).any():
        raise TapeflowError(f"snapshots are not on the {p.step_ns} ns grid (build them with interval_ns)")
    if len(grid) > 1 and (np.diff(grid) <= 0).any():
        raise TapeflowError("snapshot times are not strictly increasing")
    feats = _features(snapshots, trades, grid, p)
    if p.signal_window_s:
        feats.update(signal_features(grid, signals, p.signal_window_s))
    if p.book_levels:
        if p.book_levels > p.levels:
            raise TapeflowError(f"book_levels {p.book_levels} exceeds the snapshot levels {p.levels}")
        feats.update(book_inputs(snapshots, p.book_levels))
    longest_ns = max((*p.ofi_windows_s, p.vol_window_s, *p.flow_windows_s)) * SECOND_NS
    warmed = grid - longest_ns >= (grid[0] if len(grid) else 0)
    cols: dict[str, pa.Array] = {"ts_event_ns": pa.array(grid, pa.int64()), "warmed_up": pa.array(warmed),
                                 "two_sided": pa.array(~np.isnan(feats["mid_price_nanos"]))}
    cols.update({k: pa.array(v, pa.float64()) for k, v in feats.items()})
    cols.update(_labels(grid, feats["mid_price_nanos"], p))
    meta = {HASH_KEY: feature_schema_hash(p).encode(),
            b"tapeflow.feature_params": json.dumps(asdict(p), sort_keys=True).encode(),
            b"tapeflow.source": source.encode()}
    return pa.table(cols).replace_schema_metadata(meta)
