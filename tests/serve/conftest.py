"""A small lake for the read API tests: ``tapeflow simulate`` -> ``tapeflow live --capture --signals``
(bars, snapshots, metrics, signals, trades), plus feed-status and alert-ledger rows written through
the lake writer (a capture replay has no connection to lose and raises no alert by itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.schemas.records import STATUS
from tapeflow.serve.app import build_app
from tapeflow.serve.settings import ServeSettings
from tests.serve.server import serving

REPO = Path(__file__).resolve().parents[2]
SYMBOL = "SIM-BTCUSDT"
ALERT_ID = "a-test-0001"
T0 = 1_704_067_200_000_000_000  # the simulator's 2024-01-01 start


def run_cli(*args: str, timeout: float = 240) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def status_rows() -> pa.Table:
    rows = [
        (-1, T0 - 5_000_000, "connected", "connected to ws://127.0.0.1:1"),
        (T0 + 2_000_000_000, T0 + 2_000_100_000, "degraded", "processing lag 1500 ms > 1000 ms"),
        (T0 + 3_000_000_000, T0 + 3_000_100_000, "recovered", "processing lag 20 ms"),
    ]
    return pa.table(
        {
            "ts_event_ns": [r[0] for r in rows],
            "ts_recv_ns": [r[1] for r in rows],
            "venue": ["sim"] * 3,
            "symbol": [SYMBOL] * 3,
            "state": [r[2] for r in rows],
            "sequence": [-1] * 3,
            "until_ns": [-1] * 3,
            "detail": [r[3] for r in rows],
        },
        schema=STATUS.arrow_schema(),
    )


def alert_rows() -> pa.Table:
    n = 2
    return pa.table(
        {
            "ts_event_ns": [T0 + 4_000_000_000, T0 + 4_500_000_000],
            "ts_recv_ns": [T0 + 3_900_000_000] * n,
            "venue": ["sim"] * n,
            "symbol": [SYMBOL] * n,
            "alert_id": [ALERT_ID] * n,
            "rule": ["whales"] * n,
            "severity": ["warning"] * n,
            "channel": ["ops"] * n,
            "idempotency_key": ["k1"] * n,
            "attempt": [1, 2],
            "outcome": ["retry", "delivered"],
            "reason": ["http_5xx", ""],
            "status_code": [500, 200],
            "latency_ns": [100_000_000, 600_000_000],
        },
        schema=ALERT_DELIVERY.arrow_schema(),
    )


@pytest.fixture(scope="session")
def api_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lake (about 30 s to build on a busy 2-core machine)."""
    from tapeflow.storage.writer import Writer

    root = tmp_path_factory.mktemp("serve")
    run_cli("simulate", "--seed", "11", "--instruments", "1", "--duration", "10s", "--out", str(root / "sim"))
    files = sorted(str(p) for p in (root / "sim" / "sim").glob("*/*.events.csv.gz"))
    run_cli(
        "live",
        "--capture",
        *files,
        "--format",
        "sim",
        "--lake",
        str(root / "lake"),
        "--no-clickhouse",
        "--signals",
        "--bars",
        "1s,1m",
    )
    writer = Writer(root / "lake")
    writer.replace(STATUS, status_rows())
    writer.replace(ALERT_DELIVERY, alert_rows())
    writer.close()
    return root / "lake"


@pytest.fixture
def served(api_lake: Path, tmp_path: Path) -> Iterator[str]:
    """The read API over ``api_lake`` on a free loopback port (acknowledgements in a fresh file)."""
    with serving(build_app(ServeSettings(lake=api_lake, acks=tmp_path / "acks.jsonl"))) as base:
        yield base
