"""Retrain one instrument's model and let the promotion rule decide: what the ``champion`` asset runs.

:func:`retrain` takes a challenger of each kind trained on the days before the held-out day (the
candidates the ``model`` asset stored, ``tapeflow.ml.candidates``, or trained here when there are
none), keeps the kind with the best validation macro-F1, scores it and the current champion on the
held-out day (``tapeflow.ml.promotion.compare``), registers the challenger with its lineage and
promotes it when the rule says so. The champion is scored on the same held-out rows with its own
inputs: where it reads raw book levels the challenger's rows lack (a ``deeplob`` champion, a flat
challenger set), they are rebuilt from the lake for it (:func:`champion_calls`); where they cannot be,
the challenger is registered and not promoted (``champion_unscored``, with the reason).
:func:`drift_check` is the sensor's question: has the recent day
drifted from the champion's training days?
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.errors import TapeflowError
from tapeflow.ml.artifact import ModelArtifact, predict, reads
from tapeflow.ml.book_inputs import book_input_names
from tapeflow.ml.candidates import Candidates, train_candidates, train_segments
from tapeflow.ml.dataset import Segment, segment
from tapeflow.ml.drift import drift_check as drift_check  # the sensor's question, kept importable here
from tapeflow.ml.evaluate import MIN_USABLE_ROWS
from tapeflow.ml.examples import ExampleParams
from tapeflow.ml.metrics import score
from tapeflow.ml.promotion import DEFAULT_MARGIN, Comparison, compare, unscored, without_champion
from tapeflow.ml.registry import Registry
from tapeflow.ml.walkforward import WalkForwardConfig


@dataclass
class RetrainResult:
    """What one retraining did; ``skipped`` says why nothing was trained (then the rest is empty)."""

    name: str
    skipped: str = ""
    version: int | None = None
    champion_before: int | None = None
    champion_after: int | None = None
    kind: str = ""
    comparison: Comparison | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    val_macro_f1: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready, for the asset's metadata."""
        if self.skipped:
            return {"model_name": self.name, "status": "skipped", "why": self.skipped}
        assert self.comparison is not None
        why = {"why": self.comparison.detail} if self.comparison.detail else {}
        return {**why, "model_name": self.name, "status": "promoted" if self.comparison.promote else "kept",
                "challenger_version": self.version, "champion_before": self.champion_before,
                "champion_after": self.champion_after, "challenger_kind": self.kind,
                "comparison": self.comparison.as_dict(), "held_out": self.metrics,
                "val_macro_f1_by_kind": self.val_macro_f1}


def retrain(registry: Registry, name: str, history: Sequence[pa.Table], history_names: Sequence[str],
            held_out: pa.Table, held_out_name: str, *, params: ExampleParams, cfg: WalkForwardConfig,
            margin: float = DEFAULT_MARGIN, tags: dict[str, str] | None = None,
            candidates: Candidates | None = None,
            rebuild: Callable[[ExampleParams], pa.Table] | None = None) -> RetrainResult:
    """Train a challenger on ``history``, compare it with the champion on ``held_out``, register it
    and promote it if it wins.

    Args:
        registry: where versions and the champion alias live.
        name: the registered model (``tapeflow.ml.registry.model_name``).
        history: ``training_examples`` tables of the days before, oldest first.
        history_names: their lake partitions (the lineage recorded with the version).
        held_out: the day both models are scored on.
        held_out_name: its partition.
        params: the dataset definition the tables were built with.
        cfg: horizon, kinds to train, seed, training settings, bootstrap block.
        margin: the macro-F1 difference a challenger must reach.
        tags: extra registry tags (the instrument).
        candidates: the kinds already trained on ``history`` and scored on ``held_out``
            (``tapeflow.ml.candidates``, what the ``model`` asset stored); None trains them here.
        rebuild: the held-out day's examples built with other parameters (the lake's rows with raw
            book levels joined, ``tapeflow.ml.rows.lake_examples``), for a champion that reads inputs
            ``held_out`` lacks; None: such a champion is not scored and the challenger not promoted.

    Raises:
        TapeflowError: ``candidates`` were trained on other days or scored other rows.
    """
    test = segment(held_out, cfg.horizon_s, params, held_out_name)
    rows = np.flatnonzero(test.usable)
    if candidates is None:
        days = [s.name for s in train_segments(history, history_names, params, cfg)]
    else:
        days = list(candidates.train_days)
    if not days:
        return RetrainResult(name, skipped=f"no earlier day with {MIN_USABLE_ROWS} usable rows")
    if len(rows) < MIN_USABLE_ROWS:
        return RetrainResult(name, skipped=f"held-out day has {len(rows)} usable rows < {MIN_USABLE_ROWS}")
    if candidates is None:
        candidates = train_candidates(history, history_names, held_out, params, cfg, today_name=held_out_name)
        assert candidates is not None  # days is not empty
    elif list(candidates.history) != list(history_names) or not np.array_equal(candidates.rows, rows):
        raise TapeflowError(f"{name}: the candidates were trained on {list(candidates.history)} and scored "
                            f"{len(candidates.rows)} rows, not {list(history_names)} and {len(rows)}")
    trained = candidates.artifacts
    kind = max(trained, key=lambda k: trained[k].val_macro_f1)
    challenger = trained[kind]
    # both models are scored on the challenger's labels (its training rows chose their alpha under
    # cfg.flat_share); each reads its own inputs (``predict`` relabels ``past_label`` at its alpha)
    examples_test = test
    if challenger.label_alpha is not None:
        test = test.relabel(challenger.label_alpha, cfg.horizon_s)
    y, ts = test.y[rows], test.ts_ns[rows]
    pred, proba = candidates.pred[kind], candidates.proba[kind]
    held = score(y, proba, ts, block_ns=cfg.block_ns, seed=cfg.seed, pred=pred)
    metrics = {"macro_f1": held.macro_f1, "macro_f1_lo": held.macro_f1_ci[0],
               "macro_f1_hi": held.macro_f1_ci[1],
               "accuracy": held.accuracy, "log_loss": held.log_loss, "mcc": held.mcc,
               "val_macro_f1": challenger.val_macro_f1, "held_out_rows": float(held.n)}
    if challenger.label_alpha is not None:
        metrics["label_alpha"] = challenger.label_alpha
    before = registry.champion(name)
    if before is None:
        cmp = without_champion("no_champion", margin, held.macro_f1)
    else:
        champ_pred, why = champion_calls(before[1], examples_test, rows, params, rebuild)
        if champ_pred is None:
            cmp = unscored(f"champion v{before[0]}: {why}", margin, held.macro_f1)
        else:
            cmp = compare(y, pred, champ_pred, ts, margin=margin, block_ns=cfg.block_ns, seed=cfg.seed)
    if cmp.delta == cmp.delta:
        metrics["delta_vs_champion"] = cmp.delta
    version = registry.register(
        name, challenger, metrics=metrics, training_partitions=days, held_out=held_out_name,
        comparison=cmp, tags=tags,
        params={"train.seed": cfg.seed, "train.models": ",".join(cfg.models), "margin": margin,
                **({"label.flat_share": cfg.flat_share} if cfg.flat_share is not None else {}),
                **{f"train.{k}": v for k, v in cfg.train._asdict().items() if k != "seed"}})
    if cmp.promote:
        registry.promote(name, version)
    return RetrainResult(name, "", version, before[0] if before else None, registry.champion_version(name),
                         kind,
                         cmp, {k: v if k == "label_alpha" else round(v, 4) for k, v in metrics.items()},
                         {k: round(a.val_macro_f1, 4) for k, a in trained.items()})


def champion_calls(champion: ModelArtifact, test: Segment, rows: np.ndarray, params: ExampleParams,
                   rebuild: Callable[[ExampleParams], pa.Table] | None) -> tuple[np.ndarray | None, str]:
    """The champion's classes on ``rows`` of the held-out ``test`` segment (built with ``params``),
    each from the champion's own inputs: ``(classes int64[len(rows)], "")``, or ``(None, why)``.

    A champion that reads ``test``'s columns (``tapeflow.ml.artifact.reads``) scores them; one whose
    dataset differs only in its raw book levels (a ``deeplob`` champion against a flat challenger set)
    scores ``rebuild(champion.params)``, the same day rebuilt with them, at the same grid instants.
    Any other difference, no ``rebuild``, a rebuild that fails or misses one of the instants: None.
    """
    if reads(champion, params):
        return predict(champion, test, rows)[0], ""
    if replace(champion.params, book_levels=0) != replace(params, book_levels=0):
        return None, (f"its dataset (schema {champion.feature_schema_hash[:12]}) differs from the held-out "
                      "examples' in more than the raw book levels: it cannot be rebuilt from the lake")
    if rebuild is None:
        return None, (f"it reads {len(book_input_names(champion.params.book_levels))} raw book inputs the "
                      "held-out examples lack and nothing was given to rebuild them")
    try:
        own = segment(rebuild(champion.params), champion.horizon_s, champion.params, test.name)
    except TapeflowError as exc:
        return None, f"its inputs could not be rebuilt on the held-out day ({exc})"
    at = np.searchsorted(own.ts_ns, test.ts_ns[rows])
    ok = (at < len(own.ts_ns)) & (own.ts_ns[np.minimum(at, len(own.ts_ns) - 1)] == test.ts_ns[rows])
    if not ok.all():
        return None, (f"its rebuilt held-out examples miss {int((~ok).sum())} of the {len(rows)} "
                      "grid instants the challenger was scored on")
    return predict(champion, own, at)[0], ""


def training_partitions(registry: Registry, name: str, version: int) -> list[str]:
    """The partitions a version was trained on (its ``training_partitions`` tag)."""
    mv = registry.client.get_model_version(name, str(version))
    return list(json.loads(mv.tags.get("training_partitions", "[]")))
