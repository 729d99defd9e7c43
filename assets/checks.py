"""Quality suites (``quality.run_suite``, Great Expectations inside) as blocking Dagster asset checks.

Every check of a dataset's suite is declared up front (``quality.check_names``) on the asset that
writes the dataset, and evaluated in the same step right after the write, so a failed check
stops everything downstream. Integrity checks (schema, codes, ranges, crossed books, sequence
gaps, clock skew, ...) fail with ERROR severity and block; statistical ones (against the trailing
baseline, stale intervals, trades outside the book) fail with WARN severity: visible, not blocking.

Results are kept as JSON under ``<lake>/_quality/`` and rendered as GX Data Docs (static HTML)
under ``<lake>/_data_docs/`` by every step, so a day whose check failed is documented too.
Baseline checks compare the day with the same dataset's previous 20 days in the lake.
"""

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

import quality
from assets.partitions import Target, instrument_key, parse_instrument_key
from quality import Baseline, CheckResult, SuiteResult
from tapeflow.derived.profiles import PROFILE
from tapeflow.schemas import RecordType
from tapeflow.storage import lake as lake_store

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
}
# statistical checks: a failure warns, it does not stop the pipeline
WARN_ONLY = frozenset({"rows_vs_baseline", "volume_vs_baseline", "stale_intervals", "trade_inside_book"})
# The rebuilt BBO carries the update id of the book event it follows. A resync from a REST snapshot
# steps back to the snapshot's id after the diffs that arrived before it (Binance: -3,262 on the
# USD-M capture); those diffs' rows are flagged F_MAYBE_BAD_BOOK and the quotes suite leaves them
# out, so a normal re-anchor passes. The check still only warns: a snapshot taken while synced (a
# journal's day roll) re-anchors unflagged and may step back to an id older than the last diff.
WARN_ONLY_BY_ASSET: dict[str, frozenset[str]] = {"bbo": frozenset({"sequence_monotonic"})}
RESULTS_DIR = "_quality"
DOCS_DIR = "_data_docs"
_EXAMPLES = 5
BASELINE_DAYS = 20


def specs(asset: str) -> list[AssetCheckSpec]:
    """One blocking check per check of the asset's suite."""
    suite = SUITES[asset]
    return [
        AssetCheckSpec(name, asset=asset, blocking=True,
                       description=f"{suite} suite: {name}{' (warns only)' if _warns(asset, name) else ''}")
        for name in quality.check_names(suite)
    ]


def _warns(asset: str, check: str) -> bool:
    return check in WARN_ONLY or check in WARN_ONLY_BY_ASSET.get(asset, frozenset())


def evaluate(asset: str, tables: Mapping[Target, pa.Table], lake: Path, *,
             book: Mapping[Target, pa.Table] | None = None,
             record: RecordType | None = None,
             trades: Mapping[Target, pa.Table] | None = None) -> list[AssetCheckResult]:
    """Run the asset's suite on each instrument-day, keep the results, return one result per check.

    A run covering several instrument-days (a single-run backfill) passes a check only where
    every day passes it; counts add up and the examples name their day. With ``record`` (the
    dataset the asset writes), the baseline checks compare the day with the rows of the
    ``BASELINE_DAYS`` days before it in the lake, and trades' volume with their daily profiles.
    With ``trades`` (the day's trades), the session opens at the day's first trade: on venues
    with an opening auction, ``crossed_book`` counts pre-open crossings without failing on them.
    """
    suite = SUITES[asset]
    runs: dict[Target, SuiteResult] = {}
    for t, table in sorted(tables.items()):
        base = baseline(lake, record, t) if record is not None else None
        opens = quality.session_opens(trades[t], [t.symbol]) if trades is not None and t in trades else None
        runs[t] = quality.run_suite(suite, table, partition_day=t.date, baseline=base,
                                    book=book.get(t) if book is not None else None, session_open_ns=opens)
        save(lake, asset, t, runs[t])
    publish(lake, tables.keys())
    return [_combine(asset, name, runs) for name in quality.check_names(suite)]


def baseline(lake: Path, record: RecordType, t: Target) -> Baseline:
    """Rows per day of ``record`` over the ``BASELINE_DAYS`` days before ``t`` (days with a partition),
    and traded volume per day from the daily profiles of those days."""
    rows, volumes = [], []
    day = t
    for _ in range(BASELINE_DAYS):
        day = day.previous()
        count = lake_store.partition_rows(record, lake, day.venue, day.symbol, day.date)
        if count is not None:
            rows.append(count)
            profile = lake_store.read(PROFILE, lake, venue=day.venue, symbol=day.symbol, date=day.date)
            if profile.num_rows:
                volumes.append(int(profile.column("volume_nanos")[0].as_py()))
    return Baseline(row_counts=rows, volumes_nanos=volumes if len(volumes) == len(rows) else [])


def _combine(asset: str, name: str, runs: Mapping[Target, SuiteResult]) -> AssetCheckResult:
    parts = [(t, r.check(name)) for t, r in runs.items()]
    failed = [(t, c) for t, c in parts if not c.passed]
    examples = [{"partition": str(t), **e} for t, c in failed for e in c.examples][:_EXAMPLES]
    meta: dict[str, Any] = {
        "unexpected_count": sum(c.unexpected_count for _, c in parts),
        "element_count": sum(c.element_count for _, c in parts),
        "partitions_checked": len(parts),
        "partitions_failed": MetadataValue.json([str(t) for t, _ in failed]),
        "examples": MetadataValue.json(_plain(examples)),
    }
    if parts:
        meta["description"] = parts[0][1].description
        meta["details"] = MetadataValue.json(_plain(failed[0][1].details if failed else parts[0][1].details))
    skipped = {str(t): c.details["skipped"] for t, c in parts if "skipped" in c.details}
    if skipped:
        # a baseline check without history passes as skipped: say why, per instrument-day
        meta["skipped"] = MetadataValue.json(skipped)
    if any("pre_open_crossed" in c.details for _, c in parts):
        meta["pre_open_crossed"] = sum(int(c.details.get("pre_open_crossed", 0)) for _, c in parts)
    severity = AssetCheckSeverity.WARN if _warns(asset, name) else AssetCheckSeverity.ERROR
    return AssetCheckResult(asset_key=asset, check_name=name, passed=not failed, severity=severity,
                            metadata=meta)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _result_path(lake: Path, asset: str, t: Target) -> Path:
    return Path(lake) / RESULTS_DIR / f"date={t.date}" / instrument_key(t.venue, t.symbol) / f"{asset}.json"


def save(lake: Path, asset: str, t: Target, result: SuiteResult) -> Path:
    """Keep one suite result as JSON (replaced on re-materialization)."""
    path = _result_path(lake, asset, t)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_plain(dataclasses.asdict(result)), indent=1))
    os.replace(tmp, path)
    return path


def load(lake: Path, targets: Iterable[Target] | None = None) -> dict[tuple[Target, str], SuiteResult]:
    """Suite results kept under the lake, by (instrument-day, asset); every one when ``targets`` is None."""
    root = Path(lake) / RESULTS_DIR
    wanted = None if targets is None else {_result_path(lake, "x", t).parent for t in targets}
    out = {}
    for path in sorted(root.glob("date=*/*/*.json")):
        if wanted is not None and path.parent not in wanted:
            continue
        venue, symbol = parse_instrument_key(path.parent.name)
        raw = json.loads(path.read_text())
        checks = [CheckResult(**c) for c in raw.pop("checks")]
        target = Target(path.parent.parent.name[5:], venue, symbol)
        out[(target, path.stem)] = SuiteResult(**raw, checks=checks)
    return out


def publish(lake: Path, targets: Iterable[Target]) -> list[Path]:
    """Render each instrument-day's kept results as a GX Data Docs page (static HTML, opens offline).

    Pages are ``<lake>/_data_docs/date=<day>/<instrument key>/index.html``, one per instrument-day,
    holding every suite run on it so far (assets named with their suite).
    """
    kept = load(lake, targets)
    pages = []
    for t in sorted(set(targets)):
        suites = [dataclasses.replace(r, dataset=f"{asset} ({r.dataset})")
                  for (target, asset), r in sorted(kept.items(), key=lambda kv: kv[0][1]) if target == t]
        if suites:
            title = f"tapeflow data quality: {t.venue} {t.symbol} {t.date}"
            pages.append(quality.write_data_docs(suites, docs_dir(lake, t), title=title))
    return pages


def docs_dir(lake: Path, t: Target) -> Path:
    """The Data Docs folder of one instrument-day."""
    return Path(lake) / DOCS_DIR / f"date={t.date}" / instrument_key(t.venue, t.symbol)
