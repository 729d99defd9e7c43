"""Model artifacts, the MLflow registry and the promotion rule (challenger vs champion)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from kernels.ml_train import TrainConfig
from tapeflow.ml.artifact import ArtifactError, ModelArtifact, predict, train_artifact
from tapeflow.ml.dataset import Segment, model_features
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.promotion import compare, unscored, without_champion
from tapeflow.ml.walkforward import WalkForwardConfig

S = 10**9
DAY = 86_400 * S
PARAMS = ExampleParams()
NAMES = model_features(PARAMS)
QUICK = TrainConfig(max_steps=300, eval_every=25, patience=4)


def _days(seed: int, n_days: int, rows: int = 1200, planted: bool = True,
          first_day: int = 0) -> list[Segment]:
    """Days where the up/flat/down label is a noisy threshold of ``imbalance_l1`` (or shuffled)."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(first_day, first_day + n_days):
        x = rng.normal(size=(rows, len(NAMES)))
        signal = x[:, NAMES.index("imbalance_l1")] + 0.3 * rng.normal(size=rows)
        y = np.where(signal > 0.5, 2, np.where(signal < -0.5, 0, 1))
        if not planted:
            y = rng.permutation(y)
        ts = 1_700_000_000 * S - (1_700_000_000 * S) % DAY + d * DAY + np.arange(rows) * S
        past = np.concatenate([np.full(10, -1), y[:-10]])
        usable = np.arange(rows) >= 60
        out.append(Segment(f"day{d}", ts, x, y, rng.normal(size=rows) * 1e-4, past, usable))
    return out


def _cfg(seed: int) -> WalkForwardConfig:
    return WalkForwardConfig(horizon_s=10, seed=seed, train=QUICK, block_ns=600 * S)


def _held_out(art: ModelArtifact, day: Segment) -> np.ndarray:
    rows = np.flatnonzero(day.usable)
    return predict(art, day, rows)[0]


@pytest.fixture(scope="module")
def trained() -> dict:
    seed = random.randrange(10**6)
    print(f"evaluation seed {seed}")
    good = train_artifact(_days(seed, 2), PARAMS, "logreg", _cfg(seed))
    noise = train_artifact(_days(seed + 1, 2, planted=False), PARAMS, "logreg", _cfg(seed))
    held_out = _days(seed + 2, 1, first_day=2)[0]
    return {"good": good, "noise": noise, "day": held_out, "seed": seed}


def test_artifact_round_trips_and_scores_identically(trained, tmp_path) -> None:
    art, day = trained["good"], trained["day"]
    back = ModelArtifact.load(art.save(tmp_path / "m"))
    assert back.spec == art.spec and back.params == art.params and back.horizon_s == 10
    np.testing.assert_array_equal(back.offsets, art.offsets)
    cls, proba = predict(art, day)
    cls2, proba2 = predict(back, day)
    np.testing.assert_array_equal(cls, cls2)
    np.testing.assert_array_equal(proba, proba2)
    (tmp_path / "m" / "model.npz").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="no readable model"):
        ModelArtifact.load(tmp_path / "m")


def test_a_better_challenger_is_promoted(trained) -> None:
    day = trained["day"]
    rows = np.flatnonzero(day.usable)
    cmp = compare(day.y[rows], _held_out(trained["good"], day), _held_out(trained["noise"], day),
                  day.ts_ns[rows], margin=0.02, block_ns=120 * S, seed=trained["seed"])
    print(cmp.as_dict())
    assert cmp.promote and cmp.reason == "beats_champion"
    assert cmp.delta > 0.2 and cmp.delta_ci[0] > 0
    assert cmp.challenger_ci[0] > cmp.champion_ci[1]


def test_a_worse_or_equal_challenger_is_not_promoted(trained) -> None:
    day = trained["day"]
    rows = np.flatnonzero(day.usable)
    y, ts = day.y[rows], day.ts_ns[rows]
    good, noise = _held_out(trained["good"], day), _held_out(trained["noise"], day)
    worse = compare(y, noise, good, ts, margin=0.02, block_ns=120 * S)
    assert not worse.promote and worse.reason == "within_margin" and worse.delta < -0.2
    same = compare(y, good, good, ts, margin=0.02, block_ns=120 * S)
    assert not same.promote and same.delta == 0.0 and same.reason == "within_margin"


def test_margin_met_but_interval_reaching_zero_is_not_promoted() -> None:
    # two blocks: the challenger is right on one and wrong on the other; the champion the reverse,
    # so the point difference is positive while a resample of one block alone flips its sign
    y = np.array([0, 1, 2] * 20 + [0, 1, 2] * 20)
    ts = np.concatenate([np.zeros(60, np.int64), np.full(60, 10 * S)])
    challenger = np.concatenate([y[:60], np.roll(y[60:], 1)])
    champion = np.concatenate([np.roll(y[:60], 1), y[60:]])
    champion[60:70] = (champion[60:70] + 1) % 3  # the champion a little worse overall
    cmp = compare(y, challenger, champion, ts, margin=0.01, block_ns=5 * S)
    assert cmp.delta >= 0.01 and cmp.delta_ci[0] <= 0
    assert not cmp.promote and cmp.reason == "not_significant"


def test_without_a_champion_the_first_model_is_promoted() -> None:
    assert without_champion("no_champion").promote
    for reason in ("schema_changed", "beats_champion"):  # only the absence of a champion skips the rule
        with pytest.raises(ValueError):
            without_champion(reason)
    kept = unscored("its inputs could not be rebuilt")
    assert not kept.promote and kept.as_dict()["detail"] == "its inputs could not be rebuilt"
    assert "detail" not in without_champion("no_champion").as_dict()


def test_registry_versions_champion_and_lineage(trained, tmp_path) -> None:
    from tapeflow.ml.registry import Registry, RegistryError, model_name

    reg = Registry(tmp_path / "models")
    name = model_name("sim", "EQ/0", 10)
    assert name == "tapeflow.sim.EQ_0.10s"
    assert reg.champion(name) is None
    first = reg.register(name, trained["noise"], metrics={"macro_f1": 0.33},
                         training_partitions=["training_examples/2024-01-01|sim|EQ0"], held_out="2024-01-03",
                         comparison=without_champion("no_champion"), code="abc123")
    reg.promote(name, first)
    second = reg.register(name, trained["good"], metrics={"macro_f1": 0.8, "macro_f1_lo": float("nan")},
                          training_partitions=["a", "b"], held_out="2024-01-04", code="def456")
    assert (first, second) == (1, 2)
    assert reg.champion_version(name) == 1
    version, art = reg.champion(name)
    want = predict(trained["noise"], trained["day"])[1]
    np.testing.assert_array_equal(predict(art, trained["day"])[1], want)
    reg.promote(name, second)
    assert reg.champion_version(name) == 2
    infos = reg.versions(name)
    assert [v.version for v in infos] == [2, 1] and infos[0].champion and not infos[1].champion
    old = infos[1]
    assert old.tags["feature_schema_hash"] == trained["noise"].feature_schema_hash
    assert json.loads(old.tags["training_partitions"]) == ["training_examples/2024-01-01|sim|EQ0"]
    assert old.tags["code_version"] == "abc123" and old.tags["decision"] == "no_champion"
    assert old.metrics["macro_f1"] == pytest.approx(0.33) and "macro_f1_lo" not in infos[0].metrics
    assert reg.names() == [name]
    # a second client over the same store (another process: the live flow, the UI) sees it all
    assert Registry(tmp_path / "models").champion_version(name) == 2
    with pytest.raises(RegistryError, match="no version 9"):
        reg.load(name, 9)


def test_registry_cli_lists_versions_and_the_champion(trained, tmp_path, capsys) -> None:
    from tapeflow.cli import main
    from tapeflow.ml.registry import Registry, default_root, model_name

    assert main(["ml", "registry", "--lake", str(tmp_path)]) == 2  # no registry yet: a clear error
    assert "no model registry" in capsys.readouterr().err
    reg = Registry(default_root(tmp_path))
    name = model_name("sim", "EQ0", 10)
    for art in (trained["noise"], trained["good"]):
        reg.register(name, art, metrics={"macro_f1": art.val_macro_f1}, training_partitions=["p1", "p2"],
                     held_out="2024-01-03", code="abc1234")
    reg.promote(name, 2)
    assert main(["ml", "registry", "--lake", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    print("\n".join(out))
    assert out[0] == name
    assert out[1].startswith(" * v2") and out[2].startswith("   v1")
    assert "trained on 2 partition(s)" in out[1] and "code abc1234" in out[1]


def test_the_demo_models_act_prints_the_table_and_registers_a_champion(tmp_path, monkeypatch, capsys) -> None:
    import tapeflow.ml.demo as demo
    from tapeflow.ml.registry import Registry, default_root

    monkeypatch.setattr(demo, "DAYS", 3)
    monkeypatch.setattr(demo, "MINUTES", 4)
    demo.models_step(tmp_path)
    out = capsys.readouterr().out
    print(out)
    for name in ("logreg", "mlp", "majority", "last_move", "ofi_linear"):
        assert f"\n   {name} " in out
    assert "the best baseline" in out and "2 test days" in out
    reg = Registry(default_root(tmp_path / "lake"))
    (name,) = reg.names()
    assert reg.champion_version(name) == 1 and name in out


def test_label_alpha_round_trips_and_sets_the_past_label_input(trained, tmp_path) -> None:
    from dataclasses import replace

    art, day = replace(trained["good"], label_alpha=5e-5), trained["day"]
    back = ModelArtifact.load(art.save(tmp_path / "m"))
    assert back.label_alpha == 5e-5
    assert ModelArtifact.load(trained["good"].save(tmp_path / "n")).label_alpha is None
    relabelled = day.relabel(5e-5, 10)
    assert not np.array_equal(relabelled.x[:, -1], day.x[:, -1])  # the threshold moves past labels
    np.testing.assert_array_equal(predict(back, day)[1], predict(trained["good"], relabelled)[1])


def test_a_flat_champion_reads_a_book_input_challengers_rows(trained) -> None:
    """A flat model trained without raw book inputs scores rows built with them (it reads the same
    columns), so the promotion rule compares it with a ``deeplob`` challenger trained by the Dagster
    assets instead of replacing it unseen (``schema_changed``); a ``deeplob`` or a model of another
    dataset cannot."""
    from dataclasses import replace

    from tapeflow.ml.artifact import reads

    art, day = trained["good"], trained["day"]
    book = replace(PARAMS, book_levels=10)
    assert reads(art, PARAMS) and reads(art, book)
    assert not reads(art, replace(book, alpha=1e-4))
    deep = replace(art, spec=art.spec._replace(kind="deeplob"))
    assert not reads(deep, book) and not reads(replace(deep, params=book), PARAMS)
    assert reads(replace(deep, params=book), book)
    with_book = replace(day, book=np.random.default_rng(0).normal(size=(len(day.ts_ns), 41)))
    np.testing.assert_array_equal(predict(art, with_book)[1], predict(art, day)[1])
