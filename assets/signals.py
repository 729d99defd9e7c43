"""Group ``signals``: each instrument-day's trades and book -> ``signal`` rows, and on simulated
partitions their precision and recall against the planted truth.

Wiring only: ``tapeflow.signals.sliced.detect_day`` runs every detector over the day read in
slices (bounded memory: the live stage's streaming detectors, fed the book rebuilt on the
thresholds' grid, 100 ms by default, from the day and the day before, the warm-up the ``book``
group uses; equal row for row to the batch detectors over the whole day, which a day without
order events still runs), so a partition's baselines start at its midnight, except institutional
pressure's 20-day baseline: the records of the days before the partition
(``tapeflow.signals.history.institutional_history``: the live stage's store under
``<lake>/_baselines``, days it lacks computed from the lake), the day's own record written back
after it. Partitions run in date order. The thresholds file is ``TAPEFLOW_SIGNALS_CONFIG``, else
the shipped one.
"""

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
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

from assets import common
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, target_key, targets
from assets.resources import TapeflowResource
from tapeflow.batch.targets import Target
from tapeflow.schemas import concat
from tapeflow.schemas.records import ORDER_EVENT, SIGNAL
from tapeflow.signals.config import config_path, load
from tapeflow.signals.detect import SCOPE
from tapeflow.signals.history import institutional_history, save_day
from tapeflow.signals.score import planted_kinds, score
from tapeflow.signals.sliced import detect_day
from tapeflow.signals.stream_institutional import STORE_DIR, BaselineStore
from tapeflow.storage import lake as lake_store

TRUTH_FILE = "episodes.parquet"  # the simulator's planted episodes, beside its files in landing
CHECK = "planted_truth"
_HOUR_NS = 3_600_000_000_000


@multi_asset(
    specs=[AssetSpec("signals", group_name="signals",
                     deps=["order_events", "book_deltas", "trades", "book_snapshots"], kinds={"parquet"},
                     description="Detector alerts (whale, withdrawal, ...): signal rows, per kind "
                                 "count, rate per hour and mean confidence.",
                     metadata={"lake_dataset": SIGNAL.name})],
    check_specs=[AssetCheckSpec(CHECK, asset="signals", blocking=True,
                                description="Simulated partitions: precision and recall per kind against "
                                            "the simulator's planted episodes (SIMULATOR.md's matching).")],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=True,  # the truth check has nothing to judge on a partition that is not simulated
)
def signals(context: AssetExecutionContext,
            tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Run every detector over each instrument-day and store its ``signal`` rows."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    thresholds = load(config_path(tapeflow.settings()))
    found: dict[Target, pa.Table] = {}
    hours: dict[Target, float] = {}
    store = BaselineStore(lake / STORE_DIR)
    baseline: dict[Target, dict[str, Any]] = {}
    for t in sorted(wanted):  # date order: a backfill's day finds the days before it in the store
        history = None
        if lake_store.partition_rows(ORDER_EVENT, lake, t.venue, t.symbol, t.date):
            history = institutional_history(lake, t, thresholds, store)
            baseline[t] = history.describe(store)
        else:
            baseline[t] = {"earlier_days": 0,
                           "reason": "no order events: institutional pressure needs order ids"}
        day = detect_day(lake, t, thresholds, baselines=history.baselines if history is not None else None)
        found[t] = day.table
        if history is not None:
            save_day(store, history)
        hours[t] = (day.trade_span_ns[1] - day.trade_span_ns[0]) / _HOUR_NS if day.trade_span_ns else 0.0
    # the detectors' rows only: what other producers wrote into the partition (derivatives/1) stays
    writes = common.write(SIGNAL, found, lake, wanted, scope=SCOPE)
    for t, table in found.items():
        common.report(context, "signals", t, table, writes,
                      extra={"by_kind": per_kind(table, hours[t]), "institutional_baseline": baseline[t]})
    yield MaterializeResult(asset_key="signals", metadata=common.run_metadata(wanted))
    if not any(k.name == CHECK for k in context.selected_asset_check_keys):
        return
    # one check result per run (a range run spans many partitions): the simulated ones scored together
    judged = {t: truth for t in found if (truth := planted_truth(tapeflow.landing, t)) is not None}
    if judged:
        yield truth_check(list(judged), pa.concat_tables(judged.values()),
                          concat(SIGNAL, [found[t] for t in judged]))


def per_kind(table: pa.Table, hours: float) -> dict[str, dict[str, Any]]:
    """Per kind: alerts, alerts per hour of data (``hours``: the span the day's trades cover), and
    mean confidence."""
    out = {}
    for kind in sorted(set(table.column("kind").to_pylist())):
        rows = table.filter(pc.equal(table.column("kind"), kind))
        rate = round(rows.num_rows / hours, 4) if hours > 0 else None
        out[kind] = {"count": rows.num_rows, "rate_per_hour": rate,
                     "mean_confidence": round(pc.mean(rows.column("confidence")).as_py(), 4)}
    return out


def planted_truth(landing: Path, t: Target) -> pa.Table | None:
    """The planted episodes of ``t`` (its symbol, starting on its day), or None off the simulator."""
    if t.venue != "sim" or not landing.is_dir():
        return None
    parts = [pq.read_table(p) for p in sorted(landing.rglob(TRUTH_FILE))]
    if not parts:
        return None
    truth = pa.concat_tables(parts, promote_options="permissive")
    start = _day_start_ns(t.date)
    keep = pc.and_(pc.equal(truth.column("instrument"), t.symbol),
                   pc.and_(pc.greater_equal(truth.column("start_ns"), start),
                           pc.less(truth.column("start_ns"), start + 24 * _HOUR_NS)))
    return truth.filter(keep)


def truth_check(judged: list[Target], truth: pa.Table, alerts: pa.Table) -> AssetCheckResult:
    """Precision and recall per planted kind of ``alerts`` against ``truth`` over the ``judged``
    partitions (reported; no goal enforced); kinds with no planted truth are listed as not scored."""
    kinds = planted_kinds(truth)
    report = score(truth, alerts, kinds=kinds)
    unscored = sorted(set(alerts.column("kind").to_pylist()) - set(kinds))
    meta: dict[str, Any] = {"partitions": MetadataValue.json([str(target_key(t)) for t in judged]),
                            "ece": _num(report.ece), "not_scored": MetadataValue.json(unscored)}
    for k in report.kinds:
        meta[k.kind] = MetadataValue.json({"episodes": k.episodes, "alerts": k.alerts, "hits": k.hits,
                                           "precision": _num(k.precision), "recall": _num(k.recall)})
    return AssetCheckResult(check_name=CHECK, asset_key="signals", passed=True, metadata=meta)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _day_start_ns(date: str) -> int:
    import datetime as dt

    day = dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC)
    return int(day.timestamp()) * 1_000_000_000
