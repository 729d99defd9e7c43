"""Simulator runs shared by the simulator tests (each simulated once per session)."""

from __future__ import annotations

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
