"""Models trained once per instrument-day (``tapeflow.ml.candidates``): what ``model``, ``champion`` and
``model_backtest`` read from the stored set equals what each of them trained itself before, on three
simulated days: the walk-forward's own fit loop (``score_day`` without candidates), the champion's
``train_artifact`` per kind with its held-out scores, and the backtest's ``walk_forward_predictions``.
A stored set is only read back for the inputs it was trained from."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
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


class _Registry:
    """The part of ``tapeflow.ml.registry.Registry`` that ``retrain`` calls, in memory (a new MLflow
    store costs ~12 s of CPU; the registry itself is tested in test_registry.py)."""

    def __init__(self, champion) -> None:
        self.arts, self.comparisons, self.champ = {1: champion}, {}, 1

    def champion(self, name):
        return self.champ, self.arts[self.champ]

    def champion_version(self, name):
        return self.champ

    def register(self, name, art, *, comparison, **_):
        version = len(self.arts) + 1
        self.arts[version], self.comparisons[version] = art, comparison
        return version

    def promote(self, name, version) -> None:
        self.champ = version


def test_a_deeplob_champion_is_scored_on_its_own_inputs_never_replaced_unseen(built) -> None:
    """Gap of s26: a ``deeplob`` champion against a challenger set without raw book inputs was
    promoted over unseen (``schema_changed``). Now its held-out rows are rebuilt with its own inputs
    and scored at the challenger's grid instants; without a way to rebuild them (or for a champion of
    another dataset) the challenger is registered and not promoted, with the reason in the metadata."""
    from dataclasses import replace

    from kernels.ml_models import ModelSpec
    from tapeflow.ml.artifact import ModelArtifact
    from tapeflow.ml.book_inputs import book_input_names
    from tapeflow.ml.dataset import Scaler, model_features
    from tapeflow.ml.examples import HASH_KEY, feature_schema_hash
    from tapeflow.ml.metrics import confusion, macro_f1
    from tapeflow.ml.retrain import champion_calls, retrain

    tables, names, cfg, loaded, _ = built
    book = replace(PARAMS, book_levels=10)
    cols = book_input_names(10)
    spec = ModelSpec("deeplob", len(cols), hidden=8, window=4, layers=2)
    seed = random.randrange(10**6)
    print(f"champion seed {seed}")
    n_flat = len(model_features(PARAMS))
    rng = np.random.default_rng(seed)
    today = tables[2]
    with_book = today
    for c in cols:  # the day's raw book inputs, as the lake's join would give them (values arbitrary)
        with_book = with_book.append_column(c, pa.array(rng.normal(size=today.num_rows) * 3))
    with_book = with_book.replace_schema_metadata({HASH_KEY: feature_schema_hash(book).encode()})
    test = segment(with_book, cfg.horizon_s, book, "d2")
    rows = np.flatnonzero(test.usable)
    assert np.array_equal(rows, loaded.rows)

    def champion_of(weights_rng: np.random.Generator) -> ModelArtifact:
        h = spec.hidden  # kernels.ml_models.init_params' shapes, drawn here (eager JAX init costs ~7 s)
        weights = {"embed": weights_rng.normal(size=(len(cols), h)) / 4, "embed_b": np.ones(h),
                   **{f"pair{i}": weights_rng.normal(size=(2 * h, h)) / 3 for i in range(spec.layers)},
                   **{f"pair{i}_b": np.ones(h) for i in range(spec.layers)},
                   "out": weights_rng.normal(size=(h, 3)), "out_b": np.zeros(3)}
        return ModelArtifact(spec, weights, Scaler(np.zeros(n_flat), np.ones(n_flat)), np.zeros(3), book,
                             cfg.horizon_s, tuple(model_features(book)), 0.4, None,
                             Scaler(np.zeros(len(cols)), np.ones(len(cols))))

    for _ in range(20):  # ~3% of random networks call one class only: their calls would read nothing
        champ = champion_of(rng)
        own = predict(champ, test, rows)[0]
        if len(np.unique(own)) > 1:
            break
    assert len(np.unique(own)) > 1  # its calls read the book inputs
    asked = []

    def rebuild(params):
        asked.append(params)
        return with_book

    def run(champion, rebuild_=None):
        reg = _Registry(champion)
        res = retrain(reg, "m", [], names, today, "d2", params=PARAMS, cfg=cfg, candidates=loaded,
                      rebuild=rebuild_)
        return reg, res

    # the champion scored on its own inputs, at the rows the challenger was scored on
    reg, res = run(champ, rebuild)
    assert asked == [book]
    cmp = res.comparison
    print(cmp.as_dict())
    assert cmp.reason in ("beats_champion", "within_margin", "not_significant") and cmp.n == len(rows)
    assert cmp.champion_f1 == pytest.approx(macro_f1(confusion(test.y[rows], own)), abs=1e-12)
    assert reg.champ == (2 if cmp.promote else 1)
    # nothing to rebuild them with: kept, saying why (today's code promoted it: schema_changed)
    reg, res = run(champ)
    meta = res.metadata()
    print(meta["why"])
    assert res.comparison.reason == "champion_unscored" and not res.comparison.promote
    assert meta["status"] == "kept" and reg.champ == 1 and 2 in reg.arts
    assert "raw book inputs" in meta["why"] and meta["comparison"]["detail"] == meta["why"]
    # a champion of another dataset (not only more book levels): the lake cannot rebuild it; a
    # rebuilt day missing an instant the challenger was scored on: not scored either
    other = replace(champ, params=replace(book, alpha=1e-4))
    calls, why = champion_calls(other, segment(today, cfg.horizon_s, PARAMS, "d2"), rows, PARAMS, rebuild)
    assert calls is None and "more than the raw book levels" in why and asked == [book]
    calls, why = champion_calls(champ, segment(today, cfg.horizon_s, PARAMS, "d2"), rows, PARAMS,
                                lambda p: with_book.slice(0, int(rows[-1])))
    assert calls is None and "miss 1 of" in why
