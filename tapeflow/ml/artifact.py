"""A deployable model: what it takes to score ``training_examples`` rows, saved as two files.

A ``ModelArtifact`` holds the network (``kernels.ml_models.ModelSpec`` and its parameters), the
training rows' standardization, the validation-chosen decision offsets, the dataset definition
(``ExampleParams``, whose hash every scored table must carry) and the label horizon. It is trained on
whole instrument-days (:func:`train_artifact`: the walk-forward's split, purge and early stopping,
with no test fold) and scored by :func:`predict` / :func:`predict_examples`, the one code path of
batch scoring, the ``champion`` asset and the live flow's scorer.

On disk (:meth:`ModelArtifact.save`): ``model.json`` (spec, feature names, parameters, horizon,
offsets, schema hash) and ``model.npz`` (network weights, scaler mean and std), both plain formats a
user can open without tapeflow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from kernels.ml_models import TEMPORAL, ModelSpec
from kernels.ml_train import fit, predict_proba
from tapeflow.errors import TapeflowError
from tapeflow.ml.book_inputs import book_input_names
from tapeflow.ml.dataset import Scaler, Segment, model_features, segment
from tapeflow.ml.examples import HASH_KEY, SECOND_NS, ExampleParams, feature_schema_hash
from tapeflow.ml.metrics import confusion, macro_f1
from tapeflow.ml.walkforward import (
    WalkForwardConfig,
    _split_pool,
    book_scaler,
    decide,
    decision_offsets,
    model_inputs,
    model_spec,
    train_alpha,
)

JSON_NAME = "model.json"
NPZ_NAME = "model.npz"
FORMAT_VERSION = 1
_NO_TEST_NS = np.iinfo(np.int64).max  # a deployable model has no test fold to purge before


class ArtifactError(TapeflowError):
    """A model file is missing, unreadable, or does not match the examples it is asked to score."""


@dataclass(frozen=True)
class ModelArtifact:
    """One trained model, ready to score examples built with ``params``."""

    spec: ModelSpec
    weights: dict[str, np.ndarray]
    scaler: Scaler
    offsets: np.ndarray          # float64[3]: log-probability offsets (down, flat, up)
    params: ExampleParams
    horizon_s: int
    feature_names: tuple[str, ...]
    val_macro_f1: float          # on the validation split it was stopped on
    label_alpha: float | None = None  # the labels' threshold chosen on its training rows (flat_share);
    #                                   None: the examples' own alpha
    book_scaler: Scaler | None = None  # deeplob: the raw book inputs' training mean and std

    @property
    def feature_schema_hash(self) -> str:
        """The hash of the dataset definition the model was trained on."""
        return feature_schema_hash(self.params)

    def save(self, folder: Path) -> Path:
        """Write ``model.json`` and ``model.npz`` into ``folder`` (created); returns ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT_VERSION, "spec": self.spec._asdict(), "params": asdict(self.params),
               "horizon_s": self.horizon_s, "feature_names": list(self.feature_names),
               "offsets": [float(v) for v in self.offsets], "val_macro_f1": self.val_macro_f1,
               "feature_schema_hash": self.feature_schema_hash, "label_alpha": self.label_alpha}
        (folder / JSON_NAME).write_text(json.dumps(doc, indent=2, sort_keys=True))
        arrays = {f"w.{k}": np.asarray(v) for k, v in self.weights.items()}
        if self.book_scaler is not None:
            arrays.update(book_mean=self.book_scaler.mean, book_std=self.book_scaler.std)
        np.savez(folder / NPZ_NAME, scaler_mean=self.scaler.mean, scaler_std=self.scaler.std, **arrays)
        return folder

    @classmethod
    def load(cls, folder: Path) -> ModelArtifact:
        """Read what :meth:`save` wrote.

        Raises:
            ArtifactError: a file is missing or not what ``save`` writes.
        """
        try:
            doc = json.loads((folder / JSON_NAME).read_text())
            with np.load(folder / NPZ_NAME) as npz:
                arrays = {k: npz[k] for k in npz.files}
            params = ExampleParams(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in doc["params"].items()})
            art = cls(ModelSpec(**doc["spec"]),
                      {k[2:]: v for k, v in arrays.items() if k.startswith("w.")},
                      Scaler(arrays["scaler_mean"], arrays["scaler_std"]), np.asarray(doc["offsets"]),
                      params, int(doc["horizon_s"]), tuple(doc["feature_names"]), float(doc["val_macro_f1"]),
                      None if doc.get("label_alpha") is None else float(doc["label_alpha"]),
                      Scaler(arrays["book_mean"], arrays["book_std"]) if "book_mean" in arrays else None)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{folder} holds no readable model ({type(exc).__name__}: {exc})") from exc
        if art.feature_schema_hash != doc["feature_schema_hash"]:
            raise ArtifactError(f"{folder}: the stored feature schema hash does not match its parameters")
        return art

    @property
    def steps(self) -> int:
        """Grid rows per input (the TCN's or the DeepLOB-like model's window; 1 for flat models)."""
        return self.spec.window if self.spec.kind in TEMPORAL else 1


def train_artifact(days: Sequence[Segment], params: ExampleParams, kind: str,
                   cfg: WalkForwardConfig | None = None, *,
                   test_start_ns: int | None = None) -> ModelArtifact:
    """Train one ``kind`` on whole days (oldest first): the last ``cfg.val_fraction`` of their usable
    rows validates (early stopping, decision offsets), rows whose label reaches it are purged.

    With ``cfg.flat_share`` the days are relabelled at the threshold the walk-forward would choose for
    a test fold after them (:func:`tapeflow.ml.walkforward.train_alpha`: their training rows only),
    kept as the artifact's ``label_alpha``.

    ``test_start_ns``: the first instant of a held-out day the model will be scored on; rows whose
    label reaches it are purged too (the walk-forward's test purge; None: no held-out day).

    Raises:
        TapeflowError: too few usable rows to split.
    """
    cfg = cfg or WalkForwardConfig()
    names = model_features(params)
    start = _NO_TEST_NS if test_start_ns is None else test_start_ns
    train_rows, val_rows = _split_pool(days, cfg.val_fraction, cfg.horizon_s * SECOND_NS, start)
    alpha = None
    if cfg.flat_share is not None:  # the split does not depend on labels
        alpha = train_alpha(days, train_rows, cfg.flat_share)
        days = [s.relabel(alpha, cfg.horizon_s) for s in days]
    y_tr = np.concatenate([s.y[r] for s, r in zip(days, train_rows, strict=True)])
    y_va = np.concatenate([s.y[r] for s, r in zip(days, val_rows, strict=True)])
    if len(y_tr) == 0 or len(y_va) == 0:
        raise TapeflowError(f"{len(y_tr)} training and {len(y_va)} validation rows: nothing to train on")
    scaler = Scaler.fit(np.concatenate([s.x[r] for s, r in zip(days, train_rows, strict=True)]))
    book = book_scaler(days, train_rows) if kind == "deeplob" else None
    width = len(book_input_names(params.book_levels)) if kind == "deeplob" else len(names)
    spec = model_spec(kind, width, cfg)
    x_tr, x_va = (model_inputs(spec, days, rows, scaler, book) for rows in (train_rows, val_rows))
    res = fit(spec, x_tr, y_tr, x_va, y_va, cfg.train._replace(seed=cfg.seed))
    weights = {k: np.asarray(v) for k, v in res.params.items()}
    proba_va = predict_proba(spec, res.params, x_va)
    offsets = decision_offsets(proba_va, y_va)
    val_f1 = macro_f1(confusion(y_va, decide(proba_va, offsets)))
    return ModelArtifact(spec, weights, scaler, offsets, params, cfg.horizon_s, tuple(names), val_f1, alpha,
                         book)


def predict(art: ModelArtifact, seg: Segment, rows: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(classes int64[n] in 0..2, probabilities float64[n, 3])`` for ``rows`` of ``seg`` (all rows
    when None), through the jitted forward pass; the ``past_label`` input at the model's
    ``label_alpha`` where it has one (:meth:`Segment.relabel`)."""
    rows = np.arange(len(seg.ts_ns)) if rows is None else rows
    if art.label_alpha is not None:
        seg = seg.relabel(art.label_alpha, art.horizon_s)
    x = model_inputs(art.spec, [seg], [rows], art.scaler, art.book_scaler)
    weights = {k: np.asarray(v, np.float32) for k, v in art.weights.items()}
    proba = predict_proba(art.spec, weights, x)  # type: ignore[arg-type]
    return decide(proba, art.offsets), proba


def reads(art: ModelArtifact, params: ExampleParams) -> bool:
    """Whether ``art`` can score segments built with ``params``: its own dataset, or (a model that
    does not read raw book levels, trained without them) the same dataset with raw book inputs
    added, which leave every other input as it was."""
    if art.params == params:
        return True
    return (art.params.book_levels == 0 and art.spec.kind != "deeplob"
            and replace(params, book_levels=0) == art.params)


def check_examples(art: ModelArtifact, examples: pa.Table) -> None:
    """Refuse examples built with another dataset definition than the model's.

    Raises:
        ArtifactError: the table's ``tapeflow.feature_schema_hash`` differs from the model's.
    """
    meta = examples.schema.metadata or {}
    got = meta.get(HASH_KEY, b"").decode()
    if got and got != art.feature_schema_hash:
        raise ArtifactError(f"examples built with feature schema {got[:12]}, the model needs "
                            f"{art.feature_schema_hash[:12]}")


def predict_examples(art: ModelArtifact, examples: pa.Table, name: str = "") -> tuple[Segment, np.ndarray,
                                                                                        np.ndarray]:
    """Score every row of one ``training_examples`` table: ``(segment, classes, probabilities)``.

    Raises:
        ArtifactError: the table was built with another dataset definition.
    """
    check_examples(art, examples)
    seg = segment(examples, art.horizon_s, art.params, name)
    cls, proba = predict(art, seg)
    return seg, cls, proba
