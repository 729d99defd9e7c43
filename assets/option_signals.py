"""Group ``options``: each underlying-day's cross-strike coordination signals.

Wiring only: :func:`tapeflow.options.flow_signals.day_signals` reads the day's ``option_ticker``
rows (the ``option_tickers`` asset) and the option ``trade`` rows (the day pipeline's ingest of the
venue's option instruments) from the lake and runs the cross-strike detector; the one writer
replaces the day's ``signal`` partition of the underlying (symbol ``BTC``: the detector's rows are
about the underlying, not one option). On simulated partitions (venue ``sim``, the simulator's
``episodes.parquet`` in landing) the ``planted_cross_strike`` check reports precision and recall
against the planted flows.
"""

from collections.abc import Iterator

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from assets.ingest import RETRY
from assets.options import GROUP, day_by_underlying, partition_key, underlying_days
from assets.partitions import DECLARED_FIRST_DAY
from assets.resources import TapeflowResource
from assets.signals import per_kind, planted_truth
from tapeflow.batch.targets import Target
from tapeflow.options.flow_signals import day_signals
from tapeflow.options.landing import UnderlyingDay
from tapeflow.schemas import concat
from tapeflow.schemas.records import SIGNAL
from tapeflow.signals.config import config_path, load
from tapeflow.signals.score import score
from tapeflow.storage.writer import Writer

ASSET = "option_flow_signals"
CHECK = "planted_cross_strike"


@multi_asset(
    specs=[AssetSpec(ASSET, group_name=GROUP, deps=["option_tickers"], kinds={"parquet", "clickhouse"},
                     description="Cross-strike coordination: one-way, vega-weighted aggressive option flow "
                                 "across strikes and expiries of one underlying (signal rows, kind "
                                 "cross_strike); count, rate per hour and mean confidence.",
                     metadata={"lake_dataset": SIGNAL.name})],
    check_specs=[AssetCheckSpec(CHECK, asset=ASSET, blocking=False,
                                description="Simulated partitions: precision and recall against the "
                                            "simulator's planted cross-strike flows.")],
    partitions_def=day_by_underlying(DECLARED_FIRST_DAY),
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=True,  # the check has nothing to judge off the simulator
)
def option_flow_signals(context: AssetExecutionContext,
                        tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Run the cross-strike detector over each underlying-day and store its ``signal`` rows."""
    wanted = underlying_days(context.partition_keys)
    thresholds = load(config_path(tapeflow.settings()))
    found: dict[UnderlyingDay, pa.Table] = {}
    with Writer(tapeflow.lake, tapeflow.dsn) as writer:
        for want in wanted:
            rows, read = day_signals(tapeflow.lake, want, thresholds)
            found[want] = rows
            writer.replace(SIGNAL, rows, partitions=[(want.venue, want.underlying, want.date)])
            by_kind = per_kind(rows, read["trade_span_hours"])
            context.add_asset_metadata({"dagster/row_count": rows.num_rows, **read,
                                        "by_kind": MetadataValue.json(by_kind)},
                                       asset_key=ASSET, partition_key=partition_key(want))
    yield MaterializeResult(asset_key=ASSET, metadata={"partitions_in_run": len(wanted)})
    if not any(k.name == CHECK for k in context.selected_asset_check_keys):
        return
    truths = {w: planted_truth(tapeflow.landing, Target(w.date, w.venue, w.underlying)) for w in found}
    judged = {w: truth for w, truth in truths.items() if truth is not None}
    if not judged:
        context.log.info(f"{CHECK}: no simulated partition in the run; no result (Dagster: Skipped)")
        return
    report = score(pa.concat_tables(list(judged.values()), promote_options="permissive"),
                   concat(SIGNAL, [found[w] for w in judged]), kinds=["cross_strike"])
    (kind,) = report.kinds
    yield AssetCheckResult(check_name=CHECK, asset_key=ASSET, passed=True, metadata={
        "partitions": MetadataValue.json([str(partition_key(w)) for w in judged]),
        "episodes": kind.episodes, "alerts": kind.alerts, "hits": kind.hits,
        "precision": None if kind.precision != kind.precision else round(kind.precision, 4),
        "recall": None if kind.recall != kind.recall else round(kind.recall, 4)})
