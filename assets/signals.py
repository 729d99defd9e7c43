"""Group ``signals``: each instrument-day's trades and book -> ``signal`` rows, and on simulated
partitions their precision and recall against the planted truth.

Wiring only: the book is rebuilt on the thresholds' grid (``tapeflow.signals.detect.grid_and_levels``,
100 ms by default, finer than the 1 s ``book_snapshots``) from the day and the day before
(``tapeflow.signals.history.day_inputs``, the warm-up the ``book`` group uses); the detectors
(``tapeflow.signals.detect.detect_tables``, and ``tapeflow.signals.orders.detect_orders`` over the
day's order events: spoofing, icebergs, institutional) run over the day's own rows, so a
partition's baselines start at its midnight, except institutional pressure's 20-day baseline: the
records of the days before the partition (``tapeflow.signals.history.institutional_history``: the
live stage's store under ``<lake>/_baselines``, days it lacks computed from the lake), the day's
own record written back after it. Partitions run in date order. The thresholds file is
``TAPEFLOW_SIGNALS_CONFIG``, else the shipped one.
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
from tapeflow.schemas.records import SIGNAL
from tapeflow.signals.config import config_path, load
from tapeflow.signals.detect import SCOPE, detect_tables, grid_and_levels, instruments_of
from tapeflow.signals.history import day_inputs, institutional_history, save_day
from tapeflow.signals.orders import detect_orders
from tapeflow.signals.score import planted_kinds, score
from tapeflow.signals.stream_institutional import STORE_DIR, BaselineStore

TRUTH_FILE = "episodes.parquet"  # the simulator's planted episodes, beside its files in landing
CHECK = "planted_truth"
_HOUR_NS = 3_600_000_000_000
# detect_format's order (tapeflow.signals.detect): the L3 detectors' rows merged into the rest
ORDER = [("venue", "ascending"), ("symbol", "ascending"), ("ts_event_ns", "ascending"), ("kind", "ascending")]


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
    grid_ns, levels = grid_and_levels(thresholds)
    found: dict[Target, pa.Table] = {}
    hours: dict[Target, float] = {}
    store = BaselineStore(lake / STORE_DIR)
    baseline: dict[Target, dict[str, Any]] = {}
    for t in sorted(wanted):  # date order: a backfill's day finds the days before it in the store
        trades, snaps, events = day_inputs(lake, t, grid_ns, levels)
        history = None
        if events.num_rows:
            history = institutional_history(lake, t, thresholds, store, grid_ns=grid_ns, levels=levels)
            baseline[t] = history.describe(store)
        else:
            baseline[t] = {"earlier_days": 0,
                           "reason": "no order events: institutional pressure needs order ids"}
        mine = {(t.venue, t.symbol): history.baselines} if history is not None else None
        found[t] = concat(SIGNAL, [detect_tables(trades, snaps, thresholds, order_ids=instruments_of(events)),
                                   *detect_orders(events, snaps, thresholds, baselines=mine)]).sort_by(ORDER)
        if history is not None:
            save_day(store, history)
        ts = trades.column("ts_event_ns")
        hours[t] = (pc.max(ts).as_py() - pc.min(ts).as_py()) / _HOUR_NS if trades.num_rows else 0.0
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
