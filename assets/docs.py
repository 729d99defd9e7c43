"""Group ``quality``: the Data Docs overview of the run's instrument-days.

Each checked asset already wrote its instrument-day's page (so a day that failed a check has one);
this asset, last in the chain, sums the suite results up and writes ``<lake>/_data_docs/index.html``
linking every instrument-day page in the lake.
"""

import html
import os
from pathlib import Path

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from assets import checks
from assets.partitions import DAY_BY_INSTRUMENT, targets
from assets.resources import TapeflowResource


@asset(
    group_name="quality",
    deps=["features", "bars", "daily_baselines", "clickhouse_tables"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"html"},
)
def data_docs(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """Quality results of the run's instrument-days, and the lake's Data Docs index page."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    kept = checks.load(lake, wanted)
    pages = checks.publish(lake, wanted)
    index = write_index(lake)
    failed = sorted(f"{t} {asset}: {c.name} ({c.unexpected_count})" for (t, asset), r in kept.items()
                    for c in r.failed)
    return MaterializeResult(metadata={
        "suites": len(kept),
        "checks": sum(len(r.checks) for r in kept.values()),
        "checks_failed": MetadataValue.json(failed),
        "pages": MetadataValue.json([str(p) for p in pages]),
        "index": MetadataValue.path(str(index)),
    })


def write_index(lake: Path) -> Path:
    """``<lake>/_data_docs/index.html``: every instrument-day page with its failed-check count."""
    kept = checks.load(lake)
    days = sorted({t for t, _ in kept})
    rows = []
    for t in days:
        failed = sum(len(r.failed) for (target, _), r in kept.items() if target == t)
        link = checks.docs_dir(lake, t).relative_to(Path(lake) / checks.DOCS_DIR) / "index.html"
        state = f'<span class="fail">{failed} failed</span>' if failed else '<span class="pass">passed</span>'
        rows.append(f'<tr><td>{html.escape(t.date)}</td><td>{html.escape(t.venue)}</td>'
                    f'<td><a href="{html.escape(str(link))}">{html.escape(t.symbol)}</a></td>'
                    f'<td>{state}</td></tr>')
    page = ("<!doctype html><meta charset=utf-8><title>tapeflow data quality</title>"
            "<style>body{font:14px system-ui,sans-serif;margin:24px}td,th{border:1px solid #ccd;"
            "padding:4px 8px}table{border-collapse:collapse}.pass{color:#146c2e}.fail{color:#b3261e}</style>"
            "<h1>tapeflow data quality</h1><table>"
            "<tr><th>date</th><th>venue</th><th>symbol</th><th>checks</th>"
            f"</tr>{''.join(rows)}</table>")
    out = Path(lake) / checks.DOCS_DIR / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".index.html.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
