"""The model a day's model-driven backtest follows (``tapeflow.ml.selection``), with the lake's side
(stored candidates, examples) as stand-ins: which model, read from where, and what is never read."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from tapeflow.backtest.model_driven import ModelConfig
from tapeflow.errors import TapeflowError
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.registry import Champion
from tapeflow.ml.selection import DayInputs, followed_model
from tapeflow.ml.walkforward import WalkForwardConfig

BASE = ExampleParams()
PROTOCOL = WalkForwardConfig(horizon_s=10, train_folds=3)
DEFAULT = ModelConfig(kind="logreg", horizon_s=10)


def _model(kind: str, params: ExampleParams = BASE) -> SimpleNamespace:
    return SimpleNamespace(spec=SimpleNamespace(kind=kind), params=params)


def _day(stored: object = None, days: tuple[str, ...] = ("d1", "d2")) -> tuple[DayInputs, list]:
    calls: list = []

    def read_stored() -> object:
        calls.append("stored")
        return stored

    def examples(date: str, params: ExampleParams) -> object:
        calls.append(("examples", date, params))
        raise AssertionError("no example is read in these cases")

    return DayInputs("d3", days, read_stored, examples, lambda d: f"p/{d}"), calls


def _stored(**artifacts: object) -> SimpleNamespace:
    return SimpleNamespace(train_days=("d1", "d2"), history=("d1", "d2"), artifacts=artifacts)


def test_a_clean_champion_is_followed_whatever_its_kind() -> None:
    deep = _model("deeplob", replace(BASE, book_levels=10))
    day, calls = _day(_stored(logreg="stored logreg"))
    got = followed_model(Champion(4, deep, "d2", True), day, default=DEFAULT, protocol=PROTOCOL, base=BASE)
    assert got.trained is deep and got.params == deep.params and got.candidates == "registry"
    assert got.label == "champion v4 (deeplob)" and got.model == DEFAULT and calls == []


def test_without_a_clean_champion_its_kind_comes_from_the_model_assets_set() -> None:
    day, calls = _day(_stored(logreg="stored logreg", tcn="stored tcn"))
    got = followed_model(None, day, default=DEFAULT, protocol=PROTOCOL, base=BASE)
    assert (got.trained, got.candidates, got.label) == ("stored logreg", "read (model asset)",
                                                         "logreg (no champion yet)")
    got = followed_model(Champion(2, _model("tcn"), "d3", False), day, default=DEFAULT, protocol=PROTOCOL,
                         base=BASE)
    assert got.trained == "stored tcn" and got.model.kind == "tcn" and got.params == BASE
    assert "v2 was trained or judged on d3, not before d3" in got.label
    assert calls == ["stored", "stored"]


def test_a_flat_kind_is_left_to_the_backtest_when_the_set_is_not_what_it_trains() -> None:
    short = SimpleNamespace(train_days=("d2",), history=("d1", "d2"), artifacts={"mlp": "stored mlp"})
    day, calls = _day(short)
    got = followed_model(Champion(1, _model("mlp"), "d3", False), day, default=DEFAULT, protocol=PROTOCOL,
                         base=BASE)
    assert got.trained is None and got.candidates == "trained here" and got.model.kind == "mlp"
    # another seed than the protocol's: the stored set is not even read
    day, calls = _day(_stored(logreg="stored logreg"))
    got = followed_model(None, day, default=replace(DEFAULT, seed=7), protocol=PROTOCOL, base=BASE)
    assert got.trained is None and calls == []


def test_a_kind_to_train_here_without_an_earlier_day_is_a_clear_error() -> None:
    day, _ = _day(None, days=())
    with pytest.raises(TapeflowError, match="no earlier day with 120 usable rows to train deeplob"):
        followed_model(Champion(3, _model("deeplob", replace(BASE, book_levels=10)), "d3", False), day,
                       default=DEFAULT, protocol=PROTOCOL, base=BASE)
