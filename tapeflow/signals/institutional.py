"""Institutional pressure from L3 order events (kernels.signals_institutional, kernels.signals_windows).

Pressure is signed volume over ``window_ns``: each fill counts for its aggressor, except fills of
two-sided quotes (market-maker flow: the maker never counts, its counterparty does) and fills of
young orders (a parent's passive children rest at the touch and fill within seconds:
``passive_weight`` of them counts for the resting side). A window alerts when its net volume
reaches ``x_median`` median fills, is at least ``one_sided`` of the window's volume, and is
``z`` times the baseline: the RMS of the same time-of-day bucket's windows over up to
``baseline_days`` earlier days of the input, or, where the input holds no earlier day (one file,
one simulated partition), the RMS of the day's own earlier windows over ``fallback_baseline_ns``.
A market maker's two-sided flow of the same volume nets to nothing and never passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.signals_institutional import day_bucket_baseline, fill_flow
from kernels.signals_windows import block_quantiles, flow_windows
from tapeflow.signals.rows import Alerts, first_of_runs

NAME = "institutional/1"
_BIN_NS = 1_000_000_000
_DAY_NS = 86_400 * _BIN_NS
_MEDIAN_FILLS = 500  # fills per baseline block of the median fill size; 4 blocks looked back
_LOOKBACK_BLOCKS = 4
_FILL = ord("F")


def detect(ev: dict[str, np.ndarray], at_touch: np.ndarray, params: dict[str, Any], venue: str, symbol: str
           ) -> Alerts:
    """Institutional pressure alerts of one instrument.

    Args:
        ev: the ``order_event`` columns ``ts_event_ns``, ``ts_recv_ns``, ``order_id``, ``action``,
            ``size_nanos`` and ``side_code`` (0 bid, 1 ask, -1 none), arrival order.
        at_touch: per event, at adds: the order joined or improved its side's touch.
        params: the detector's thresholds.
    """
    out = Alerts(venue, symbol, NAME, params)
    ff = fill_flow(ev["ts_event_ns"], ev["order_id"], ev["action"], ev["side_code"], ev["size_nanos"],
                   at_touch, pair_ns=params["mm_pair_ns"], child_fill_ns=params["child_fill_ns"],
                   passive_weight=params["passive_weight"])
    fills = np.flatnonzero((ev["action"] == _FILL) & (ev["side_code"] >= 0) & (ev["order_id"] != 0))
    if len(fills) == 0:
        return out
    # arrival order may step back in venue time (a late packet): the windows need time order
    fills = fills[np.argsort(ev["ts_event_ns"][fills], kind="stable")]
    ts = ev["ts_event_ns"][fills]
    flow, passive, maker = ff["flow"][fills], ff["passive"][fills], ff["maker"][fills]
    size = ev["size_nanos"][fills].astype(np.float64)
    t0 = int(ts[0]) // _BIN_NS
    bins = (ts // _BIN_NS - t0).astype(np.int64)
    n = int(bins[-1]) + 1
    window = max(1, params["window_ns"] // _BIN_NS)
    net, gross, rms = flow_windows(np.bincount(bins, flow, minlength=n), np.bincount(bins, size, minlength=n),
                                   window, max(1, params["fallback_baseline_ns"] // _BIN_NS))
    pas, _, _ = flow_windows(np.bincount(bins, passive, minlength=n), np.zeros(n), window, 1)
    abs_ns = (np.arange(n) + t0) * _BIN_NS
    day = abs_ns // _DAY_NS
    day -= day[0]
    bucket_ns = params["bucket_ns"]
    tod_bucket = (abs_ns % _DAY_NS) // bucket_ns
    days_base = day_bucket_baseline(net, day, tod_bucket, int(day[-1]) + 1, int(-(-_DAY_NS // bucket_ns)),
                                    params["baseline_days"])
    from_days = np.isfinite(days_base)
    scale = np.where(from_days, days_base, rms)
    med_fill = block_quantiles(size, _MEDIAN_FILLS, _LOOKBACK_BLOCKS, (0.5,))[:, 0]
    last = np.searchsorted(bins, np.arange(n), side="right") - 1
    med = np.where(last >= 0, med_fill[np.maximum(last, 0)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.minimum.reduce([
            np.abs(net) / (params["x_median"] * med),
            np.abs(net) / np.maximum(gross, 1e-9) / params["one_sided"],
            np.abs(net) / (params["z"] * scale),
        ])
    ratio = np.where(np.isfinite(ratio), ratio, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # a meta-order works part of its parent passively; a whale's parent is all aggression
        worked = np.sign(net) * pas / np.abs(net) >= params["min_passive_share"]
    on = (ratio >= 1.0) & worked
    rising = np.flatnonzero(on & ~np.r_[False, on[:-1]])
    for side in (1, -1):
        cand = rising[np.sign(net[rising]) == side]
        at = last[cand]
        for k in first_of_runs(ts[at], params["refractory_ns"]):
            b, i = int(cand[k]), int(at[k])
            lo = np.searchsorted(bins, b - window + 1)
            same = np.flatnonzero(np.sign(flow[lo:i + 1]) == side) + lo
            t = int(ts[i])
            in_window = slice(lo, i + 1)
            out.add(ts_event_ns=t, ts_recv_ns=int(ev["ts_recv_ns"][fills[i]]), kind="institutional",
                    side=side, size_nanos=int(abs(net[b])), end_ns=t,
                    start_ns=int(ts[same[0]]) if len(same) else t,
                    score=float(ratio[b]),
                    evidence=dict(window_s=int(window), net_x_median=round(float(abs(net[b]) / med[b]), 2),
                                  one_sided=round(float(abs(net[b]) / gross[b]), 3),
                                  net_z=round(float(abs(net[b]) / scale[b]), 2),
                                  baseline="earlier_days" if from_days[b] else "own_day",
                                  passive_share=round(float(side * pas[b] / abs(net[b])), 3),
                                  maker_fill_share=round(float(size[in_window][maker[in_window]].sum()
                                                               / max(gross[b], 1e-9)), 3)))
    return out
