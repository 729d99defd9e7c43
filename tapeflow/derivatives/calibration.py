"""Calibration of the derived signals' confidences on simulated planted episodes (docs/derivatives.md,
"Derived signals: confidence").

No labelled derivative episodes exist, so the confidence of each kind is fitted where the truth is
known: a simulated instrument whose ordinary noise is heavy-tailed (it crosses the thresholds now and
then on its own) and into which episodes are planted (a basis dislocation, an open-interest surge, a
liquidation cascade, an insurance-fund drain). The detector itself (:func:`derived_signals`) runs on
the simulated rows; a signal is a hit when it falls inside a planted episode. ``confidence =
1 / (1 + exp(-(a ln score + b)))`` with ``(a, b)`` per kind fitted by logistic regression (Newton's
method) on the signals of the training seeds (:data:`TRAIN_SEEDS`); the shipped thresholds file holds
the result (``python -m tapeflow.derivatives.calibration`` prints it) and the tests check it on
held-out seeds. A confidence is therefore "the share of such signals that were planted episodes in
this simulator", as honest as the simulator is like a venue: the noise levels are stated below.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tapeflow.derivatives.derived import insurance_stress
from tapeflow.derivatives.derived_signals import STRESS, derived_signals
from tapeflow.schemas.derivatives import (
    DERIVATIVE_BASIS,
    INSURANCE_FUND,
    LIQUIDATION_CLUSTER,
    OPEN_INTEREST_CHANGE,
)
from tapeflow.schemas.records import ASK, BID
from tapeflow.signals.config import Thresholds

S = 1_000_000_000
TRAIN_SEEDS = range(0, 24)
KINDS = ("basis_extreme", "oi_surge", "liquidation_cluster", "insurance_stress")
KEYS = {"basis_extreme": "basis", "oi_surge": "oi", "liquidation_cluster": "cluster",
        "insurance_stress": "stress"}  # the thresholds keys ``<key>_platt_a`` / ``<key>_platt_b``
SECONDS = 7200  # two hours of 1 s basis and open-interest rows per seed
OI_WINDOW_S = 300
POLLS = 2880  # ten days of 5-minute insurance-fund balances per seed
VENUE, SYMBOL = "sim", "SIMUSDT"


@dataclass(frozen=True)
class Labelled:
    """One simulated signal: its kind, score and whether it fell in a planted episode."""

    kind: str
    score: float
    hit: bool


def _t_noise(rng: np.random.Generator, n: int, df: float = 3.0) -> np.ndarray:
    # unit-variance Student t: heavy tails, so the noise alone crosses thresholds now and then
    return rng.standard_t(df, n) / math.sqrt(df / (df - 2.0))


def _episodes(rng: np.random.Generator, n: int, count: float, lo: int, hi: int) -> list[tuple[int, int]]:
    out = []
    for _ in range(rng.poisson(count)):
        start = int(rng.integers(0, n - hi))
        out.append((start, start + int(rng.integers(lo, hi))))
    return out


def simulate(seed: int) -> tuple[dict[str, pa.Table], dict[str, list[tuple[int, int]]]]:
    """One seed's derived rows (``derivative_basis``, ``open_interest_change``, ``liquidation_cluster``
    and insurance-fund ``insurance_stress`` rows) and the planted episodes as ``(start_ns, end_ns)``
    windows in which a signal of the kind is a hit.

    Noise: the basis is AR(1) (phi 0.98) with t(3) innovations, stationary sd 12 bps; open interest a
    random walk with t(3) steps of 0.1 % a second (its 5-minute change: sd ~1.7 %); liquidation
    clusters 40 per two hours, notional log-normal (median 150k, log sd 1.2); a fund's balance drifts
    up 0.02 % per 5-minute poll with t(3) steps of 0.4 %. Episodes: 3 basis dislocations (20 to 120 s
    of 35 to 150 bps, either sign), 3 open-interest surges (3 to 15 % within 30 s, either sign),
    2 liquidation cascades (median 1.5M, log sd 0.8) and 2 fund drains (8 to 40 % over 6 to 24 polls)
    per seed, in expectation.
    """
    rng = np.random.default_rng(seed)
    n = SECONDS
    ts = np.arange(n, dtype=np.int64) * S
    labels: dict[str, list[tuple[int, int]]] = {k: [] for k in KINDS}

    phi, sd = 0.98, 12.0
    eps = _t_noise(rng, n) * sd * math.sqrt(1 - phi**2)
    basis = np.zeros(n)
    for i in range(1, n):
        basis[i] = phi * basis[i - 1] + eps[i]
    for start, end in _episodes(rng, n, 3, 20, 120):
        basis[start:end] += rng.choice([-1.0, 1.0]) * rng.uniform(35.0, 150.0)
        labels["basis_extreme"].append((start * S, (end + 5) * S))

    log_oi = np.cumsum(_t_noise(rng, n) * 0.001) + math.log(1e6)
    for start, end in _episodes(rng, n, 3, 10, 30):
        jump = rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.15)
        log_oi[start:end] += jump * np.linspace(0.0, 1.0, end - start)
        log_oi[end:] += jump
        labels["oi_surge"].append((start * S, (end + OI_WINDOW_S) * S))
    oi = np.exp(log_oi)
    change = np.full(n, np.nan)
    change[OI_WINDOW_S:] = (oi[OI_WINDOW_S:] - oi[:-OI_WINDOW_S]) / oi[:-OI_WINDOW_S] * 100.0

    notional = list(np.exp(rng.normal(math.log(150_000.0), 1.2, rng.poisson(40))))
    planted = list(np.exp(rng.normal(math.log(1_500_000.0), 0.8, rng.poisson(2))))
    ends = np.sort(rng.integers(0, n, len(notional) + len(planted)))
    order = rng.permutation(len(notional) + len(planted))
    values = notional + planted
    clusters = []
    for j, k in enumerate(order):
        clusters.append((int(ends[j]) * S, float(values[k]), k >= len(notional)))
        if k >= len(notional):
            labels["liquidation_cluster"].append((int(ends[j]) * S, int(ends[j]) * S))

    poll = 300 * S
    log_fund = np.cumsum(0.0002 + _t_noise(rng, POLLS) * 0.004) + math.log(1e8)
    for start, end in _episodes(rng, POLLS, 2, 6, 24):
        drain = math.log(1 - rng.uniform(0.08, 0.40))
        log_fund[start:end] += drain * np.linspace(0.0, 1.0, end - start)
        log_fund[end:] += drain
        labels["insurance_stress"].append((start * poll, (end + 12) * poll))
    fund_ts = np.arange(POLLS, dtype=np.int64) * poll

    tables = {
        DERIVATIVE_BASIS.name: DERIVATIVE_BASIS.table({
            "ts_event_ns": ts, "ts_recv_ns": ts, "venue": [VENUE] * n, "symbol": [SYMBOL] * n,
            "interval": ["1s"] * n, "mark_price_nanos": np.zeros(n, np.int64),
            "index_price_nanos": np.zeros(n, np.int64), "basis_bps": basis}),
        OPEN_INTEREST_CHANGE.name: OPEN_INTEREST_CHANGE.table({
            "ts_event_ns": ts, "ts_recv_ns": ts, "venue": [VENUE] * n, "symbol": [SYMBOL] * n,
            "interval": ["1s"] * n, "window_ns": np.full(n, OI_WINDOW_S * S, np.int64),
            "open_interest_nanos": (oi * 1e9).astype(np.int64), "change_nanos": np.zeros(n, np.int64),
            "change_pct": change}),
        LIQUIDATION_CLUSTER.name: LIQUIDATION_CLUSTER.table({
            "ts_event_ns": [c[0] for c in clusters], "ts_recv_ns": [c[0] for c in clusters],
            "venue": [VENUE] * len(clusters), "symbol": [SYMBOL] * len(clusters),
            "side": [BID if i % 2 else ASK for i in range(len(clusters))],
            "start_ns": [c[0] for c in clusters], "end_ns": [c[0] for c in clusters],
            "count": [3] * len(clusters), "notional": [c[1] for c in clusters]}),
        STRESS: insurance_stress(INSURANCE_FUND.table({
            "ts_event_ns": fund_ts, "ts_recv_ns": fund_ts, "venue": [VENUE] * POLLS,
            "symbol": [SYMBOL] * POLLS, "asset": ["USDT"] * POLLS,
            "balance_nanos": (np.exp(log_fund) * 1e9).astype(np.int64)})),
    }
    return tables, labels


def labelled(seeds: Iterable[int], thresholds: Thresholds) -> list[Labelled]:
    """The signals of the simulated seeds, each with whether it was a planted episode."""
    out = []
    for seed in seeds:
        tables, episodes = simulate(seed)
        signals, _ = derived_signals(tables, thresholds)
        for r in signals.to_pylist():
            ts = r["ts_event_ns"]
            hit = any(lo <= ts <= hi for lo, hi in episodes[r["kind"]])
            out.append(Labelled(r["kind"], r["score"], hit))
    return out


def fit(rows: list[Labelled], kind: str, iterations: int = 50) -> tuple[float, float]:
    """``(a, b)`` of ``P(hit) = 1 / (1 + exp(-(a ln score + b)))`` by maximum likelihood (Newton's
    method with a small ridge, so a kind whose scores cannot separate hits still gets finite values).

    Raises:
        ValueError: no signal of the kind.
    """
    mine = [r for r in rows if r.kind == kind]
    if not mine:
        raise ValueError(f"no {kind} signal to fit")
    x = np.array([math.log(r.score) for r in mine])
    y = np.array([1.0 if r.hit else 0.0 for r in mine])
    w = np.zeros(2)
    design = np.column_stack([x, np.ones_like(x)])
    ridge = 1e-3 * np.eye(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (y - p) - ridge @ w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hess, grad)
        w += step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def reliability(rows: list[Labelled], kind: str, a: float, b: float, bins: int = 5
                ) -> list[tuple[int, float, float]]:
    """Per bin of predicted confidence (about equal counts; equal confidences share a bin, so a
    kind with few distinct scores has fewer bins): ``(signals, mean confidence, share of hits)``."""
    conf = np.array([1.0 / (1.0 + math.exp(-(a * math.log(r.score) + b))) for r in rows if r.kind == kind])
    hits = np.array([r.hit for r in rows if r.kind == kind], dtype=float)
    order = np.argsort(conf, kind="stable")
    conf, hits = conf[order], hits[order]
    out, start = [], 0
    for k in range(1, bins + 1):
        end = round(k * conf.size / bins)
        while 0 < end < conf.size and conf[end] == conf[end - 1]:
            end += 1  # ties stay together
        if end > start:
            out.append((end - start, float(conf[start:end].mean()), float(hits[start:end].mean())))
            start = end
    return out


def main() -> None:  # pragma: no cover - prints the shipped values
    from tapeflow.signals.config import DEFAULT_PATH, load

    rows = labelled(TRAIN_SEEDS, load(DEFAULT_PATH))
    for kind in KINDS:
        a, b = fit(rows, kind)
        n = sum(r.kind == kind for r in rows)
        hits = sum(r.hit for r in rows if r.kind == kind)
        print(f"{KEYS[kind]}_platt_a = {a:.3f}\n{KEYS[kind]}_platt_b = {b:.3f}"
              f"  # {kind}: {n} signals, {hits} hits")


if __name__ == "__main__":  # pragma: no cover
    main()
