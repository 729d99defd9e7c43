"""Simulator runs shared by the simulator tests: each simulated once per pytest run, by whichever
process (xdist worker) first asks, and read by the others (``once_per_run``)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tapeflow.simulator import SimSummary, simulate
from tests.signals.evaluation import once_per_run

MINUTE_NS = 60 * 1_000_000_000


def _once(factory: pytest.TempPathFactory, name: str, seed: int, instruments: int, minutes: float,
          preset: str, **kwargs) -> SimSummary:
    return once_per_run(factory, f"simulator-{name}", lambda folder: simulate(
        seed, instruments, int(minutes * MINUTE_NS), folder / "sim", preset, progress=False, **kwargs))


@pytest.fixture(scope="session")
def crypto_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Ten busy crypto minutes, no planted episodes (realism of the background market)."""
    return _once(tmp_path_factory, "crypto", 11, 1, 10, "crypto", episodes_per_hour=0)


@pytest.fixture(scope="session")
def equity_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Two equity hours, no planted episodes."""
    return _once(tmp_path_factory, "equity", 11, 1, 120, "equity", episodes_per_hour=0)


@pytest.fixture(scope="session")
def crypto_planted_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """The ten crypto minutes of ``crypto_run`` with every kind planted, overlapping (realism with plants)."""
    return _once(tmp_path_factory, "crypto_planted", 11, 1, 10, "crypto", overlap=True)


@pytest.fixture(scope="session")
def equity_planted_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """The two equity hours of ``equity_run`` with every kind planted once, overlapping.

    One episode of each kind (and one look-alike) in two hours: at the default two per hour a
    4.5-event/s equity tape is mostly plants (eight 8-12 sigma spikes alone lift the 1 s kurtosis
    past 1,000), which no longer describes the background market the bands are about.
    """
    return _once(tmp_path_factory, "equity_planted", 11, 1, 120, "equity", episodes_per_hour=0.5,
                 overlap=True)


@pytest.fixture(scope="session")
def episode_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Two crypto instruments over 8 minutes crossing midnight, with planted episodes."""
    start = 1_704_153_600_000_000_000 - 4 * MINUTE_NS  # 2024-01-01T23:56Z: two files per symbol
    return _once(tmp_path_factory, "episodes", 5, 2, 8, "crypto", start_ns=start, episodes_per_hour=3)


def files_of(summary: SimSummary, symbol: str) -> list[Path]:
    return [p for p in summary.files if p.parent.name == symbol]


def _random_run(factory: pytest.TempPathFactory, name: str, minutes: float, preset: str,
                **kwargs) -> SimSummary:
    # the seed is drawn afresh on every run (never a development seed), once for all the run's
    # workers; printed so a failure can be replayed with TAPEFLOW_EVAL_SEED
    seed = int(os.environ.get("TAPEFLOW_EVAL_SEED") or random.SystemRandom().randrange(1_000, 1_000_000))
    summary = _once(factory, name, seed, 1, minutes, preset, **kwargs)
    print(f"{name}: seed {summary.seed}")
    return summary


@pytest.fixture(scope="session")
def plant_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Twenty crypto minutes, disjoint episodes of every kind, a seed drawn at random."""
    return _random_run(tmp_path_factory, "plant_run", 20, "crypto")


@pytest.fixture(scope="session")
def overlap_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Twenty crypto minutes, overlapping episodes and busy periods, a seed drawn at random."""
    return _random_run(tmp_path_factory, "overlap_run", 20, "crypto", overlap=True)


@pytest.fixture(scope="session")
def equity_plant_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Two equity hours with disjoint episodes (a thin tape: a parent's children stand out), random seed."""
    return _random_run(tmp_path_factory, "equity_plant_run", 120, "equity")
