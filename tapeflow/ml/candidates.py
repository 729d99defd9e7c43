"""The models of one instrument-day, trained once: every kind on the days before, scored on the day.

A Dagster backfill needs the same models three times per instrument-day: the ``model`` asset scores
them against the baselines, the ``champion`` asset picks its challenger among them, and the
``model_backtest`` asset follows the logistic regression's calls. :func:`train_candidates` trains
each kind once (``tapeflow.ml.artifact.train_artifact``: the walk-forward's split, purge and early
stopping over the days before) and predicts the held-out day's usable rows; the ``model`` asset
stores the result (:meth:`Candidates.save`, under ``<lake>/_models/candidates/``) and the two other
assets read it (:func:`load_candidates`) instead of training again.

What they were trained from is a key (:func:`examples_key`): the bytes of the lake's
``training_example`` partitions of the days used, the dataset parameters, the protocol and the
training code's own source. A reader whose key differs (a day rebuilt, a setting or the code
changed since) gets None and trains anew, so a stored set is never used for other inputs.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from tapeflow.ml.artifact import ArtifactError, ModelArtifact, predict, train_artifact
from tapeflow.ml.dataset import Segment, segment
from tapeflow.ml.evaluate import MIN_USABLE_ROWS
from tapeflow.ml.examples import ExampleParams, feature_schema_hash
from tapeflow.ml.walkforward import WalkForwardConfig
from tapeflow.schemas.ml import TRAINING_EXAMPLE
from tapeflow.schemas.records import BOOK_SNAPSHOT
from tapeflow.storage import lake as lake_store
from tapeflow.storage.parts import list_parts

FORMAT_VERSION = 1
INDEX = "candidates.json"
PREDICTIONS = "predictions.npz"
# the modules whose code decides what a training gives: a change in any of them trains anew
_TRAINING_CODE = ("kernels.ml_models", "kernels.ml_train", "tapeflow.ml.dataset", "tapeflow.ml.metrics",
                  "tapeflow.ml.walkforward", "tapeflow.ml.artifact", "tapeflow.ml.candidates",
                  "tapeflow.ml.rows", "tapeflow.ml.book_inputs")  # the last two: the book inputs' join


@dataclass(frozen=True)
class Candidates:
    """Every kind trained on one instrument's days before a held-out day, and its calls on that day.

    ``rows`` int64[n]: the held-out day's usable rows (warmed up, two-sided, labelled); ``pred``
    int64[n] classes 0..2 and ``proba`` float64[n, 3] per kind, from
    :func:`tapeflow.ml.artifact.predict` (what the champion comparison and the scores read).
    """

    key: str
    history: tuple[str, ...]      # the days offered (names), oldest first
    train_days: tuple[str, ...]   # those trained on: MIN_USABLE_ROWS usable rows, the last train_folds
    artifacts: dict[str, ModelArtifact]  # in the protocol's order of kinds
    rows: np.ndarray
    pred: dict[str, np.ndarray]
    proba: dict[str, np.ndarray]

    def predictions(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{kind: (classes, probabilities)}`` on :attr:`rows`, as the walk-forward scores them."""
        return {k: (self.pred[k], self.proba[k]) for k in self.artifacts}

    def save(self, folder: Path) -> Path:
        """Write the set into ``folder`` (replaced whole: written beside it, then renamed)."""
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for kind, art in self.artifacts.items():
            art.save(tmp / kind)
        np.savez(tmp / PREDICTIONS, rows=self.rows, **{f"pred.{k}": v for k, v in self.pred.items()},
                 **{f"proba.{k}": v for k, v in self.proba.items()})
        doc = {"format": FORMAT_VERSION, "key": self.key, "history": list(self.history),
               "train_days": list(self.train_days), "kinds": list(self.artifacts)}
        (tmp / INDEX).write_text(json.dumps(doc, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return folder


def store_candidates(folder: Path, candidates: Candidates | None) -> None:
    """Save ``candidates`` in ``folder``, or remove what it holds when there are none (nothing trained)."""
    if candidates is None:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        candidates.save(folder)


def candidates_dir(registry_root: Path, venue: str, symbol: str, date: str) -> Path:
    """Where one instrument-day's candidates live, under the registry's root."""
    return (registry_root / "candidates" / f"venue={lake_store.escape(venue)}"
            / f"symbol={lake_store.escape(symbol)}" / f"date={date}")


def load_candidates(folder: Path, key: str) -> Candidates | None:
    """The set stored in ``folder`` if it was trained from ``key``'s inputs, else None (missing,
    unreadable, or trained from something else: the caller trains anew)."""
    try:
        doc = json.loads((folder / INDEX).read_text())
        if doc.get("format") != FORMAT_VERSION or doc.get("key") != key:
            return None
        kinds = list(doc["kinds"])
        artifacts = {k: ModelArtifact.load(folder / k) for k in kinds}
        with np.load(folder / PREDICTIONS) as npz:
            rows = npz["rows"]
            pred = {k: npz[f"pred.{k}"] for k in kinds}
            proba = {k: npz[f"proba.{k}"] for k in kinds}
    except (OSError, KeyError, TypeError, ValueError, ArtifactError):
        return None
    return Candidates(key, tuple(doc["history"]), tuple(doc["train_days"]), artifacts, rows, pred, proba)


@lru_cache(maxsize=1)
def _code_digest() -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in _TRAINING_CODE:
        h.update(Path(inspect.getfile(importlib.import_module(name))).read_bytes())
    return h.hexdigest()


def examples_key(lake: Path, venue: str, symbol: str, dates: Sequence[str], params: ExampleParams,
                 cfg: WalkForwardConfig) -> str:
    """A digest of what a training over ``dates`` (the history days, then the held-out day) reads:
    every byte of their ``training_example`` part files (and ``book_snapshot`` ones when the dataset
    has raw book inputs), the dataset and protocol settings, the training code."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{FORMAT_VERSION}|{feature_schema_hash(params)}|{cfg!r}|{_code_digest()}".encode())
    # raw book inputs are joined from the partition's book_snapshot rows (tapeflow.ml.rows.with_book_inputs)
    records = (TRAINING_EXAMPLE, BOOK_SNAPSHOT) if params.book_levels else (TRAINING_EXAMPLE,)
    for date in dates:
        h.update(f"|{date}".encode())
        for record in records:
            directory = lake_store.partition_dir(lake, record, venue, symbol, date)
            if record is not TRAINING_EXAMPLE:
                h.update(f"|{record.name}".encode())
            for part in list_parts(directory):
                h.update(f"|{part.name}|".encode())
                h.update((directory / part.name).read_bytes())
    return h.hexdigest()


def train_segments(history: Sequence[pa.Table], names: Sequence[str], params: ExampleParams,
                   cfg: WalkForwardConfig) -> list[Segment]:
    """The days a model trains on: those with ``MIN_USABLE_ROWS`` usable rows, the last ``train_folds``."""
    segs = [segment(t, cfg.horizon_s, params, n) for t, n in zip(history, names, strict=True) if t.num_rows]
    return [s for s in segs if int(s.usable.sum()) >= MIN_USABLE_ROWS][-cfg.train_folds:]


def train_candidates(history: Sequence[pa.Table], history_names: Sequence[str], today: pa.Table,
                     params: ExampleParams, cfg: WalkForwardConfig, *, today_name: str = "test",
                     key: str = "") -> Candidates | None:
    """Train every kind of ``cfg.models`` once on the days before ``today`` and predict its usable rows.

    Args:
        history: ``training_examples`` tables of the days before, oldest first.
        history_names: their names (lake partitions: the lineage the registry records).
        today: the held-out day (its usable rows are predicted; it may have none).
        params: the dataset definition the tables were built with.
        cfg: the protocol (horizon, kinds, split, seed, training settings, ``flat_share``).
        today_name: the held-out segment's name.
        key: what the set is stored under (:func:`examples_key`).

    Returns:
        None when no earlier day, or not ``today``, has ``MIN_USABLE_ROWS`` usable rows: nothing to
        train on, or a day neither the scores nor the champion judge (both skip it; a backtest of it
        trains its own model, as it did before). With ``cfg.flat_share`` each model is trained on
        labels at the threshold its training rows choose (:func:`tapeflow.ml.walkforward.train_alpha`,
        the same rows and so the same threshold as the walk-forward's fold) and predicts with its
        ``past_label`` input at that threshold; the held-out labels are the scorer's to relabel.
    """
    days = train_segments(history, history_names, params, cfg)
    if not days:
        return None
    test = segment(today, cfg.horizon_s, params, today_name)
    rows = np.flatnonzero(test.usable)
    if len(rows) < MIN_USABLE_ROWS:
        return None
    # the walk-forward protocol: nothing trained on may have a label reaching into the held-out day
    start = int(test.ts_ns[0]) if len(test.ts_ns) else None
    artifacts = {kind: train_artifact(days, params, kind, cfg, test_start_ns=start) for kind in cfg.models}
    calls = {kind: predict(art, test, rows) for kind, art in artifacts.items()}
    return Candidates(key, tuple(history_names), tuple(s.name for s in days), artifacts, rows,
                      {k: c[0] for k, c in calls.items()}, {k: c[1] for k, c in calls.items()})
