"""Which model a day's walk-forward backtest of the model-driven strategy follows (what the
``model_backtest`` asset asks; it only wires the lake in).

* The registry's champion of the instrument, whatever its kind, when it saw nothing of the day or
  later (its training days and held-out day all before it: ``tapeflow.ml.registry.Champion.clean``).
* Otherwise (a backfill of a day the champion was trained or judged on or before: the walk-forward
  must not look ahead) a model of the champion's kind trained on the instrument's previous days: the
  ``model`` asset's stored candidates (``tapeflow.ml.candidates``) where they hold that kind and were
  trained as this backtest would train it, else trained here; for ``logreg`` and ``mlp`` "trained
  here" is left to :func:`tapeflow.backtest.model_driven.walk_forward_backtest` (its own fit, as it
  always did).
* No champion yet: the default kind (``logreg``), the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from tapeflow.backtest.model_driven import ModelConfig, trains_like
from tapeflow.errors import TapeflowError
from tapeflow.ml.artifact import ModelArtifact, train_artifact
from tapeflow.ml.candidates import Candidates, train_segments
from tapeflow.ml.evaluate import MIN_USABLE_ROWS
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.kinds import dataset_params
from tapeflow.ml.registry import Champion
from tapeflow.ml.walkforward import WalkForwardConfig

FIT_BY_BACKTEST = ("logreg", "mlp")  # kinds walk_forward_backtest trains itself


@dataclass(frozen=True)
class DayInputs:
    """One instrument-day as the backtest's model choice reads it (the asset binds them to its lake).

    ``days``: the instrument's earlier ``training_examples`` days it may train on, oldest first;
    ``stored()``: the ``model`` asset's candidates for the day (trained with the protocol's
    settings from ``days``), None when there are none for today's lake rows; ``examples(date,
    params)``: a day's examples; ``partition(date)``: a day's name in the lineage.
    """

    date: str
    days: Sequence[str]
    stored: Callable[[], Candidates | None]
    examples: Callable[[str, ExampleParams], pa.Table]
    partition: Callable[[str], str]


@dataclass(frozen=True)
class Followed:
    """The model the day's backtest follows.

    ``trained`` None: :func:`~tapeflow.backtest.model_driven.walk_forward_backtest` fits ``model``
    (a flat kind) on the earlier days itself, reading examples of ``params``. ``candidates`` says
    where the model came from (``registry``, ``read (model asset)``, ``trained here``), ``label``
    what it is, for the asset's metadata.
    """

    model: ModelConfig
    trained: ModelArtifact | None
    params: ExampleParams
    candidates: str
    label: str


def followed_model(champion: Champion | None, day: DayInputs, *, default: ModelConfig,
                   protocol: WalkForwardConfig, base: ExampleParams,
                   flat_share: float | None = None) -> Followed:
    """The model the backtest of ``day`` follows (module docstring).

    Args:
        champion: the instrument's champion as of the day (``tapeflow.ml.registry.champion_before``).
        day: the day and its lake.
        default: the backtest's model settings (kind ``logreg`` with no champion).
        protocol: the ``model`` asset's protocol (what its stored candidates were trained with).
        base: the lake's dataset (``training_example`` rows).
        flat_share: the label threshold's share (``TAPEFLOW_ML_FLAT_SHARE``) for a kind trained here.

    Raises:
        TapeflowError: a kind to train here and no earlier day with enough usable rows.
    """
    if champion is not None and champion.clean:
        art = champion.model
        return Followed(default, art, art.params, "registry",
                        f"champion v{champion.version} ({art.spec.kind})")
    kind = champion.model.spec.kind if champion is not None else default.kind
    model = replace(default, kind=kind)
    trained, params, how = _kind_before(day, model, protocol, base, flat_share)
    if champion is None:
        label = f"{kind} (no champion yet)"
    else:
        label = (f"{kind}, champion v{champion.version}'s kind, trained on the days before "
                 f"(v{champion.version} was trained or judged on {champion.last_day}, not before {day.date})")
    return Followed(model, trained, params, how, label)


def _kind_before(day: DayInputs, model: ModelConfig, protocol: WalkForwardConfig, base: ExampleParams,
                 flat_share: float | None) -> tuple[ModelArtifact | None, ExampleParams, str]:
    kind = model.kind
    if kind in FIT_BY_BACKTEST:
        # the model the ``model`` asset trained for this day when it is the one this backtest trains
        # (same settings, every earlier day used); else (e.g. an earlier day too short) trained there
        stored = day.stored() if trains_like(model, protocol) else None
        if stored and stored.train_days == stored.history:
            return stored.artifacts[kind], base, "read (model asset)"
        return None, base, "trained here"
    stored = day.stored() if kind in protocol.models else None
    if stored is not None:
        return stored.artifacts[kind], base, "read (model asset)"
    cfg = replace(protocol, models=(kind,), flat_share=flat_share)
    params = dataset_params(cfg.models, base)
    history = [day.examples(d, params) for d in day.days]
    segs = train_segments(history, [day.partition(d) for d in day.days], params, cfg)
    if not segs:
        raise TapeflowError(f"no earlier day with {MIN_USABLE_ROWS} usable rows to train {kind} on")
    start = day.examples(day.date, base).column("ts_event_ns")
    first = int(start[0].as_py()) if len(start) else None
    return train_artifact(segs, params, kind, cfg, test_start_ns=first), params, "trained here"
