"""Group ``quality``: the Data Docs overview of the run's instrument-days.

Each checked asset already wrote its instrument-day's page (so a day that failed a check has one);
this asset, last in the chain, sums the suite results up and writes ``<lake>/_data_docs/index.html``
linking every instrument-day page in the lake.
"""

import html
import os
from collections import Counter
from pathlib import Path

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from assets.partitions import DAY_BY_INSTRUMENT, target_key, targets
from assets.resources import TapeflowResource
from quality import store
from tapeflow.batch.targets import Target


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
    kept = store.load(lake, wanted)
    pages = {p.parent: p for p in store.publish(lake, wanted)}
    index = write_index(lake)
    for t in wanted:
        mine = {asset: r for (target, asset), r in kept.items() if target == t}
        failed = sorted(f"{asset}: {c.name} ({c.unexpected_count})"
                        for asset, r in mine.items() for c in r.failed)
        page = pages.get(store.docs_dir(lake, t))
        meta = {"suites": len(mine), "checks": sum(len(r.checks) for r in mine.values()),
                "checks_failed": MetadataValue.json(failed)}
        if page is not None:
            meta["page"] = MetadataValue.path(str(page))
        context.add_asset_metadata(meta, partition_key=target_key(t))
    return MaterializeResult(metadata={"index": MetadataValue.path(str(index)),
                                       "partitions_in_run": len(wanted)})


def write_index(lake: Path) -> Path:
    """``<lake>/_data_docs/index.html``: every instrument-day page with its failed-check count."""
    kept = store.load(lake)
    failed_by_day: Counter[Target] = Counter()
    for (t, _), r in kept.items():
        failed_by_day[t] += len(r.failed)
    rows = []
    for t in sorted(failed_by_day):
        failed = failed_by_day[t]
        link = store.docs_dir(lake, t).relative_to(Path(lake) / store.DOCS_DIR) / "index.html"
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
    out = Path(lake) / store.DOCS_DIR / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".index.html.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
