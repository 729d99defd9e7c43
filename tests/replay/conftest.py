"""Replay test fixtures: a small simulated market (1 simulated minute, one instrument)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.simulator import simulate


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(seed=11, instruments=1, duration_ns=60_000_000_000, out_dir=out, progress=False)
    return out / "sim"
