"""Shared by the score tests: an evaluation seed drawn at random (never a tuning seed), and a
simulated market run through ``tapeflow signals detect`` (the command a user runs).

Score tests that simulate the same market (preset, instruments, span, episode rate, overlap) read one
simulated evaluation day per pytest run (:func:`shared_day`): it is simulated and detected once, by
whichever process (xdist worker) first needs it, under a file lock in the run's base temp folder,
from one fresh seed the tests all print. Each test still scores every episode of its kinds on that
day (the same counts as a day of its own); only its seed is no longer independent of its
neighbours'. A detector's first call on a new day's array shapes compiles its JAX kernels again
(~20 CPU s), so each extra day cost the suite a compile on top of the simulation and the detection.
"""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import betabinom, binom

from tapeflow.cli import main
from tapeflow.signals.score import ScoreReport
from tapeflow.simulator import SimSummary, simulate

S = 1_000_000_000
TUNING_SEEDS = frozenset({101, 102, 201, 202,  # the development seeds (docs/signals.md)
                          1401, 1402, 1403, 1404})  # cross-strike (options simulator) development
# the random seeds the confidence constants were fitted on (docs/signals.md "Calibration seeds")
CALIBRATION_SEEDS = frozenset({857653, 887314, 257015, 578318, 877974, 632603, 739484, 149841, 131935,
                               316063, 299622, 259578,
                               89378, 487091, 704011, 47314, 651173, 101319, 102445, 360174, 530647,
                               388872, 273580, 642114,
                               1411, 1412, 1413, 1414, 1415, 1416, 1417, 1418})  # cross-strike
T = TypeVar("T")
# a bound fails by chance in at most one run in a thousand when the truth sits exactly at the claim
ALPHA = 1e-3


def evaluation_seed() -> int:
    """A fresh seed per run, never one the thresholds were tuned or calibrated on.

    ``TAPEFLOW_EVAL_SEED`` replays the seed a failed run printed.
    """
    if os.environ.get("TAPEFLOW_EVAL_SEED"):
        return int(os.environ["TAPEFLOW_EVAL_SEED"])
    while True:
        seed = int(np.random.SeedSequence().entropy % 900_000) + 1000
        if seed not in TUNING_SEEDS | CALIBRATION_SEEDS:
            return seed


def assert_rate(what: str, hits: int, n: int, claim: float) -> None:
    """``hits`` of ``n`` (a recall or a precision on one seed) is consistent with a true rate of at
    least ``claim``: fails when P(X <= hits) < ALPHA for X ~ Binomial(n, claim).

    One seed holds 8-24 episodes, so one miss moves a rate by 0.04-0.125: a fixed floor below the
    worst seed seen so far is beaten by the next unlucky draw; this bound states the claim (docs/signals.md)
    and lets only the sampling noise of one seed through.
    """
    assert n > 0, f"{what}: nothing to rate (0 episodes or alerts)"
    p = float(binom.cdf(hits, n, claim))
    assert p >= ALPHA, (f"{what}: {hits} of {n} ({hits / n:.3f}) is below the claimed {claim} "
                        f"(P = {p:.2g} < {ALPHA})")


def assert_calibrated(report: ScoreReport, ece_goal: float, *, rho: float = 0.0) -> None:
    """Confidence is calibrated: the ECE meets ``ece_goal``, or the hits among the alerts are within
    sampling noise of what the confidences predict (the exact two-sided tail probability of the
    hits is at least ALPHA: ``report.calibration_p`` where each alert is an independent trial at
    its bin's mean confidence; with ``rho`` > 0, each bin's hits are beta-binomial with that
    intra-seed correlation, measured where a kind's hits vary from seed to seed beyond binomial).

    The test was |z| <= 3.29 (two-sided 0.001 for a normal), an approximation: near a confidence of 1 the
    misses are Poisson-like and it failed far more often than ALPHA (4 misses of 24 alerts at 0.963
    are 3.37 sigma, yet P = 0.022 two-sided; a cross-strike seed of 20 measured had 4 of 26)."""
    p = report.calibration_p if rho == 0 else _beta_binomial_tail(report, rho)
    assert report.ece <= ece_goal or p >= ALPHA, (
        f"ECE {report.ece:.3f} > {ece_goal} and the hits are {report.calibration_z:.2f} sigma from the "
        f"confidences (exact two-sided P = {p:.2g} < {ALPHA}, rho {rho})")


def _beta_binomial_tail(report: ScoreReport, rho: float) -> float:
    """``calibration_p`` with each bin's hits ~ BetaBinomial(count, mean confidence, rho)."""
    dist = np.ones(1)
    hits = 0
    for b in report.bins:
        if b.count:
            q = min(max(b.mean_confidence, 1e-9), 1 - 1e-9)
            ab = (1 - rho) / rho
            dist = np.convolve(dist, betabinom.pmf(np.arange(b.count + 1), b.count, q * ab, (1 - q) * ab))
            hits += round(b.count * b.hit_rate)
    return min(1.0, 2 * min(float(dist[: hits + 1].sum()), float(dist[hits:].sum())))


def simulate_and_detect(out: Path, seed: int, preset: str, instruments: int, duration_ns: int, *,
                        episodes_per_hour: int, overlap: bool = False) -> tuple[SimSummary, pa.Table]:
    """Simulate, then ``tapeflow signals detect --format sim`` over the files: (summary, signal rows)."""
    summary = simulate(seed, instruments, duration_ns, out, preset, progress=False,
                       episodes_per_hour=episodes_per_hour, overlap=overlap)
    code = main(["signals", "detect", "--format", "sim", *map(str, summary.files), "--out", str(out / "sig")])
    assert code == 0
    return summary, pq.read_table(out / "sig" / "signals.parquet")


def level_view_signals(summary: SimSummary) -> pa.Table:
    """``detect_tables`` on a simulated market's level view alone: the book rebuilt on the thresholds'
    grid and the trades, no instrument marked as having order ids (the route a price-level venue's
    input takes, so the L2 variants report): the signal rows."""
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.schemas.records import TRADE
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.detect import detect_tables, grid_and_levels
    from tapeflow.wire.capture import merge

    thresholds = load(DEFAULT_PATH)
    grid_ns, levels = grid_and_levels(thresholds)
    chunks: list = []
    snapshots, _ = snapshots_for_format("sim", list(summary.files), levels=levels, interval_ns=grid_ns,
                                        on_chunk=chunks.append)
    trades = merge(chunks)[TRADE.name].select(
        ["ts_event_ns", "ts_recv_ns", "venue", "symbol", "price_nanos", "size_nanos", "aggressor_side"])
    return detect_tables(trades, snapshots, thresholds)


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (every xdist worker of the run waits on it)."""
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class EvaluationDay:
    """One simulated evaluation day shared by the tests of a pytest run (see :func:`shared_day`)."""

    summary: SimSummary
    folder: Path

    @property
    def seed(self) -> int:
        return self.summary.seed

    def signals(self) -> pa.Table:
        """``tapeflow signals detect --format sim`` over the day's files (run once per pytest run)."""
        out = self.folder / "sig"
        with _exclusive(self.folder / "detect.lock"):
            if not (self.folder / "detect.done").exists():
                code = main(["signals", "detect", "--format", "sim", *map(str, self.summary.files),
                             "--out", str(out)])
                assert code == 0
                (self.folder / "detect.done").touch()
        return pq.read_table(out / "signals.parquet")

    def level_view(self) -> pa.Table:
        """:func:`level_view_signals` on the day (run once per pytest run)."""
        path = self.folder / "level_view.parquet"
        with _exclusive(self.folder / "level_view.lock"):
            if not path.exists():
                partial = path.with_suffix(".partial")
                pq.write_table(level_view_signals(self.summary), partial)
                partial.replace(path)
        return pq.read_table(path)


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], T]) -> T:
    """``make(folder)``'s result, made once per pytest run: the first process (xdist worker) to ask
    makes it under a file lock in the run's base temp folder (the parent of each worker's own) and
    pickles it there; the others wait on the lock and read it. ``folder`` is where ``make`` writes
    files, ``name`` tells one result from another."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "once-per-run" / name
    folder.mkdir(parents=True, exist_ok=True)
    made = folder / "result.pickle"
    with _exclusive(folder / "make.lock"):
        if not made.exists():
            partial = made.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(make(folder)))
            partial.replace(made)
        return pickle.loads(made.read_bytes())


def shared_day(tmp_path_factory: pytest.TempPathFactory, preset: str, instruments: int, duration_ns: int,
               *, episodes_per_hour: int, overlap: bool = False) -> EvaluationDay:
    """The run's one simulated day with these arguments, from a fresh :func:`evaluation_seed`
    (:func:`once_per_run`). Its detections (:meth:`EvaluationDay.signals`,
    :meth:`EvaluationDay.level_view`) are made once alike, each under its own lock, so two workers
    may run the two at once.
    """
    name = f"{preset}-{instruments}x{duration_ns // S}s-{episodes_per_hour}ph{'-overlap' if overlap else ''}"
    summary = once_per_run(tmp_path_factory, name, lambda folder: simulate(
        evaluation_seed(), instruments, duration_ns, folder / "sim", preset, progress=False,
        episodes_per_hour=episodes_per_hour, overlap=overlap))
    return EvaluationDay(summary, summary.out_dir.parent)
