"""Group ``quality``: the Data Docs pages of the run's instrument-days and the lake's index.

A step whose check failed already wrote that day's page (nothing after it runs); this asset, last
in the chain, writes every run day's page (``quality.store.publish``) and
``<lake>/_data_docs/index.html`` linking every instrument-day page in the lake.
"""

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from assets.partitions import DAY_BY_INSTRUMENT, target_key, targets
from assets.resources import TapeflowResource
from quality import store


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
    index = store.write_index(lake)
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
