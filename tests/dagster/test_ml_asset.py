"""The ``ml`` group on two simulated instrument-days: ``training_examples`` rows equal the library run
over the raw file's own 1 s book (``snapshots_for_format``, the ``tapeflow book`` path), its metadata
carries the feature schema hash and the source partitions; ``model`` trains on the first day and
scores the second against the baselines, and says why it cannot train on the first. With the run
config ``models: [deeplob]``, ``model`` trains the raw-book model from the lake (book levels joined
from ``book_snapshots``) and the live scorer over the day's lake rows gives the stored model's batch
scores."""

from __future__ import annotations

import random
from dataclasses import replace

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.dagster.conftest import Deployment, materializations, register
from tests.ml.predictions import assert_same_predictions

S = 1_000_000_000
DAY_NS = 86_400 * S
ASSETS = ("order_events", "book_deltas", "trades", "book_snapshots", "training_examples", "model")


def _quick(seed: int):
    """Short training (the tests check the wiring, not the models): the retrain tests' settings, and
    a deeplob window of 8 rows (3 layers)."""
    from kernels.ml_train import TrainConfig
    from tapeflow.ml.walkforward import WalkForwardConfig

    return WalkForwardConfig(horizon_s=10, train_folds=3, block_ns=60 * S, seed=seed, book_window=8,
                             book_layers=3, train=TrainConfig(max_steps=200, eval_every=25, patience=3))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    import assets.ml
    from assets.partitions import partition_key
    from tapeflow.simulator import simulate
    from tests.dagster.conftest import definitions

    seed = random.randrange(10**6)
    print(f"simulator seed {seed}")
    root = tmp_path_factory.mktemp("ml")
    # a minute after midnight: the lake's grid of a day starts at midnight (the book carried over)
    start_ns = 1_704_153_660 * S  # 2024-01-02 00:01 UTC
    for d in range(2):
        summary = simulate(seed + d, 1, 5 * 60 * S, root / "landing", "equity", progress=False,
                           start_ns=start_ns + d * DAY_NS)
    dep = Deployment(root)
    instance = dg.DagsterInstance.ephemeral()
    days = register(instance, dep)
    assert len(days) == 2
    group = [a for a in definitions().assets if set(ASSETS) & {k.path[-1] for k in a.keys}]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(assets.ml, "MODEL_CONFIG", replace(_quick(seed), models=assets.ml.MODEL_CONFIG.models))
        results = [dg.materialize(group, partition_key=partition_key(date, venue, symbol),
                                  resources=dep.resources(), instance=instance, raise_on_error=False,
                                  selection=[dg.AssetKey(n) for n in ASSETS]) for venue, symbol, date in days]
    venue, symbol, date = days[1]
    return dep, summary, results, (venue, symbol, date), instance


def test_rows_equal_the_library_over_the_raw_file(built) -> None:
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.ml import training_examples
    from tapeflow.ml.rows import example_rows
    from tapeflow.schemas.ml import TRAINING_EXAMPLE
    from tapeflow.schemas.records import TRADE
    from tapeflow.storage import lake
    from tapeflow.wire.capture import merge

    dep, summary, results, (venue, symbol, date), _ = built
    assert all(r.success for r in results)
    chunks: list = []
    snaps, _ = snapshots_for_format("sim", list(summary.files), levels=10, interval_ns=S,
                                    on_chunk=chunks.append)
    trades = merge(chunks)[TRADE.name].sort_by("ts_recv_ns")
    expected = example_rows(training_examples(snaps, trades), venue, symbol)
    stored = lake.read(TRAINING_EXAMPLE, dep.lake, date=date).select(TRAINING_EXAMPLE.column_names)
    stored = stored.sort_by("ts_event_ns")
    # the lake's 1 s grid starts at midnight with the book carried over from the day before; the raw
    # file's starts at its first event. Past the longest trailing window (60 s) both see the same rows.
    first_ns = expected.column("ts_event_ns")[0].as_py()
    since = pc.greater(stored.column("ts_event_ns"), first_ns + 60 * S)
    stored = stored.filter(since)
    expected = expected.filter(pc.greater(expected.column("ts_event_ns"), first_ns + 60 * S))
    assert stored.num_rows == expected.num_rows > 200
    for name in TRAINING_EXAMPLE.column_names:
        got = stored.column(name).to_numpy(zero_copy_only=False)
        want = expected.column(name).to_numpy(zero_copy_only=False)
        if TRAINING_EXAMPLE[name].kind == "f64":
            # prefix sums over a longer history: the same window sums up to rounding
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_metadata_carries_lineage(built) -> None:
    from assets.partitions import partition_key
    from tapeflow.ml import ExampleParams, feature_schema_hash

    _, _, results, (venue, symbol, date), _ = built
    [meta] = materializations(results[1])["training_examples"].values()
    assert meta["feature_schema_hash"] == feature_schema_hash(ExampleParams())
    key = str(partition_key(date, venue, symbol))
    assert meta["source_partitions"] == [f"book_snapshots/{key}", f"trades/{key}"]
    assert meta["dagster/row_count"] > 200
    shares = meta["class_shares"]["10s"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)


def test_model_trains_on_the_day_before_and_scores_the_day(built) -> None:
    from tapeflow.ml.walkforward import BASELINES, MODELS

    _, _, results, _, _ = built
    [first] = materializations(results[0])["model"].values()
    assert first["status"].startswith("not trained") and first["train_days"] == []
    [second] = materializations(results[1])["model"].values()
    print({k: v for k, v in second.items() if k != "scores"})
    assert second["status"] == "trained" and second["train_days"] == ["2024-01-02"]
    assert set(second["scores"]) == {*MODELS, *BASELINES}
    assert second["best_baseline"] in BASELINES and second["best_model"] in MODELS
    best = second["scores"][second["best_model"]]
    assert second["margin_macro_f1"] == pytest.approx(
        best["macro_f1"] - second["scores"][second["best_baseline"]]["macro_f1"], abs=1e-3)
    assert sum(map(sum, best["confusion"])) == best["n"] > 100


def test_deeplob_trained_by_the_asset_scores_live_as_batch(built, monkeypatch: pytest.MonkeyPatch) -> None:
    """``model`` with ``models: [deeplob]`` trains from the lake; the set it stores (what ``champion``
    reads and registers) holds a deeplob that the live scorer, fed the day's lake rows, scores as
    batch scoring does. (The registry itself is left out: a new MLflow store costs ~12 s of CPU, and
    its deeplob round trip is ``tests/ml/test_live_scoring.py``'s.)"""
    import assets.ml
    from assets.partitions import partition_key
    from tapeflow.batch.targets import Target
    from tapeflow.ml import ExampleParams, feature_schema_hash
    from tapeflow.ml.artifact import ModelArtifact
    from tapeflow.ml.live import LivePredictor, score_table
    from tapeflow.schemas.records import BOOK_SNAPSHOT, TRADE
    from tapeflow.storage import lake
    from tests.dagster.conftest import definitions

    dep, _, _, (venue, symbol, date), instance = built
    seed = random.randrange(10**6)
    print(f"training seed {seed}")
    quick = _quick(seed)
    monkeypatch.setattr(assets.ml, "MODEL_CONFIG", quick)
    group = [a for a in definitions().assets if "model" in {k.path[-1] for k in a.keys}]
    result = dg.materialize(group, partition_key=partition_key(date, venue, symbol),
                            resources=dep.resources(), instance=instance,
                            run_config={"ops": {"model": {"config": {"models": ["deeplob"]}}}})
    assert result.success
    params = ExampleParams(book_levels=10)
    [model] = materializations(result)["model"].values()
    assert model["status"] == "trained" and model["models"] == ["deeplob"]
    assert model["feature_schema_hash"] == feature_schema_hash(params) and "deeplob" in model["scores"]

    # what ``champion`` reads for this day with the same kinds: the stored deeplob, saved and loaded
    t = Target(date=date, venue=venue, symbol=symbol)
    cfg = replace(quick, models=("deeplob",))
    stored = assets.ml.stored_candidates(dep.lake, t, assets.ml.train_days(dep.lake, t), cfg)
    assert stored is not None and list(stored.artifacts) == ["deeplob"]
    art = ModelArtifact.load(stored.artifacts["deeplob"].save(dep.root / "deeplob"))
    assert art.spec.kind == "deeplob" and art.params == params and art.book_scaler is not None
    examples = assets.ml._examples(dep.lake, venue, symbol, date, params)
    name = "asset-deeplob"
    batch = score_table(art, examples, name, 1, venue, symbol)
    # the stored calls on the day's usable rows are batch scoring's
    np.testing.assert_array_equal(batch.column("predicted").to_numpy()[stored.rows],
                                  stored.pred["deeplob"] - 1)

    class Stored:
        def current(self, venue: str, symbol: str):  # noqa: ANN202
            return name, 1, art

    # live: the day's lake rows in random micro-batches, each with the trades arrived by its last instant
    snaps = lake.read(BOOK_SNAPSHOT, dep.lake, venue, symbol, date).select(BOOK_SNAPSHOT.column_names)
    snaps = snaps.sort_by("ts_event_ns")
    trades = lake.read(TRADE, dep.lake, venue, symbol, date).select(TRADE.column_names).sort_by("ts_recv_ns")
    grid, recv = snaps.column("ts_event_ns").to_numpy(), trades.column("ts_recv_ns").to_numpy()
    rng = np.random.default_rng(seed)
    predictor = LivePredictor(Stored())
    out, lo, t_lo = [], 0, 0
    while lo < len(grid):
        hi = min(len(grid), lo + int(rng.integers(1, 40)))
        t_hi = int(np.searchsorted(recv, grid[hi - 1], side="right"))
        preds, bad = predictor.apply(venue, symbol, snaps.slice(lo, hi - lo), trades.slice(t_lo, t_hi - t_lo))
        assert bad.num_rows == 0
        out.append(preds)
        lo, t_lo = hi, t_hi
    live = pa.concat_tables(out).sort_by("ts_event_ns")
    assert live.num_rows == batch.num_rows == len(grid) > 200
    assert set(live.column("model_kind").to_pylist()) == {"deeplob"}
    assert np.std(live.column("p_up").to_numpy()) > 0  # the model reads its inputs
    assert_same_predictions(live, batch)


def test_model_kinds_config() -> None:
    import assets.ml
    from assets.resources import TapeflowResource
    from tapeflow.errors import ConfigError

    res = TapeflowResource(ml_flat_share=None)
    default = assets.ml._config(res, assets.ml.ModelKinds())
    assert default.models == assets.ml.MODEL_CONFIG.models == ("logreg", "mlp", "tcn")
    assert assets.ml.dataset_params(default) == assets.ml.PARAMS  # the default kinds read no book
    deep = assets.ml._config(res, assets.ml.ModelKinds(models=["logreg", "deeplob"]))
    assert deep.models == ("logreg", "deeplob") and assets.ml.dataset_params(deep).book_levels == 10
    for bad in (["xgboost"], [], ["logreg", "logreg"]):
        with pytest.raises(ConfigError, match="model kinds"):
            assets.ml._config(res, assets.ml.ModelKinds(models=bad))
