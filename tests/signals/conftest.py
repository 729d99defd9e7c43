"""The simulated evaluation days the score tests share: each made once per pytest run
(tests/signals/evaluation.py ``shared_day``)."""

from __future__ import annotations

import pytest

from tests.signals.evaluation import EvaluationDay, S, shared_day


@pytest.fixture(scope="session")
def equity_day(tmp_path_factory: pytest.TempPathFactory) -> EvaluationDay:
    """Equity preset, 2 instruments x 2 h, 6 episodes of each kind per hour, disjoint (24 per kind)."""
    return shared_day(tmp_path_factory, "equity", 2, 2 * 3600 * S, episodes_per_hour=6)


@pytest.fixture(scope="session")
def equity_overlap_day(tmp_path_factory: pytest.TempPathFactory) -> EvaluationDay:
    """Equity preset, 2 instruments x 2 h, 6 episodes of each kind per hour, in overlap mode (24 per kind)."""
    return shared_day(tmp_path_factory, "equity", 2, 2 * 3600 * S, episodes_per_hour=6, overlap=True)
