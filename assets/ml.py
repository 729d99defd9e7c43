"""Group ``ml``: each instrument-day's 1 s book snapshots and trades -> ``training_example`` rows,
a ``model`` per instrument-day trained on the days before and scored on the day, and the registry's
``champion``: a challenger retrained on the days before, compared with the champion on the day and
promoted by the rule (``tapeflow.ml.retrain``; the ``retrain_days`` job, its schedule and the drift
sensor run it).

Wiring only: :func:`tapeflow.ml.training_examples` builds the features and labels (docs/models.md),
:func:`tapeflow.ml.rows.example_rows` turns them into the record, :func:`tapeflow.ml.evaluate.score_day`
trains and scores. Lineage goes into the metadata: the feature schema hash, the dataset parameters
and the source partitions read.
"""

import json
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, BackfillPolicy, Config, MaterializeResult, MetadataValue, asset

from assets import common
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, target_key, targets
from assets.resources import TapeflowResource
from tapeflow.batch.targets import Target
from tapeflow.ml import ExampleParams, feature_schema_hash
from tapeflow.ml import training_examples as build_examples
from tapeflow.ml.candidates import (
    Candidates,
    candidates_dir,
    examples_key,
    load_candidates,
    store_candidates,
    train_candidates,
)
from tapeflow.ml.evaluate import score_day
from tapeflow.ml.kinds import checked_kinds
from tapeflow.ml.kinds import dataset_params as kinds_dataset_params
from tapeflow.ml.promotion import DEFAULT_MARGIN
from tapeflow.ml.registry import Registry, default_root, model_name
from tapeflow.ml.report import summary
from tapeflow.ml.retrain import retrain
from tapeflow.ml.rows import example_rows, lake_examples
from tapeflow.ml.walkforward import WalkForwardConfig
from tapeflow.schemas.ml import HORIZONS_S, NO_LABEL, TRAINING_EXAMPLE
from tapeflow.schemas.records import BOOK_SNAPSHOT, TRADE
from tapeflow.storage import lake as lake_store

PARAMS = ExampleParams()
MODEL_CONFIG = WalkForwardConfig(horizon_s=10, train_folds=3)


class ModelKinds(Config):
    """Run config of ``model`` and ``champion``: which kinds to train (``tapeflow.ml.kinds.KINDS``).

    None (the default) trains ``MODEL_CONFIG.models`` (logreg, mlp, tcn). With ``deeplob`` every kind
    reads the default examples plus the raw book levels of the partition's ``book_snapshot`` rows,
    joined on the grid (``tapeflow.ml.rows.with_book_inputs``; the dataset's hash is then that of
    ``ExampleParams(book_levels=10)``, as ``tapeflow ml evaluate --models ...,deeplob`` builds it).
    Give both assets the same list: ``champion`` reads the set ``model`` stored only when it was
    trained from the same kinds (else it trains its own). The retrain schedule and the drift sensor
    give ``champion`` the kinds of ``Settings.ml_retrain_kinds`` (``TAPEFLOW_ML_RETRAIN_KINDS``).
    """

    models: list[str] | None = None


def _class_shares(rows: pa.Table) -> dict[str, dict[str, float]]:
    out = {}
    for h in HORIZONS_S:
        labels = rows.column(f"label_{h}s")
        known = labels.filter(pc.not_equal(labels, NO_LABEL))
        n = max(len(known), 1)
        out[f"{h}s"] = {name: round(pc.sum(pc.equal(known, v)).as_py() / n, 4) if len(known) else 0.0
                        for name, v in (("down", -1), ("flat", 0), ("up", 1))}
    return out


@asset(
    group_name="ml",
    deps=["book_snapshots", "trades"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"parquet"},
    metadata={"lake_dataset": TRAINING_EXAMPLE.name, "feature_schema_hash": feature_schema_hash(PARAMS),
              "feature_params": json.dumps(asdict(PARAMS), sort_keys=True)},
)
def training_examples(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """Causal book and flow features with up/flat/down labels at 1, 10 and 60 s on the 1 s grid."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    for t in wanted:
        snaps = common.read(BOOK_SNAPSHOT, lake, [t])[t].sort_by("ts_event_ns")
        # the builder assigns trades to grid instants by arrival time, so it takes them in that order
        trades = common.read(TRADE, lake, [t])[t].sort_by("ts_recv_ns")
        sources = [f"book_snapshots/{target_key(t)}", f"trades/{target_key(t)}"]
        if snaps.num_rows:
            examples = build_examples(snaps, trades, PARAMS, source=",".join(sources))
            rows = example_rows(examples, t.venue, t.symbol)
        else:
            rows = TRAINING_EXAMPLE.empty_table()
        writes = common.write(TRAINING_EXAMPLE, {t: rows}, lake, [t])
        common.report(context, "training_examples", t, rows, writes, extra={
            "feature_schema_hash": feature_schema_hash(PARAMS), "source_partitions": sources,
            "source_rows": {"book_snapshots": snaps.num_rows, "trades": trades.num_rows},
            "class_shares": _class_shares(rows)})
    return MaterializeResult(metadata=common.run_metadata(wanted))


@asset(
    group_name="ml",
    deps=["training_examples"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    metadata={"horizon_s": MODEL_CONFIG.horizon_s, "train_days": MODEL_CONFIG.train_folds,
              "models": list(MODEL_CONFIG.models), "feature_schema_hash": feature_schema_hash(PARAMS)},
)
def model(context: AssetExecutionContext, tapeflow: TapeflowResource,
          config: ModelKinds) -> MaterializeResult:
    """The models trained on the instrument's previous days of examples and scored on this day against
    the naive baselines (macro-F1, accuracy, log loss, MCC, confusion, bootstrap intervals); the
    trained models and their calls on the day are stored for ``champion`` and ``model_backtest``."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    cfg = _config(tapeflow, config)
    params = dataset_params(cfg)
    for t in wanted:
        days = train_days(lake, t)
        today = _examples(lake, t.venue, t.symbol, t.date, params)
        history = [_examples(lake, t.venue, t.symbol, d, params) for d in days]
        trained = train_candidates(history, [partition_name(t.venue, t.symbol, d) for d in days], today,
                                   params, cfg, today_name=partition_name(t.venue, t.symbol, t.date),
                                   key=candidates_key(lake, t, days, cfg)) if today.num_rows else None
        store_candidates(candidates_dir(default_root(lake), t.venue, t.symbol, t.date), trained)
        result = score_day(history, today, params, cfg, t.symbol,
                           trained=trained.predictions() if trained else None) if today.num_rows else None
        meta = {"train_days": days, "models": list(cfg.models),
                "feature_schema_hash": feature_schema_hash(params), **summary(result)}
        context.add_asset_metadata({k: MetadataValue.json(v) if isinstance(v, dict | list) else v
                                    for k, v in meta.items()}, partition_key=target_key(t))
    return MaterializeResult(metadata=common.run_metadata(wanted))


def partition_name(venue: str, symbol: str, date: str) -> str:
    """How a ``training_examples`` partition is named in the registry's lineage tags."""
    return f"{TRAINING_EXAMPLE.name}/{venue}/{symbol}/{date}"


def train_days(lake: Path, t: Target) -> list[str]:
    """The instrument's ``training_examples`` days before ``t``'s, the last ``train_folds`` of them."""
    earlier = [d for _, _, d, _ in lake_store.partitions(TRAINING_EXAMPLE, lake, venue=t.venue,
                                                           symbol=t.symbol) if d < t.date]
    return earlier[-MODEL_CONFIG.train_folds:]


def candidates_key(lake: Path, t: Target, days: list[str], cfg: WalkForwardConfig | None = None) -> str:
    """What ``t``'s candidates are trained from (``tapeflow.ml.candidates.examples_key``; the config,
    ``flat_share`` and the kinds included, is part of it; None: ``MODEL_CONFIG`` as it is now)."""
    cfg = cfg or MODEL_CONFIG
    return examples_key(lake, t.venue, t.symbol, [*days, t.date], dataset_params(cfg), cfg)


def stored_candidates(lake: Path, t: Target, days: list[str],
                      cfg: WalkForwardConfig | None = None) -> Candidates | None:
    """The candidates the ``model`` asset stored for ``t``, if trained from today's lake rows."""
    return load_candidates(candidates_dir(default_root(lake), t.venue, t.symbol, t.date),
                           candidates_key(lake, t, days, cfg))


@asset(
    group_name="ml",
    deps=["training_examples", "model"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"mlflow"},
    metadata={"horizon_s": MODEL_CONFIG.horizon_s, "train_days": MODEL_CONFIG.train_folds,
              "models": list(MODEL_CONFIG.models), "margin_macro_f1": DEFAULT_MARGIN,
              "feature_schema_hash": feature_schema_hash(PARAMS)},
)
def champion(context: AssetExecutionContext, tapeflow: TapeflowResource,
             config: ModelKinds) -> MaterializeResult:
    """A challenger trained on the instrument's previous days, compared with the registry's champion
    on this day (macro-F1, paired block-bootstrap interval) and promoted when it wins by the margin."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    registry = Registry(default_root(lake))
    cfg = _config(tapeflow, config)
    params = dataset_params(cfg)
    for t in wanted:
        days = train_days(lake, t)
        # the models the ``model`` asset trained for this day; trained here only when it has not run
        # since the examples changed (e.g. the retrain job, which materializes ``champion`` alone)
        stored = stored_candidates(lake, t, days, cfg)
        history = [] if stored else [_examples(lake, t.venue, t.symbol, d, params) for d in days]
        result = retrain(registry, model_name(t.venue, t.symbol, MODEL_CONFIG.horizon_s), history,
                         [partition_name(t.venue, t.symbol, d) for d in days],
                         _examples(lake, t.venue, t.symbol, t.date, params),
                         partition_name(t.venue, t.symbol, t.date),
                         params=params, cfg=cfg, margin=DEFAULT_MARGIN,
                         tags={"venue": t.venue, "symbol": t.symbol}, candidates=stored,
                         rebuild=lambda p, t=t: _examples(lake, t.venue, t.symbol, t.date, p))
        meta = {**result.metadata(), "models": list(cfg.models)}
        if not result.skipped:
            meta["candidates"] = "read (model asset)" if stored else "trained here"
        context.add_asset_metadata({k: MetadataValue.json(v) if isinstance(v, dict | list) else v
                                    for k, v in meta.items() if v is not None},
                                   partition_key=target_key(t))
    return MaterializeResult(metadata=common.run_metadata(wanted))


def _config(tapeflow: TapeflowResource, config: ModelKinds | None = None) -> WalkForwardConfig:
    """``MODEL_CONFIG``, with the run config's kinds and the resource's ``flat_share`` (the CLI's
    ``--flat-share``) where set.

    Raises:
        ConfigError: an unknown or repeated kind, or an empty list.
    """
    cfg = MODEL_CONFIG
    if config is not None and config.models is not None:
        cfg = replace(cfg, models=checked_kinds(config.models, "the run config"))
    share = tapeflow.flat_share
    return cfg if share is None else replace(cfg, flat_share=share)


def dataset_params(cfg: WalkForwardConfig) -> ExampleParams:
    """The examples ``cfg``'s kinds read: ``PARAMS``, plus the raw book levels when one reads them."""
    return kinds_dataset_params(cfg.models, PARAMS)


def _examples(lake: Path, venue: str, symbol: str, date: str, params: ExampleParams = PARAMS) -> pa.Table:
    return lake_examples(lake, venue, symbol, date, params)
