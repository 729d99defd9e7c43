"""Inputs shared by the derived tests: the Binance USD-M capture and a small simulated market."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.simulator import simulate
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need

MINUTE_NS = 60 * 1_000_000_000
MIDNIGHT_NS = 1_704_153_600_000_000_000  # 2024-01-02T00:00Z


@pytest.fixture(scope="session")
def binance_path(real_data: Path) -> Path:
    return need(real_data / "binance" / "usdm_btcusdt_20240808.gz")


@pytest.fixture(scope="session")
def binance_tables(binance_path: Path) -> dict[str, pa.Table]:
    """Every record of the 6-minute Binance USD-M BTCUSDT capture (decoded once per session)."""
    return merge(list(get_format("binance").decode([binance_path])))


@pytest.fixture(scope="session")
def sim_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pa.Table]:
    """Two simulated crypto instruments over 2 minutes across a UTC midnight (sim format, decoded)."""
    out = tmp_path_factory.mktemp("sim")
    run = simulate(3, 2, 2 * MINUTE_NS, out, "crypto", start_ns=MIDNIGHT_NS - MINUTE_NS,
                   episodes_per_hour=0, progress=False)
    return merge(list(get_format("sim").decode(run.files)))


def same_rows(a: pa.Table, b: pa.Table) -> None:
    """Row-by-row equality of two tables of one schema, NaN equal to NaN."""
    assert a.schema == b.schema
    assert a.num_rows == b.num_rows
    for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True):
        for k, v in x.items():
            w = y[k]
            assert (isinstance(v, float) and math.isnan(v) and math.isnan(w)) or v == w, (k, x, y)
