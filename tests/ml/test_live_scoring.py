"""Live scoring in the market flow: the registry's champion over the 1 s grid, ``prediction`` rows equal
to batch scoring of the same capture, and a model promoted mid-stream is picked up without a restart."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks, build_market_flow, prediction_stage
from flows.operators import gather
from flows.sources import CaptureSource
from kernels.ml_train import TrainConfig
from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.ml import training_examples
from tapeflow.ml.dataset import segment
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.live import LivePredictor, RegistryChampion, score_table
from tapeflow.ml.registry import Registry, model_name
from tapeflow.ml.walkforward import WalkForwardConfig
from tapeflow.schemas.ml import PREDICTION
from tapeflow.schemas.records import TRADE
from tapeflow.wire.capture import merge
from tests.ml.predictions import assert_same_predictions

S = 1_000_000_000
QUICK = TrainConfig(max_steps=150, eval_every=25, patience=3)
PARAMS = ExampleParams(book_levels=10)  # raw book inputs too, for the deeplob model (v3)


def _examples(files: list[Path]) -> tuple[str, str, pa.Table]:
    chunks: list = []
    snaps, _ = snapshots_for_format("sim", files, levels=10, interval_ns=S, on_chunk=chunks.append)
    trades = merge(chunks)[TRADE.name].sort_by("ts_recv_ns")
    venue, symbol = snaps.column("venue")[0].as_py(), snaps.column("symbol")[0].as_py()
    return venue, symbol, training_examples(snaps, trades, PARAMS)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tapeflow.ml.artifact import train_artifact
    from tapeflow.simulator import simulate

    seed = random.randrange(10**6)
    print(f"simulator seed {seed}")
    root = tmp_path_factory.mktemp("live_ml")
    summary = simulate(seed, 1, 3 * 60 * S, root / "sim", "equity", progress=False)
    files = sorted(summary.files)
    venue, symbol, examples = _examples(files)
    params = PARAMS
    day = segment(examples, 10, params, "day")
    cfg = WalkForwardConfig(horizon_s=10, seed=seed, train=QUICK, window=8, book_window=8, book_layers=3)
    flat = train_artifact([day], params, "logreg", cfg)
    tcn = train_artifact([day], params, "tcn", cfg)
    deeplob = train_artifact([day], params, "deeplob", cfg)
    reg = Registry(root / "models")
    name = model_name(venue, symbol, 10)
    v1 = reg.register(name, flat, metrics={}, training_partitions=["day"], held_out="none", code="test")
    v2 = reg.register(name, tcn, metrics={}, training_partitions=["day"], held_out="none", code="test")
    v3 = reg.register(name, deeplob, metrics={}, training_partitions=["day"], held_out="none", code="test")
    reg.promote(name, v1)
    return {"files": files, "venue": venue, "symbol": symbol, "examples": examples, "reg": reg, "name": name,
            "models": {v1: flat, v2: tcn, v3: deeplob}, "root": root / "models"}


class PromotesMidStream(RegistryChampion):
    """The registry's champion, with version 2 promoted (as another process would) at the n-th look."""

    def __init__(self, root: Path, at: int) -> None:
        super().__init__(root, 10, min_interval_s=0.0)
        self.at, self.looks = at, 0

    def current(self, venue: str, symbol: str):  # noqa: ANN201
        self.looks += 1
        if self.looks == self.at:
            Registry(self.root).promote(model_name(venue, symbol, 10), 2)
        return super().current(venue, symbol)


def _live(market: dict, champion: RegistryChampion, batch_events: int) -> dict[str, pa.Table]:
    tables: list = []
    source = CaptureSource("sim", market["files"], batch_events=batch_events, heartbeat_ns=S)
    run_main(build_market_flow(source, MarketSinks(tables=TestingSink(tables)), intervals=(),
                               new_predictor=lambda: LivePredictor(champion)))
    return gather(tables)


def _batch(market: dict, version: int) -> pa.Table:
    return score_table(market["models"][version], market["examples"], market["name"], version,
                       market["venue"], market["symbol"])


def test_live_predictions_equal_batch_scoring_and_a_promotion_is_picked_up(market: dict) -> None:
    champion = PromotesMidStream(market["root"], at=12)
    out = _live(market, champion, batch_events=200)
    live = out[PREDICTION.name].sort_by("ts_event_ns")
    versions = live.column("model_version").to_numpy()
    # every grid instant of the capture is scored exactly once
    assert live.num_rows == market["examples"].num_rows
    assert len(np.unique(live.column("ts_event_ns").to_numpy())) == live.num_rows
    assert versions[0] == 1 and versions[-1] == 2 and (np.diff(versions) >= 0).all()
    switch = int(np.argmax(versions == 2))
    assert 30 < switch < live.num_rows - 30
    assert set(live.column("model_kind").to_pylist()) == {"logreg", "tcn"}
    for v in (1, 2):
        assert_same_predictions(live.filter(pc.equal(live.column("model_version"), v)), _batch(market, v))
    assert "rejected" not in out


def test_micro_batch_size_does_not_change_the_predictions(market: dict) -> None:
    """Micro-batches of 37 events, with the raw-book model (v3, read back from the registry) the
    champion: live rows equal batch scoring (TCN and logreg parity: the test above)."""
    market["reg"].promote(market["name"], 3)
    small = _live(market, RegistryChampion(market["root"], 10, min_interval_s=0.0), 37)[PREDICTION.name]
    assert set(small.column("model_kind").to_pylist()) == {"deeplob"}
    assert_same_predictions(small.sort_by("ts_event_ns"), _batch(market, 3))


def test_no_champion_no_predictions_and_a_bad_grid_is_a_dead_letter(market: dict, tmp_path: Path) -> None:
    out = _live(market, RegistryChampion(tmp_path / "empty", 10), 500)
    assert PREDICTION.name not in out
    # a model of a 2 s grid cannot score 1 s snapshots: a dead letter per batch, never a traceback
    from dataclasses import replace

    art = market["models"][1]
    odd = replace(art, params=replace(art.params, step_ns=2 * S))

    class Fixed:
        def current(self, venue: str, symbol: str):  # noqa: ANN202
            return "m", 1, odd

    predictor = LivePredictor(Fixed())
    snaps, _ = snapshots_for_format("sim", market["files"], levels=10, interval_ns=S)
    preds, bad = predictor.apply(market["venue"], market["symbol"], snaps.slice(1, 5), None)
    assert preds.num_rows == 0 and bad.column("reason").to_pylist() == ["prediction_failed"]
    assert "grid" in bad.column("detail")[0].as_py()


def test_prediction_stage_reads_the_registry(market: dict) -> None:
    market["reg"].promote(market["name"], 1)
    predictor = prediction_stage(market["root"], min_interval_s=0.0)()
    snaps, _ = snapshots_for_format("sim", market["files"], levels=10, interval_ns=S)
    preds, bad = predictor.apply(market["venue"], market["symbol"], snaps.slice(0, 90), None)
    assert bad.num_rows == 0 and preds.num_rows == 90
    assert set(preds.column("model_version").to_pylist()) == {1}


def test_tapeflow_live_predict_writes_prediction_rows_to_the_lake(market: dict, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.market import flow_from_env
    from tapeflow.storage import lake

    market["reg"].promote(market["name"], 1)
    root = tmp_path / "lake"
    root.mkdir()
    (root / "_models").symlink_to(market["root"])  # the registry lives under the lake it scores for
    monkeypatch.chdir(tmp_path)
    env = {"TAPEFLOW_LIVE_CAPTURE": ":".join(map(str, market["files"])), "TAPEFLOW_LIVE_FORMAT": "sim",
           "TAPEFLOW_LIVE_OUTPUTS": "lake", "TAPEFLOW_LAKE": str(root), "TAPEFLOW_LIVE_BARS": "1m",
           "TAPEFLOW_LIVE_PREDICT": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run_main(flow_from_env())
    stored = lake.read(PREDICTION, root).sort_by("ts_event_ns")
    assert_same_predictions(stored.select(PREDICTION.column_names), _batch(market, 1))
    assert stored.num_rows == market["examples"].num_rows
