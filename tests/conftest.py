"""Shared fixtures: the real-data folder (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
