"""Stealth accumulation: price creep, volatility contraction, and the composite ``stealth`` score.

Creep and contraction read the book's mid and activity on a regular ``sample_ns`` grid taken from
the snapshot grid (``kernels.signals_stealth.range_windows`` for the windows, baselines with
``block_quantiles``: one-minute blocks, ``baseline_blocks`` back):

* **creep** (kind ``creep``, side the drift's): over ``window_ns`` the mid moved ``min_z`` times
  its own realized volatility (a trend, not a random walk's excursion), that volatility is at most
  ``max_vol_share`` of the usual one (the drift is slow and quiet), and aggressors pushed at most
  ``max_aggressor_share`` of the window's volume net in the drift's direction (the price is
  carried by passive buying, not by aggression: a momentum move or a parent order is the other way),
  with at least ``min_activity_share`` of the usual activity (a quiet period's few events can
  wander one way with a small realized volatility: the look-alike).
* **contraction** (kind ``contraction``, side 0): the realized volatility *per event*
  (``rv / sqrt(events)``) is below ``factor`` times its baseline ``quantile``, while the activity
  is at least ``min_activity_share`` of the usual: a quiet period, where the range shrinks only
  because fewer events arrive (each as volatile as usual), is the look-alike and fails both.
* **stealth** (kind ``stealth``): a composite over the other detectors' alerts on the instrument
  (absorption, creep, hidden executions, withdrawal, contraction). It has no planted truth of its
  own, so it is not scored (docs/signals.md says why).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from kernels.signals_stealth import range_windows
from kernels.signals_windows import block_quantiles, flow_windows
from tapeflow.schemas.core import concat
from tapeflow.schemas.records import ASK, BID, F_MAYBE_BAD_BOOK, SIGNAL
from tapeflow.signals import absorption
from tapeflow.signals.config import Thresholds
from tapeflow.signals.rows import Alerts, first_of_runs
from tapeflow.signals.runs import one_per_run
from tapeflow.signals.withdrawal import block_medians

CREEP = "creep/1"
CONTRACTION = "contraction/1"
STEALTH = "stealth/1"
COMPONENTS = ("absorption", "creep", "hidden", "withdrawal", "contraction")
_BLOCK_S = 60  # baseline block: one minute of samples
_MAX_SCORE = 100.0


def sample(book: dict[str, np.ndarray], events: np.ndarray, sample_ns: int, tick: int
           ) -> dict[str, np.ndarray]:
    """The book grid taken every ``sample_ns``: mid in ticks (carried over one-sided rows), events
    since the previous sample (from the snapshots' ``sequence``), and the grid rows taken."""
    ts = book["ts"]
    g = len(ts)
    step = max(1, int(np.median(np.diff(ts)))) if g > 1 else 1
    k = max(1, sample_ns // step)
    rows = np.arange(k - 1, g, k)
    bid, ask = book["bid_p"][:, 0], book["ask_p"][:, 0]
    two = (bid > 0) & (ask > 0)
    seen = np.flatnonzero(two)
    if not len(rows) or not len(seen):
        return {"rows": np.zeros(0, np.int64), "mid": np.zeros(0), "events": np.zeros(0)}
    last = seen[np.maximum(0, np.searchsorted(seen, rows, side="right") - 1)]
    mid = (bid[last] + ask[last]) / (2.0 * tick)
    seq = events[rows].astype(np.float64)
    counts = np.maximum(0.0, np.diff(np.r_[float(events[0]), seq]))
    return {"rows": rows, "mid": mid, "events": counts}


def _baseline(x: np.ndarray, blocks: int, qs: tuple[float, ...]) -> np.ndarray:
    if qs == (0.5,):  # the same bits without a JAX call (most of the live stage's creep cost)
        return block_medians(x, _BLOCK_S, blocks)[:, None]
    return block_quantiles(x, _BLOCK_S, blocks, qs)


def _flags(book: dict[str, np.ndarray], rows: np.ndarray, first: int, t: int) -> int:
    return F_MAYBE_BAD_BOOK if (book["flags"][rows[first]:rows[t] + 1] & F_MAYBE_BAD_BOOK).any() else 0


def creep_windows(book: dict[str, np.ndarray], events: np.ndarray, trades: dict[str, np.ndarray], tick: int,
                  params: dict[str, Any]) -> dict[str, Any] | None:
    """The creep statistics per sample of the book (None: too few samples for one window); ``ok``
    marks the samples where every condition holds, ``move`` gives their side by its sign."""
    s = sample(book, events, params["sample_ns"], tick)
    n = len(s["mid"])
    window = max(2, params["window_ns"] // params["sample_ns"])
    if n <= window:
        return None
    _, move, rv, act = range_windows(s["mid"], s["events"], window)
    step_vol = rv / np.sqrt(window)
    usual = _baseline(step_vol, params["baseline_blocks"], (0.5,))[:, 0]
    usual_act = _baseline(act, params["baseline_blocks"], (0.5,))[:, 0]
    signed, gross = _aggressor_flow(book["recv"][s["rows"]], trades)
    net, total, _ = flow_windows(signed, gross, window, 1, rms=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(rv > 0, move / rv, 0.0)
        pushed = np.where(total > 0, np.sign(move) * net / total, 0.0)
    known = np.where(np.isfinite(usual), usual, -np.inf)
    ok = ((np.abs(z) >= params["min_z"]) & (step_vol <= params["max_vol_share"] * known)
          & (pushed <= params["max_aggressor_share"]) & (np.arange(n) >= window)
          & (act >= params["min_activity_share"] * np.where(np.isfinite(usual_act), usual_act, np.inf)))
    return dict(rows=s["rows"], window=window, ok=ok, move=move, z=z, step_vol=step_vol, usual=usual,
                pushed=pushed, act=act, usual_act=usual_act, total=total)


def add_creep(out: Alerts, book: dict[str, np.ndarray], w: dict[str, Any], t: int, side: int,
              params: dict[str, Any]) -> None:
    """The creep alert of sample ``t`` of the windows ``w`` (:func:`creep_windows`)."""
    first, rows = t - w["window"], w["rows"]
    row = int(rows[t])
    out.add(ts_event_ns=int(book["ts"][row]), ts_recv_ns=int(book["recv"][row]), kind="creep",
            side=side, size_nanos=int(w["total"][t]), start_ns=int(book["ts"][rows[first]]),
            end_ns=int(book["ts"][row]), score=float(abs(w["z"][t]) / params["min_z"]),
            flags=_flags(book, rows, first, t),
            evidence=dict(move_ticks=round(float(w["move"][t]), 1), z=round(float(w["z"][t]), 2),
                          vol_share=_share(w["step_vol"][t], w["usual"][t]),
                          aggressor_share=round(float(w["pushed"][t]), 2),
                          activity_share=_share(w["act"][t], w["usual_act"][t]),
                          window_s=params["window_ns"] / 1e9))


def detect_creep(book: dict[str, np.ndarray], events: np.ndarray, trades: dict[str, np.ndarray], tick: int,
                 params: dict[str, Any], venue: str, symbol: str) -> Alerts:
    """Creep alerts of one instrument (``events``: the snapshots' ``sequence`` per grid row)."""
    out = Alerts(venue, symbol, CREEP, params)
    w = creep_windows(book, events, trades, tick, params)
    if w is None:
        return out
    for side in (1, -1):
        for t in one_per_run(w["ok"] & (np.sign(w["move"]) == side), book["ts"][w["rows"]],
                             params["refractory_ns"]):
            add_creep(out, book, w, int(t), side, params)
    return out


def contraction_windows(book: dict[str, np.ndarray], events: np.ndarray, tick: int, params: dict[str, Any]
                        ) -> dict[str, Any] | None:
    """The contraction statistics per sample of the book (None: too few samples for one window)."""
    s = sample(book, events, params["sample_ns"], tick)
    n = len(s["mid"])
    window = max(2, params["window_ns"] // params["sample_ns"])
    if n <= window:
        return None
    rng, _, rv, act = range_windows(s["mid"], s["events"], window)
    per_event = np.where(act > 0, rv / np.sqrt(np.maximum(act, 1.0)), np.nan)
    base = _baseline(per_event, params["baseline_blocks"], (params["quantile"],))[:, 0]
    usual_act = _baseline(act, params["baseline_blocks"], (0.5,))[:, 0]
    ok = ((per_event <= params["factor"] * np.where(np.isfinite(base), base, -np.inf))
          & (act >= params["min_activity_share"] * np.where(np.isfinite(usual_act), usual_act, np.inf))
          & (np.arange(n) >= window))
    return dict(rows=s["rows"], window=window, ok=ok, rng=rng, per_event=per_event, base=base, act=act,
                usual_act=usual_act)


def add_contraction(out: Alerts, book: dict[str, np.ndarray], w: dict[str, Any], t: int,
                    params: dict[str, Any]) -> None:
    """The contraction alert of sample ``t`` of the windows ``w`` (:func:`contraction_windows`)."""
    first, rows = t - w["window"], w["rows"]
    row = int(rows[t])
    out.add(ts_event_ns=int(book["ts"][row]), ts_recv_ns=int(book["recv"][row]), kind="contraction",
            side=0, size_nanos=0, start_ns=int(book["ts"][rows[first]]), end_ns=int(book["ts"][row]),
            # a still mid (per-event volatility 0) would score without bound: capped for readability
            score=float(min(_MAX_SCORE, params["factor"] * w["base"][t] / max(w["per_event"][t], 1e-12))),
            flags=_flags(book, rows, first, t),
            evidence=dict(range_ticks=round(float(w["rng"][t]), 1),
                          rv_per_event=round(float(w["per_event"][t]), 4),
                          baseline_quantile=round(float(w["base"][t]), 4),
                          activity_share=_share(w["act"][t], w["usual_act"][t]),
                          window_s=params["window_ns"] / 1e9))


def detect_contraction(book: dict[str, np.ndarray], events: np.ndarray, tick: int, params: dict[str, Any],
                       venue: str, symbol: str) -> Alerts:
    """Volatility-contraction alerts of one instrument (``events``: the snapshots' ``sequence``)."""
    out = Alerts(venue, symbol, CONTRACTION, params)
    w = contraction_windows(book, events, tick, params)
    if w is None:
        return out
    for t in one_per_run(w["ok"], book["ts"][w["rows"]], params["refractory_ns"]):
        add_contraction(out, book, w, int(t), params)
    return out


def _aggressor_flow(sample_recv_ns: np.ndarray, trades: dict[str, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, buy-minus-sell and total aggressor volume since the previous sample."""
    recv = trades["ts_recv_ns"]
    order = np.argsort(recv, kind="stable")
    size = trades["size_nanos"][order].astype(np.float64)
    side = trades["aggressor_side"][order]
    sign = np.where(side == BID, 1.0, np.where(side == ASK, -1.0, 0.0))
    at = np.searchsorted(recv[order], sample_recv_ns, side="right")
    c_net = np.r_[0.0, np.cumsum(sign * size)][at]
    c_all = np.r_[0.0, np.cumsum(size)][at]
    return np.diff(np.r_[0.0, c_net]), np.diff(np.r_[0.0, c_all])


def detect_composite(signals: pa.Table, params: dict[str, Any], venue: str, symbol: str) -> Alerts:
    """The ``stealth`` composite over one instrument's component alerts (``COMPONENTS``).

    An alert opens when at least ``min_components`` different component kinds alerted within the
    last ``window_ns``; its score is the number of kinds over ``min_components``, its side the sign
    of their summed signed confidences (0 where they cancel or none has a side); the evidence
    gives each kind's best confidence.
    """
    out = Alerts(venue, symbol, STEALTH, params)
    if not signals.num_rows:
        return out
    kinds = signals.column("kind").to_pylist()
    keep = [i for i, k in enumerate(kinds) if k in COMPONENTS]
    if not keep:
        return out
    ts = signals.column("ts_event_ns").to_numpy()[keep]
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    kind = np.asarray(kinds, dtype=object)[keep][order]
    side = signals.column("side").to_numpy()[keep][order]
    conf = signals.column("confidence").to_numpy()[keep][order]
    flags = signals.column("flags").to_numpy()[keep][order]
    recv = signals.column("ts_recv_ns").to_numpy()[keep][order]
    lo = np.searchsorted(ts, ts - params["window_ns"], side="left")
    distinct = np.array([len(set(kind[lo[i]:i + 1])) for i in range(len(ts))])
    cand = np.flatnonzero(distinct >= params["min_components"])
    for k in first_of_runs(ts[cand], params["refractory_ns"]):
        add_composite(out, dict(ts=ts, kind=kind, side=side, conf=conf, flags=flags, recv=recv),
                      int(lo[cand[k]]), int(cand[k]), params)
    return out


def add_composite(out: Alerts, rows: dict[str, np.ndarray], lo: int, t: int, params: dict[str, Any]) -> None:
    """The ``stealth`` alert at component alert ``t`` over the component alerts ``lo..t``
    (``rows``: their ``ts``, ``kind``, ``side``, ``conf``, ``flags``, ``recv``, in time order)."""
    ts, kind, side, conf = rows["ts"], rows["kind"], rows["side"], rows["conf"]
    part = slice(lo, t + 1)
    best: dict[str, float] = {}
    for kd, c in zip(kind[part], conf[part], strict=True):
        best[kd] = max(best.get(kd, 0.0), float(c))
    lean = float((side[part] * conf[part]).sum())
    out.add(ts_event_ns=int(ts[t]), ts_recv_ns=int(rows["recv"][part].max()), kind="stealth",
            side=int(np.sign(lean)), size_nanos=0, start_ns=int(ts[part][0]), end_ns=int(ts[t]),
            score=float(len(best) / params["min_components"]),
            flags=int(np.bitwise_or.reduce(rows["flags"][part])),
            evidence=dict(components={k: round(v, 3) for k, v in sorted(best.items())},
                          alerts=int(t + 1 - lo), lean=round(lean, 3)))


def detect_instrument(book: dict[str, np.ndarray], events: np.ndarray, trades: dict[str, np.ndarray],
                      tick: int, thresholds: Thresholds, symbol: str, preset: str | None, venue: str,
                      prior: list[pa.Table]) -> list[pa.Table]:
    """Absorption, creep, contraction and the ``stealth`` composite of one instrument.

    Args:
        book: the grid arrays (``tapeflow.signals.detect._grid_arrays``).
        events: the snapshots' ``sequence`` per grid row (events applied so far).
        trades: the instrument's trade columns.
        tick: the price increment.
        thresholds: the thresholds in force.
        prior: the instrument's alerts of the other detectors (their component kinds feed the
            composite).
    """
    def params(name: str) -> dict[str, Any]:
        return thresholds.for_instrument(name, symbol, preset)

    out = [absorption.detect(book, trades, tick, params("absorption"), venue, symbol).table(),
           detect_creep(book, events, trades, tick, params("creep"), venue, symbol).table(),
           detect_contraction(book, events, tick, params("contraction"), venue, symbol).table()]
    every = concat(SIGNAL, [*prior, *out])
    out.append(detect_composite(every, params("stealth"), venue, symbol).table())
    return out


def _share(x: float, usual: float) -> float | None:
    """``x`` over its usual level, or None where the usual level is zero (a market with no
    activity before the window: 0/0 would put NaN into the evidence JSON)."""
    return round(float(x / usual), 2) if usual > 0 else None
