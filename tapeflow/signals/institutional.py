"""Institutional pressure from L3 order events (kernels.signals_institutional, kernels.signals_windows).

Pressure is signed volume over ``window_ns``: each fill counts for its aggressor, except fills of
two-sided quotes (market-maker flow: the maker never counts, its counterparty does) and fills of
young orders (a parent's passive children rest at the touch and fill within seconds:
``passive_weight`` of them counts for the resting side). A window alerts when its net volume
reaches ``x_median`` median fills, is at least ``one_sided`` of the window's volume, and is
``z`` times the baseline: the RMS of the same time-of-day bucket's windows over up to
``baseline_days`` earlier days (:class:`Baselines`: the earlier days of the input, and in the live
stage the days before it started, kept under the lake), or, where no earlier day has the bucket
(one file, one simulated partition, a first day), the RMS of the day's own earlier windows over
``fallback_baseline_ns``. A market maker's two-sided flow of the same volume nets to nothing and
never passes.

Each UTC day is judged on its own (the order state, the 1 s bins from the day's first fill, the
median fill size, the refractory chain) against the baseline of the days before it: what a day
adds to the baseline is its per-bucket sum of squared window sums and bin count
(:func:`day_totals`). That is what lets the live stage (``tapeflow.signals.stream_institutional``)
equal this detector row for row across a restart: the only state a day hands the next is the
baseline, and that is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.signals_institutional import RunningWindows, fill_flow
from kernels.signals_windows import block_quantiles
from tapeflow.signals.rows import Alerts

NAME = "institutional/1"
_BIN_NS = 1_000_000_000
_DAY_NS = 86_400 * _BIN_NS
DAY_BINS = _DAY_NS // _BIN_NS  # bins of a day at most
MEDIAN_FILLS = 500  # fills per baseline block of the median fill size; 4 blocks looked back
LOOKBACK_BLOCKS = 4
_FILL = ord("F")


@dataclass
class Baselines:
    """Per UTC day number, what the day adds to the baseline: per time-of-day bucket, the sum of
    its bins' squared window sums and the number of bins, for the ``(bucket_ns, window_ns)`` they
    were computed with (days of other settings are not used)."""

    days: dict[int, tuple[int, int, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def base(self, day: int, params: dict[str, Any]) -> np.ndarray:
        """Per bucket, the RMS over the up to ``baseline_days`` days before ``day`` (NaN: none)."""
        key = (params["bucket_ns"], params["window_ns"])
        n_buckets = n_buckets_of(params)
        mine = [d for d in sorted(self.days) if day - params["baseline_days"] <= d < day
                and self.days[d][:2] == key]
        if not mine:
            return np.full(n_buckets, np.nan)
        sq = np.stack([self.days[d][2] for d in mine])
        cnt = np.stack([self.days[d][3] for d in mine])
        s, c = sq.sum(axis=0), cnt.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(c > 0, np.sqrt(np.maximum(0.0, s) / np.maximum(c, 1.0)), np.nan)

    def add(self, day: int, params: dict[str, Any], sq: np.ndarray, cnt: np.ndarray, *,
            keep_days: int = 40) -> None:
        """Record ``day``'s totals (replacing any earlier record of it); forget days long past."""
        self.days[day] = (int(params["bucket_ns"]), int(params["window_ns"]), sq, cnt)
        for d in [d for d in self.days if d < day - keep_days]:
            del self.days[d]


def n_buckets_of(params: dict[str, Any]) -> int:
    return int(-(-_DAY_NS // params["bucket_ns"]))


@dataclass
class DayFills:
    """One day's fills in time order: time, capture time, signed flow, passive part, maker flag,
    size and the median fill size of its block (``median``), and their 1 s bin from ``t0``."""

    ts: np.ndarray
    recv: np.ndarray
    flow: np.ndarray
    passive: np.ndarray
    maker: np.ndarray
    size: np.ndarray
    median: np.ndarray
    t0: int  # the day's first fill's second (absolute)

    @property
    def bins(self) -> np.ndarray:
        return (self.ts // _BIN_NS - self.t0).astype(np.int64)


@dataclass
class DayWindows:
    """Per bin of a run of a day's bins (from its first fill's second): net and gross volume over
    the window, the passive part, the own-day fallback RMS and the time-of-day bucket."""

    net: np.ndarray
    gross: np.ndarray
    passive: np.ndarray
    rms: np.ndarray
    bucket: np.ndarray


def running_windows(params: dict[str, Any]) -> RunningWindows:
    """The day's window sums, carried bin to bin (``kernels.signals_institutional.RunningWindows``)."""
    return RunningWindows(max(1, params["window_ns"] // _BIN_NS),
                          max(1, params["fallback_baseline_ns"] // _BIN_NS))


def day_windows(running: RunningWindows, sums: np.ndarray, t0: int, params: dict[str, Any]) -> DayWindows:
    """The windows of the day's next bins from their per-bin (signed, gross, passive) sums."""
    first = running.bins
    net, gross, passive, rms = running.extend(sums)
    abs_ns = (np.arange(first, first + len(net)) + t0) * _BIN_NS
    return DayWindows(net, gross, passive, rms, (abs_ns % _DAY_NS) // params["bucket_ns"])


def add_totals(totals: tuple[np.ndarray, np.ndarray], w: DayWindows) -> None:
    """Add bins to what the day adds to the baseline: per bucket, the sum of the squared window
    sums and the number of bins (``np.add.at``: one bin at a time, in order, whatever the cuts)."""
    np.add.at(totals[0], w.bucket, w.net * w.net)
    np.add.at(totals[1], w.bucket, 1.0)


def new_totals(params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    nb = n_buckets_of(params)
    return np.zeros(nb), np.zeros(nb)


def judge(out: Alerts, w: DayWindows, f: DayFills, lo: int, hi: int, params: dict[str, Any],
          base: np.ndarray, state: dict[str, Any]) -> None:
    """Add the alerts of bins ``[lo, hi)`` of the day to ``out``.

    ``w`` holds exactly those bins; ``f`` the day's fills from at least the last one
    at or before bin ``lo - window`` on (all of them, in batch); ``state`` carries, from bin to
    bin of the day, whether the bin before ``lo`` alerted (``on``) and the last alert per side
    (``last``)."""
    if hi <= lo:
        return
    bins = f.bins
    window = max(1, params["window_ns"] // _BIN_NS)
    b = np.arange(lo, hi)
    net, gross, pas = w.net, w.gross, w.passive
    days_base = base[w.bucket]
    from_days = np.isfinite(days_base)
    scale = np.where(from_days, days_base, w.rms)
    last = np.searchsorted(bins, b, side="right") - 1
    med = np.where(last >= 0, f.median[np.maximum(last, 0)], np.nan)
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
    rising = np.flatnonzero(on & ~np.r_[state.get("on", False), on[:-1]])
    state["on"] = bool(on[-1])
    last_alert = state.setdefault("last", {})
    for k in rising.tolist():  # bin order: the refractory chain runs per side, carried
        side = 1 if net[k] > 0 else -1
        i = int(last[k])
        t = int(f.ts[i])
        prev = last_alert.get(side)
        if prev is not None and t - prev < params["refractory_ns"]:
            continue
        last_alert[side] = t
        lo_fill = int(np.searchsorted(bins, int(b[k]) - window + 1))
        same = np.flatnonzero(np.sign(f.flow[lo_fill:i + 1]) == side) + lo_fill
        in_window = slice(lo_fill, i + 1)
        out.add(ts_event_ns=t, ts_recv_ns=int(f.recv[i]), kind="institutional",
                side=side, size_nanos=int(abs(net[k])), end_ns=t,
                start_ns=int(f.ts[same[0]]) if len(same) else t,
                score=float(ratio[k]),
                evidence=dict(window_s=int(window), net_x_median=round(float(abs(net[k]) / med[k]), 2),
                              one_sided=round(float(abs(net[k]) / gross[k]), 3),
                              net_z=round(float(abs(net[k]) / scale[k]), 2),
                              baseline="earlier_days" if from_days[k] else "own_day",
                              passive_share=round(float(side * pas[k] / abs(net[k])), 3),
                              maker_fill_share=round(float(f.size[in_window][f.maker[in_window]].sum()
                                                           / max(gross[k], 1e-9)), 3)))


def bin_sums(f: DayFills) -> np.ndarray:
    """Per bin of the day up to its last fill's: signed, gross and passive volume, shape (3, bins)."""
    bins = f.bins
    return np.stack([np.bincount(bins, f.flow), np.bincount(bins, f.size), np.bincount(bins, f.passive)])


def detect(ev: dict[str, np.ndarray], at_touch: np.ndarray, params: dict[str, Any], venue: str, symbol: str,
           *, baselines: Baselines | None = None) -> Alerts:
    """Institutional pressure alerts of one instrument, day by day.

    Args:
        ev: the ``order_event`` columns ``ts_event_ns``, ``ts_recv_ns``, ``order_id``, ``action``,
            ``size_nanos`` and ``side_code`` (0 bid, 1 ask, -1 none), arrival order.
        at_touch: per event, at adds: the order joined or improved its side's touch.
        params: the detector's thresholds.
        baselines: the days before the input (the live stage's store); each day of the input is
            added to it once judged. None: the input's own earlier days only.
    """
    out = Alerts(venue, symbol, NAME, params)
    history = baselines if baselines is not None else Baselines()
    day_of = np.asarray(ev["ts_event_ns"]) // _DAY_NS
    for day in np.unique(day_of).tolist():
        rows = np.flatnonzero(day_of == day)  # arrival order kept
        f = day_fills({c: v[rows] for c, v in ev.items()}, at_touch[rows], params)
        if f is None:
            continue
        sums = bin_sums(f)
        w = day_windows(running_windows(params), sums, f.t0, params)
        judge(out, w, f, 0, sums.shape[1], params, history.base(day, params), {})
        totals = new_totals(params)
        add_totals(totals, w)
        history.add(day, params, *totals)
    return out


def day_fills(ev: dict[str, np.ndarray], at_touch: np.ndarray, params: dict[str, Any]) -> DayFills | None:
    """The fills of one day's events (arrival order), attributed and in time order; None: none."""
    ff = fill_flow(ev["ts_event_ns"], ev["order_id"], ev["action"], ev["side_code"], ev["size_nanos"],
                   at_touch, pair_ns=params["mm_pair_ns"], child_fill_ns=params["child_fill_ns"],
                   passive_weight=params["passive_weight"])
    fills = np.flatnonzero((ev["action"] == _FILL) & (ev["side_code"] >= 0) & (ev["order_id"] != 0))
    if len(fills) == 0:
        return None
    # arrival order may step back in venue time (a late packet): the windows need time order
    fills = fills[np.argsort(ev["ts_event_ns"][fills], kind="stable")]
    size = ev["size_nanos"][fills].astype(np.float64)
    ts = ev["ts_event_ns"][fills].astype(np.int64)
    return DayFills(ts=ts, recv=ev["ts_recv_ns"][fills].astype(np.int64), flow=ff["flow"][fills],
                    passive=ff["passive"][fills], maker=ff["maker"][fills], size=size,
                    median=block_quantiles(size, MEDIAN_FILLS, LOOKBACK_BLOCKS, (0.5,))[:, 0],
                    t0=int(ts[0]) // _BIN_NS)
