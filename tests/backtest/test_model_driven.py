"""The model-driven strategy: it holds the latest prediction stamped at or before now (never a
later one), by market orders, as worked by hand on a fixed book."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.model_driven import (
    PREDICTION_SCHEMA,
    ModelConfig,
    ModelFollower,
    walk_forward_predictions,
)
from tapeflow.backtest.models import ConstantLatency
from tapeflow.errors import ConfigError, TapeflowError
from tests.backtest.helpers import N, deltas


def _preds(rows):
    return pa.table({"ts_ns": [r[0] for r in rows], "pred": [r[1] for r in rows],
                     "p_down": [0.0] * len(rows), "p_flat": [0.0] * len(rows), "p_up": [0.0] * len(rows)},
                    schema=PREDICTION_SCHEMA)


def test_follows_the_latest_prediction_by_hand():
    # bid 100 / ask 101 all along; the strategy wakes every second from the first row (t = 0)
    book = deltas([(1, "B", 100.0, 5.0), (2, "A", 101.0, 5.0), (6 * N, "B", 100.0, 5.0)])
    preds = _preds([(N // 2, 1), (int(2.5 * N), -1), (int(4.5 * N), 0)])
    result = Backtest(build_feed({"book_delta": book}, ConstantLatency()), ModelFollower(preds, qty=1.0),
                      BacktestConfig()).run()
    fills = result.fills.to_pydict()
    # t=1 s: up -> buy 1 at 101; t=3 s: down -> sell 2 at 100; t=5 s: flat -> buy 1 at 101
    assert fills["ts_ns"] == [N, 3 * N, 5 * N]
    assert fills["side"] == [1, -1, 1] and fills["qty"] == [1.0, 2.0, 1.0]
    assert fills["price"] == [101.0, 100.0, 101.0]
    assert result.report()["final_equity"] == pytest.approx(-101 + 200 - 101)


def test_target_never_reads_a_later_prediction_and_goes_flat_when_stale():
    f = ModelFollower(_preds([(10, 1), (20, -1)]), qty=2.0, stale_ns=5)
    assert f.target(9) == 0.0          # nothing stamped yet
    assert f.target(10) == 2.0 and f.target(19) == 0.0   # 19 - 10 > stale 5
    assert f.target(20) == -2.0
    with pytest.raises(ConfigError, match="time order"):
        ModelFollower(_preds([(20, 1), (10, 1)]))


def test_predictions_need_an_earlier_day():
    with pytest.raises(TapeflowError, match="earlier day"):
        walk_forward_predictions([], pa.table({}), None, ModelConfig())
    with pytest.raises(ConfigError, match="logreg or mlp"):
        walk_forward_predictions([], pa.table({}), None, ModelConfig(kind="tcn"))
