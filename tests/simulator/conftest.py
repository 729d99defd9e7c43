"""Simulator runs shared by the simulator tests (each simulated once per session)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tapeflow.simulator import SimSummary, simulate

MINUTE_NS = 60 * 1_000_000_000


@pytest.fixture(scope="session")
def crypto_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Ten busy crypto minutes, no planted episodes (realism of the background market)."""
    return simulate(
        11,
        1,
        10 * MINUTE_NS,
        tmp_path_factory.mktemp("crypto"),
        "crypto",
        episodes_per_hour=0,
        progress=False,
    )


@pytest.fixture(scope="session")
def equity_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Two equity hours, no planted episodes."""
    return simulate(
        11,
        1,
        120 * MINUTE_NS,
        tmp_path_factory.mktemp("equity"),
        "equity",
        episodes_per_hour=0,
        progress=False,
    )


@pytest.fixture(scope="session")
def crypto_planted_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """The ten crypto minutes of ``crypto_run`` with every kind planted, overlapping (realism with plants)."""
    return simulate(
        11, 1, 10 * MINUTE_NS, tmp_path_factory.mktemp("crypto_planted"), "crypto", overlap=True,
        progress=False,
    )


@pytest.fixture(scope="session")
def equity_planted_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """The two equity hours of ``equity_run`` with every kind planted once, overlapping.

    One episode of each kind (and one look-alike) in two hours: at the default two per hour a
    4.5-event/s equity tape is mostly plants (eight 8-12 sigma spikes alone lift the 1 s kurtosis
    past 1,000), which no longer describes the background market the bands are about.
    """
    return simulate(
        11,
        1,
        120 * MINUTE_NS,
        tmp_path_factory.mktemp("equity_planted"),
        "equity",
        episodes_per_hour=0.5,
        overlap=True,
        progress=False,
    )


@pytest.fixture(scope="session")
def episode_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Two crypto instruments over 8 minutes crossing midnight, with planted episodes."""
    start = 1_704_153_600_000_000_000 - 4 * MINUTE_NS  # 2024-01-01T23:56Z: two files per symbol
    return simulate(
        5,
        2,
        8 * MINUTE_NS,
        tmp_path_factory.mktemp("episodes"),
        "crypto",
        start_ns=start,
        episodes_per_hour=3,
        progress=False,
    )


def files_of(summary: SimSummary, symbol: str) -> list[Path]:
    return [p for p in summary.files if p.parent.name == symbol]


def _random_seed(name: str) -> int:
    # drawn afresh on every run (never a development seed); printed so a failure can be replayed
    # with TAPEFLOW_EVAL_SEED
    seed = int(os.environ.get("TAPEFLOW_EVAL_SEED") or random.SystemRandom().randrange(1_000, 1_000_000))
    print(f"{name}: seed {seed}")
    return seed


@pytest.fixture(scope="session")
def plant_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Twenty crypto minutes, disjoint episodes of every kind, a seed drawn at random."""
    return simulate(
        _random_seed("plant_run"), 1, 20 * MINUTE_NS, tmp_path_factory.mktemp("plants"), "crypto",
        progress=False,
    )


@pytest.fixture(scope="session")
def overlap_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Twenty crypto minutes, overlapping episodes and busy periods, a seed drawn at random."""
    return simulate(
        _random_seed("overlap_run"),
        1,
        20 * MINUTE_NS,
        tmp_path_factory.mktemp("overlap"),
        "crypto",
        overlap=True,
        progress=False,
    )


@pytest.fixture(scope="session")
def equity_plant_run(tmp_path_factory: pytest.TempPathFactory) -> SimSummary:
    """Two equity hours with disjoint episodes (a thin tape: a parent's children stand out), random seed."""
    return simulate(
        _random_seed("equity_plant_run"),
        1,
        120 * MINUTE_NS,
        tmp_path_factory.mktemp("equity_plants"),
        "equity",
        progress=False,
    )
