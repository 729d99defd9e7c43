"""Models trained once per instrument-day (``tapeflow.ml.candidates``): what ``model``, ``champion`` and
``model_backtest`` read from the stored set equals what each of them trained itself before, on three
simulated days: the walk-forward's own fit loop (``score_day`` without candidates), the champion's
``train_artifact`` per kind with its held-out scores, and the backtest's ``walk_forward_predictions``.
A stored set is only read back for the inputs it was trained from."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from kernels.ml_train import TrainConfig
from tapeflow.backtest.model_driven import (
    ModelConfig,
    artifact_predictions,
    trains_like,
    walk_forward_predictions,
)
from tapeflow.ml.artifact import predict, train_artifact
from tapeflow.ml.candidates import load_candidates, train_candidates, train_segments
from tapeflow.ml.dataset import segment
from tapeflow.ml.evaluate import examples_for_file, score_day
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.report import to_json
from tapeflow.ml.walkforward import WalkForwardConfig

S = 1_000_000_000
DAY_NS = 86_400 * S
PARAMS = ExampleParams()
QUICK = TrainConfig(max_steps=150, eval_every=25, patience=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    from tapeflow.simulator import simulate

    seed = random.randrange(10**6)
    print(f"simulator seed {seed}")
    root = tmp_path_factory.mktemp("cands")
    tables = []
    for d in range(3):
        summary = simulate(seed + d, 1, 6 * 60 * S, root / f"d{d}", "equity", progress=False,
                           start_ns=1_704_153_660 * S + d * DAY_NS)
        [(_, table)] = examples_for_file("sim", summary.files[0], PARAMS)
        tables.append(table)
    cfg = WalkForwardConfig(horizon_s=10, train_folds=3, block_ns=60 * S, seed=seed % 1000, train=QUICK)
    names = ["d0", "d1"]
    cands = train_candidates(tables[:2], names, tables[2], PARAMS, cfg, today_name="d2", key="k1")
    assert cands is not None
    folder = cands.save(root / "stored")
    loaded = load_candidates(folder, "k1")
    assert loaded is not None
    return tables, names, cfg, loaded, folder


def test_stored_set_is_read_back_only_for_its_inputs(built) -> None:
    _, names, cfg, loaded, folder = built
    assert load_candidates(folder, "another key") is None
    assert load_candidates(folder.with_name("missing"), "k1") is None
    assert list(loaded.artifacts) == list(cfg.models) and loaded.history == loaded.train_days == tuple(names)


def test_model_scores_equal_the_walk_forward_own_training(built) -> None:
    tables, _, cfg, loaded, _ = built
    old = score_day(tables[:2], tables[2], PARAMS, cfg, "x")  # fits every kind in its own fold loop
    new = score_day(tables[:2], tables[2], PARAMS, cfg, "x", trained=loaded.predictions())
    assert old is not None and new is not None
    assert json.dumps(to_json(new), sort_keys=True) == json.dumps(to_json(old), sort_keys=True)
    assert old.scores["logreg"].n == len(loaded.rows) > 100


def test_champion_candidates_equal_its_own_training(built) -> None:
    tables, names, cfg, loaded, _ = built
    days = train_segments(tables[:2], names, PARAMS, cfg)
    test = segment(tables[2], cfg.horizon_s, PARAMS, "d2")
    rows = np.flatnonzero(test.usable)
    assert np.array_equal(loaded.rows, rows)
    for kind in cfg.models:
        want = train_artifact(days, PARAMS, kind, cfg)  # what the champion asset trained per kind
        got = loaded.artifacts[kind]
        assert got.spec == want.spec and got.val_macro_f1 == want.val_macro_f1, kind
        assert np.array_equal(got.offsets, want.offsets), kind
        assert np.array_equal(got.scaler.mean, want.scaler.mean)
        assert np.array_equal(got.scaler.std, want.scaler.std)
        for k in want.weights:
            assert np.array_equal(got.weights[k], want.weights[k]), (kind, k)
        pred, proba = predict(want, test, rows)
        assert np.array_equal(loaded.pred[kind], pred) and np.array_equal(loaded.proba[kind], proba), kind


def test_backtest_calls_equal_its_own_training(built) -> None:
    tables, _, cfg, loaded, _ = built
    model = ModelConfig(kind="logreg", horizon_s=cfg.horizon_s, seed=cfg.seed, train=cfg.train)
    assert trains_like(model, cfg)
    assert not trains_like(ModelConfig(kind="logreg", horizon_s=cfg.horizon_s, train=cfg.train), cfg)  # seed
    old = walk_forward_predictions(tables[:2], tables[2], PARAMS, model)  # the backtest's own fit
    new = artifact_predictions(loaded.artifacts["logreg"], tables[2])
    assert new.schema == old.schema and new.num_rows == old.num_rows > 200
    for name in old.column_names:
        np.testing.assert_array_equal(new.column(name).to_numpy(), old.column(name).to_numpy(), err_msg=name)
    assert (old.column("pred").to_numpy() != 0).any()
