"""Group ``derived``: the derived metrics of the derivatives datasets (basis, open-interest change),
per instrument-day over the lake, by the definition the live flow's stage uses
(``tapeflow.derivatives.live_derived``; docs/derivatives.md)."""

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, asset

from assets import common
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, targets
from assets.resources import TapeflowResource
from tapeflow.derivatives.live_clusters import ClusterConfig, batch_clusters
from tapeflow.derivatives.live_derived import DerivedConfig, batch_derived
from tapeflow.schemas.derivatives import (
    DERIVATIVE_BASIS,
    INDEX_PRICE,
    LIQUIDATION,
    LIQUIDATION_CLUSTER,
    MARK_PRICE,
    OPEN_INTEREST,
    OPEN_INTEREST_CHANGE,
)

CONFIG = DerivedConfig()  # 1 s grid, 10 s staleness, 5 min change window: the live flow's defaults
CLUSTERS = ClusterConfig()  # chains of gaps under 5 s, clusters of at least 100,000 quote units


@asset(
    group_name="derived",
    # after the day's ingest: a day that failed a blocking ingest check is derived no further (the
    # rule of every derived asset), though its rows come from the live flow or `tapeflow derivatives`
    deps=["trades"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"parquet"},
    metadata={"lake_datasets": [DERIVATIVE_BASIS.name, OPEN_INTEREST_CHANGE.name, LIQUIDATION_CLUSTER.name],
              "interval": CONFIG.interval, "max_staleness_ns": CONFIG.max_staleness_ns,
              "window_ns": CONFIG.window_ns},
)
def derivatives_derived(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """Basis (mark vs index) and open-interest change on a 1 s grid from the instrument-day's mark,
    index and open-interest rows in the lake (the grid of the day's rows alone), and its liquidation
    clusters."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    for t in wanted:
        inputs = {r.name: common.read(r, lake, [t])[t] for r in (MARK_PRICE, INDEX_PRICE, OPEN_INTEREST)}
        out = batch_derived({k: v for k, v in inputs.items() if v.num_rows}, CONFIG)
        basis = out.get(DERIVATIVE_BASIS.name, DERIVATIVE_BASIS.empty_table())
        change = out.get(OPEN_INTEREST_CHANGE.name, OPEN_INTEREST_CHANGE.empty_table())
        writes = common.write(DERIVATIVE_BASIS, {t: basis}, lake, [t])
        writes += common.write(OPEN_INTEREST_CHANGE, {t: change}, lake, [t])
        clusters = batch_clusters(common.read(LIQUIDATION, lake, [t])[t], CLUSTERS)
        writes += common.write(LIQUIDATION_CLUSTER, {t: clusters}, lake, [t])
        common.report(context, "derivatives_derived", t, basis, writes,
                      extra={"open_interest_change_rows": change.num_rows,
                             "liquidation_cluster_rows": clusters.num_rows})
    return MaterializeResult(metadata=common.run_metadata(wanted))
