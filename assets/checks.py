"""Quality suites (``quality``, Great Expectations inside) as blocking Dagster asset checks.

Every check of a dataset's suite is declared up front (``quality.check_names``) on the asset that
writes the dataset, and evaluated in the same step right after the write, so a failed check
stops everything downstream. Integrity checks (schema, codes, ranges, crossed books, sequence
gaps, clock skew, ...) fail with ERROR severity and block; statistical ones (against the trailing
baseline, stale intervals, trades outside the book) fail with WARN severity: visible, not blocking.

A step plans each instrument-day's suite as it writes the day (:func:`plan`: exact counts and
witness rows, the table is not kept) and validates all of them at the end in one Great
Expectations run per dataset and frame (:func:`finish`). A check that no partition could evaluate
(no baseline yet, no book) yields no result: Dagster shows it **Skipped** (planned, not
executed) and logs that no result came; one evaluated on some partitions only says which it
skipped, and why, in its description.

Results are kept as JSON under ``<lake>/_quality/`` (``quality.store``); a day whose check failed
gets its Data Docs page under ``<lake>/_data_docs/`` from that step (what follows it will not run),
every other day from the ``data_docs`` asset at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MetadataValue,
    get_dagster_logger,
)

import quality
from quality import Baseline, SuiteResult
from quality.plan import Plan
from quality.slices import SlicedPlanner
from quality.store import DOCS_DIR, RESULTS_DIR, docs_dir, load, publish, save
from tapeflow.batch import history
from tapeflow.batch.targets import Target
from tapeflow.schemas import RecordType

__all__ = ["DOCS_DIR", "MORE_SUITES", "RESULTS_DIR", "SUITES", "WARN_ONLY", "baseline", "docs_dir",
           "evaluate", "finish", "finish_all", "finish_planner", "load", "plan", "planner", "publish",
           "specs"]

# asset -> quality suite
SUITES: dict[str, str] = {
    "trades": "trades",
    "book_deltas": "book_deltas",
    "order_events": "order_events",
    "venue_quotes": "quotes",
    "book_snapshots": "book_snapshots",
    "bbo": "quotes",
    "bars": "bars",
    "features": "metrics",
    "option_tickers": "option_tickers",  # group options: planned per underlying-day (assets/options.py)
    "option_surfaces": "option_surfaces",
    "derivatives_derived": "insurance_stress",  # the stress rows it writes (assets/derivatives.py)
}
# asset -> {prefix: suite}: the suites of further datasets the asset writes. An asset's check names
# are unique, so these checks are named ``<prefix>_<check>``; their plans are keyed ``asset.prefix``
# (:func:`plan`, :func:`finish`) and kept under that name.
MORE_SUITES: dict[str, dict[str, str]] = {
    "derivatives_derived": {"basis": "derivative_basis", "oi_change": "open_interest_change",
                            "clusters": "liquidation_clusters", "signals": "derivative_signals"},
}
# statistical checks: a failure warns, it does not stop the pipeline
WARN_ONLY = frozenset({"rows_vs_baseline", "volume_vs_baseline", "stale_intervals", "trade_inside_book"})
# The rebuilt BBO carries the update id of the book event it follows. A resync from a REST snapshot
# steps back to the snapshot's id after the diffs that arrived before it (Binance: -3,262 on the
# USD-M capture); those diffs' rows are flagged F_MAYBE_BAD_BOOK and the quotes suite leaves them
# out, so a normal re-anchor passes. The check still only warns: a snapshot taken while synced (a
# journal's day roll) re-anchors unflagged and may step back to an id older than the last diff.
WARN_ONLY_BY_ASSET: dict[str, frozenset[str]] = {"bbo": frozenset({"sequence_monotonic"})}
_EXAMPLES = 5
_LOG = get_dagster_logger()


def specs(asset: str) -> list[AssetCheckSpec]:
    """One blocking check per check of the asset's suites."""
    return [
        AssetCheckSpec(name, asset=asset, blocking=True,
                       description=f"{suite} suite: {check}{' (warns only)' if _warns(asset, check) else ''}")
        for key in (asset, *(f"{asset}.{p}" for p in MORE_SUITES.get(asset, {})))
        for suite, check, name in _named(key)
    ]


def _split(key: str) -> tuple[str, str]:
    asset, _, prefix = key.partition(".")
    return asset, prefix


def _named(key: str) -> list[tuple[str, str, str]]:
    """(suite, check, the asset check's name) of each check of a plan key (``asset[.prefix]``)."""
    asset, prefix = _split(key)
    suite = MORE_SUITES[asset][prefix] if prefix else SUITES[asset]
    return [(suite, c, f"{prefix}_{c}" if prefix else c) for c in quality.check_names(suite)]


def _warns(asset: str, check: str) -> bool:
    return check in WARN_ONLY or check in WARN_ONLY_BY_ASSET.get(asset, frozenset())


def plan(asset: str, table: pa.Table, lake: Path, t: Target, *, book: pa.Table | None = None,
         record: RecordType | None = None, trades: pa.Table | None = None,
         inputs: Mapping[str, pa.Table] | None = None) -> Plan:
    """Plan the asset's suite on one instrument-day (see :func:`evaluate` for the arguments);
    ``asset.prefix`` plans one of its :data:`MORE_SUITES`, ``inputs`` the rows it was derived from."""
    base = baseline(lake, record, t) if record is not None else None
    opens = quality.session_opens(trades, [t.symbol]) if trades is not None else None
    return quality.plan_suite(_named(asset)[0][0], table, partition_day=t.date, baseline=base, book=book,
                              session_open_ns=opens, inputs=inputs)


def planner(asset: str, t: Target) -> SlicedPlanner:
    """A :class:`~quality.slices.SlicedPlanner` for the asset's suite on one instrument-day: feed it
    the day's rows piece by piece as they stream past, then :func:`finish_planner`."""
    return SlicedPlanner(_named(asset)[0][0], partition_day=t.date)


def finish_planner(planner_: SlicedPlanner, lake: Path, t: Target, record: RecordType) -> Plan:
    """The day's plan (as :func:`plan` on the whole day), against the baseline the lake holds now."""
    return planner_.finish(baseline=baseline(lake, record, t))


def selected(context: AssetExecutionContext | None, asset: str) -> bool:
    """Whether this run executes any check of ``asset`` (always, without a context); of the suite
    ``asset.prefix`` only, given such a key."""
    if context is None:
        return True
    name, prefix = _split(asset)
    keys = [k for k in context.selected_asset_check_keys if k.asset_key == AssetKey(name)]
    if not prefix:
        return bool(keys)
    mine = {n for _, _, n in _named(asset)}
    return any(k.name in mine for k in keys)


def finish(asset: str, plans: Mapping[Target, Plan], lake: Path, *,
           context: AssetExecutionContext | None = None) -> list[AssetCheckResult]:
    """Validate the planned instrument-days, keep their results, one result per check.

    A check passes only where every evaluated day passes it; counts add up and the examples name
    their day. A check skipped on every day yields nothing (Dagster: Skipped); with ``context``,
    only the checks the run selected are returned.
    """
    return finish_all({asset: plans}, lake, context=context)


def finish_all(plans: Mapping[str, Mapping[Target, Plan]], lake: Path, *,
               context: AssetExecutionContext | None = None) -> list[AssetCheckResult]:
    """:func:`finish` for several assets of one step, validated together (one GX run for all).

    The Data Docs page of a day with a failed check is written now (downstream steps, the
    ``data_docs`` asset among them, will not run); the ``data_docs`` asset writes the others.
    """
    keys = [(asset, t) for asset, by_target in plans.items() for t in sorted(by_target)]
    if not keys:
        return []
    results = quality.validate_plans([plans[asset][t] for asset, t in keys])
    runs: dict[str, dict[Target, SuiteResult]] = {}
    for (asset, t), result in zip(keys, results, strict=True):
        save(lake, asset, t, result)
        runs.setdefault(asset, {})[t] = result
    publish(lake, sorted({t for (_, t), r in zip(keys, results, strict=True) if not r.passed}))
    out = []
    for key, by_target in runs.items():
        asset, _ = _split(key)
        wanted = None if context is None else {k.name for k in context.selected_asset_check_keys
                                              if k.asset_key == AssetKey(asset)}
        for _, check, name in _named(key):
            if wanted is not None and name not in wanted:
                continue
            result = _combine(asset, check, name, by_target)
            if result is not None:
                out.append(result)
            else:
                why = sorted({str(r.check(check).details.get("skipped")) for r in by_target.values()})
                _LOG.info(f"{asset}.{name}: skipped on every partition of the run ({'; '.join(why)}): "
                          f"no result")
    return out


def evaluate(asset: str, tables: Mapping[Target, pa.Table], lake: Path, *,
             book: Mapping[Target, pa.Table] | None = None,
             record: RecordType | None = None,
             trades: Mapping[Target, pa.Table] | None = None,
             context: AssetExecutionContext | None = None) -> list[AssetCheckResult]:
    """Run the asset's suite on each instrument-day, keep the results, return one result per check.

    With ``record`` (the dataset the asset writes), the baseline checks compare the day with the
    rows of the ``history.WINDOW_DAYS`` days before it in the lake, and trades' volume with their
    daily profiles. With ``trades`` (the day's trades), the session opens at the day's first
    trade: on venues with an opening auction, ``crossed_book`` counts pre-open crossings without
    failing on them. ``book`` gives the trades suite the prevailing quotes. With ``context``, only
    the checks the run selected are evaluated (a subset run).
    """
    if not selected(context, asset):
        return []
    plans = {t: plan(asset, table, lake, t, book=book.get(t) if book is not None else None, record=record,
                     trades=trades.get(t) if trades is not None else None)
             for t, table in tables.items()}
    return finish(asset, plans, lake, context=context)


def baseline(lake: Path, record: RecordType, t: Target) -> Baseline:
    """Rows per day of ``record`` over the window before ``t`` (days with a partition), and traded
    volume per day from the daily profiles of those days."""
    rows, volumes = history.row_counts(lake, record, t)
    return Baseline(row_counts=rows, volumes_nanos=volumes)


def _combine(asset: str, check: str, name: str,
             runs: Mapping[Target, SuiteResult]) -> AssetCheckResult | None:
    parts = [(t, r.check(check)) for t, r in runs.items()]
    skipped = {str(t): c.details["skipped"] for t, c in parts if _skipped(c)}
    judged = [(t, c) for t, c in parts if not _skipped(c)]
    if parts and not judged:
        return None
    failed = [(t, c) for t, c in judged if not c.passed]
    examples = [{"partition": str(t), **e} for t, c in failed for e in c.examples][:_EXAMPLES]
    meta: dict[str, Any] = {
        "unexpected_count": sum(c.unexpected_count for _, c in judged),
        "element_count": sum(c.element_count for _, c in judged),
        "partitions_checked": len(judged),
        "partitions_failed": MetadataValue.json([str(t) for t, _ in failed]),
        "examples": MetadataValue.json(_plain(examples)),
    }
    if judged:
        meta["details"] = MetadataValue.json(_plain(failed[0][1].details if failed else judged[0][1].details))
    if skipped:
        meta["partitions_skipped"] = MetadataValue.json(skipped)
    if any("pre_open_crossed" in c.details for _, c in judged):
        meta["pre_open_crossed"] = sum(int(c.details.get("pre_open_crossed", 0)) for _, c in judged)
    description = parts[0][1].description if parts else ""
    if skipped:
        reasons = sorted(set(skipped.values()))
        description += (f" (evaluated on {len(judged)} of {len(parts)} partitions; skipped on "
                        f"{len(skipped)}: {'; '.join(reasons)})")
    severity = AssetCheckSeverity.WARN if _warns(asset, check) else AssetCheckSeverity.ERROR
    return AssetCheckResult(asset_key=asset, check_name=name, passed=not failed, severity=severity,
                            metadata=meta, description=description or None)


def _skipped(check: quality.CheckResult) -> bool:
    # a check skipped for want of history or a book; missing columns fail instead (passed False)
    return check.passed and "skipped" in check.details


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
