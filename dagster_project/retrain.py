"""Retraining: the ``retrain_days`` job (the ``champion`` asset), its nightly schedule after the daily
backfill, and the drift sensor that requests it when the recent day no longer looks like the
champion's training days.

The schedule runs at 02:30 UTC, two hours after ``daily_schedule`` (00:30) rebuilt yesterday's
``training_examples``: yesterday becomes every instrument's held-out day, the days before train the
challenger. The sensor looks, per registered model with a champion, at the newest
``training_examples`` day after the champion's held-out day: feature PSI against the champion's
training days over the inputs the champion reads (``tapeflow.ml.drift``: worst feature above 0.25;
a ``deeplob`` champion's raw book levels included, joined from ``book_snapshots``), and, where the
live flow wrote ``prediction`` rows that day, the champion's live macro-F1 against its held-out one
(a drop of more than 0.10). Either requests a ``retrain_days`` run of that day, once per champion
version and day (the run key), tagged with what it measured.

Both send the kinds to train as the run's config (``champion``'s ``models``, tag
``tapeflow/models``): ``Settings.ml_retrain_kinds`` (``TAPEFLOW_ML_RETRAIN_KINDS``; the resource's
``ml_retrain_kinds`` wins), by default logreg, mlp and tcn; with ``deeplob`` listed, every kind of the
run reads the raw book inputs too and the challenger is compared with the champion as usual.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from assets.partitions import INSTRUMENTS_NAME, parse_instrument_key
from assets.resources import TapeflowResource
from dagster_project.runs import SCHEDULE_NAME_TAG, SENSOR_NAME_TAG, partition_runs
from tapeflow.errors import TapeflowError
from tapeflow.ml.drift import drift_check, live_decay
from tapeflow.ml.kinds import MODELS
from tapeflow.ml.registry import DB_NAME, Registry, default_root
from tapeflow.ml.rows import lake_examples
from tapeflow.schemas.ml import PREDICTION, TRAINING_EXAMPLE
from tapeflow.storage import lake as lake_store

RETRAIN = "retrain_schedule"
DRIFT = "drift_sensor"
KINDS_TAG = "tapeflow/models"  # the kinds a retraining run trains (its config says the same)

retrain_days = define_asset_job(
    "retrain_days",
    selection=AssetSelection.assets("champion"),
    description="Retrain a challenger on the days before, compare it with the champion on the day, "
                "promote it by the rule (docs/models.md).",
)


@schedule(name=RETRAIN, job=retrain_days, cron_schedule="30 2 * * *", execution_timezone="UTC",
          description="Yesterday (UTC) as every instrument's held-out day, after the daily backfill; "
                      "the kinds of TAPEFLOW_ML_RETRAIN_KINDS.")
def retrain_schedule(context: ScheduleEvaluationContext,
                     tapeflow: TapeflowResource) -> list[RunRequest] | SkipReason:
    """Yesterday's ``champion`` partitions of every registered instrument."""
    instruments = list(context.instance.get_dynamic_partitions(INSTRUMENTS_NAME))
    return retrain_requests(context.scheduled_execution_time, instruments, tapeflow.retrain_kinds)


def retrain_config(kinds: Sequence[str]) -> dict[str, Any]:
    """The ``retrain_days`` run config that trains ``kinds`` (``assets.ml.ModelKinds``)."""
    return {"ops": {"champion": {"config": {"models": list(kinds)}}}}


def retrain_requests(when: dt.datetime, instruments: list[str],
                     kinds: Sequence[str] = MODELS) -> list[RunRequest] | SkipReason:
    """The schedule's answer at ``when`` for the registered ``instruments`` (keys, registration order),
    training ``kinds``."""
    day = (when.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    if not instruments:
        return SkipReason("no instrument registered yet (the landing sensor registers them)")
    wanted = [(day, *parse_instrument_key(k)) for k in instruments]
    return partition_runs(wanted, instruments, run_key_prefix=f"retrain:{day}",
                          tags={"tapeflow/trigger": "retrain", SCHEDULE_NAME_TAG: RETRAIN,
                                KINDS_TAG: ",".join(kinds)},
                          run_config=retrain_config(kinds))


def _date(partition: str) -> str:
    return partition.rsplit("/", 1)[-1]


def _rows(lake: Path, venue: str, symbol: str, date: str) -> pa.Table:
    return lake_store.read(TRAINING_EXAMPLE, lake, venue, symbol, date).select(TRAINING_EXAMPLE.column_names)


@sensor(name=DRIFT, job=retrain_days, minimum_interval_seconds=3600,
        default_status=DefaultSensorStatus.RUNNING,
        description="Feature PSI or live macro-F1 decay of a champion past its threshold -> "
                    "retrain that day.")
def drift_sensor(context: SensorEvaluationContext, tapeflow: TapeflowResource) -> SensorResult | SkipReason:
    """Request retraining where the newest day drifted from the champion's training days."""
    lake = tapeflow.lake
    root = default_root(lake)
    if not (root / DB_NAME).is_file():
        return SkipReason(f"no model registry yet under {root} (the champion asset creates it)")
    registry = Registry(root)
    kinds = tapeflow.retrain_kinds
    instruments = list(context.instance.get_dynamic_partitions(INSTRUMENTS_NAME))
    requests: list[RunRequest] = []
    notes: list[str] = []
    for name in registry.names():
        version = registry.champion_version(name)
        if version is None:
            continue
        mv = registry.client.get_model_version(name, str(version))
        venue, symbol = mv.tags.get("venue"), mv.tags.get("symbol")
        if not venue or symbol is None:
            continue
        held = _date(mv.tags.get("held_out", ""))
        later = [d for _, _, d, _ in lake_store.partitions(TRAINING_EXAMPLE, lake, venue=venue, symbol=symbol)
                 if d > held]
        if not later:
            notes.append(f"{name} v{version}: no day after its held-out day {held}")
            continue
        recent = later[-1]
        train_days = [_date(p) for p in json.loads(mv.tags.get("training_partitions", "[]"))]
        champ = registry.load(name, version)
        recent_rows = _rows(lake, venue, symbol, recent)
        try:  # the champion's own inputs: a deeplob's raw book levels joined from book_snapshots
            report = drift_check(champ, [lake_examples(lake, venue, symbol, d, champ.params)
                                         for d in train_days],
                                 [lake_examples(lake, venue, symbol, recent, champ.params)])
        except TapeflowError as exc:
            notes.append(f"{name} v{version} on {recent}: no verdict ({exc})")
            continue
        feature, psi = report.worst
        why = {"tapeflow/psi_worst": f"{feature}={psi:.3f}"}
        preds = lake_store.read(PREDICTION, lake, venue, symbol, recent)
        decayed = False
        if preds.num_rows:
            reference = float(mv.tags.get("metric.macro_f1", "nan"))
            decay = live_decay(preds, recent_rows, version, champ.horizon_s, reference,
                               alpha=champ.label_alpha)
            why["tapeflow/live_macro_f1"] = f"{decay.live_f1:.3f} vs {reference:.3f} ({decay.rows} rows)"
            decayed = decay.decayed
        notes.append(f"{name} v{version} on {recent}: " + ", ".join(f"{k[9:]} {v}" for k, v in why.items()))
        if report.drifted or decayed:
            reason = "psi" if report.drifted else "decay"
            requests += partition_runs([(recent, venue, symbol)], instruments,
                                       run_key_prefix=f"drift:{name}:v{version}:{recent}",
                                       tags={"tapeflow/trigger": f"drift_{reason}", SENSOR_NAME_TAG: DRIFT,
                                             KINDS_TAG: ",".join(kinds), **why},
                                       run_config=retrain_config(kinds))
    for line in notes:
        context.log.info(line)
    if not requests:
        return SkipReason("no drift: " + ("; ".join(notes) or "no champion yet"))
    return SensorResult(run_requests=requests)


__all__ = ["DRIFT", "KINDS_TAG", "RETRAIN", "drift_sensor", "retrain_config", "retrain_days",
           "retrain_schedule"]
