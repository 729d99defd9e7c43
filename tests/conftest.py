"""Shared fixtures: the real-data folder (skipped with a reason when absent), a chdb warehouse."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _absl_keeps_off_the_capture() -> None:
    """absl's logging handler (imported through optax and JAX) keeps the sys.stderr of its import,
    which under pytest is the session's capture file, and closes that stream when it is shut down
    while sys.stderr is another object: a test under ``capfd`` whose code runs
    ``logging.config.dictConfig`` (Dagster, MLflow) closed the worker's capture, and every later
    test on that worker errored with 'I/O operation on closed file'. Its stream is the real stderr."""
    import sys

    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


_absl_keeps_off_the_capture()

REPO = Path(__file__).resolve().parents[1]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Drop compiled kernels a kernel source change left stale (numba checks only a function's own file)."""
    if not hasattr(session.config, "workerinput"):  # once, in the controlling process
        from tapeflow.warm import drop_stale

        drop_stale()


def real_data_root() -> Path:
    return Path(os.environ.get("TAPEFLOW_REAL_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The shared real-data folder; tests using it skip, saying why, when it is absent."""
    root = real_data_root()
    if not (root / "README.md").is_file():
        pytest.skip(f"real data not found at {root} (set TAPEFLOW_REAL_DATA)")
    return root


def need(path: Path) -> Path:
    """Skip the calling test, saying why, when a real-data file is missing."""
    if not path.exists():
        pytest.skip(f"real-data file missing: {path}")
    return path


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A chdb directory for the module (chdb opens one data directory per process at a time)."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def wh(dsn: str) -> Iterator[Any]:
    """The module's warehouse with every record table dropped."""
    from tapeflow.schemas import ALL_RECORDS
    from tapeflow.storage.warehouse import Warehouse

    with Warehouse(dsn) as warehouse:
        for name in ALL_RECORDS:
            warehouse.client.command(f"DROP TABLE IF EXISTS {name}")
        yield warehouse
