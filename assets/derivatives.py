"""Group ``derived``: the derived metrics of the derivatives datasets (basis, open-interest change,
liquidation clusters, insurance-fund stress levels), per instrument-day over the lake, by the
definition the live flow's stages use (``tapeflow.derivatives.live_derived``; docs/derivatives.md),
and their ``signal`` rows (``tapeflow.derivatives.derived_signals``). Each derived dataset is checked
by its quality suite (blocking asset checks, ``assets.checks``): the stress rows by
``insurance_stress`` (checks named as the suite's), the basis, open-interest-change and cluster rows
by ``derivative_basis``, ``open_interest_change`` and ``liquidation_clusters`` (checks ``basis_*``,
``oi_change_*``, ``clusters_*``; the clusters' members are recounted in the day's liquidations), its
``derivatives/1`` signal rows by ``derivative_signals`` (``signals_*``)."""

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    multi_asset,
)

from assets import checks, common
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, targets
from assets.resources import TapeflowResource
from quality.plan import Plan
from tapeflow.batch.targets import Target
from tapeflow.derivatives.derived import insurance_stress
from tapeflow.derivatives.derived_config import StageThresholds
from tapeflow.derivatives.derived_signals import NAME, SCOPE, STRESS, derived_signals
from tapeflow.derivatives.live_clusters import batch_clusters
from tapeflow.derivatives.live_derived import DerivedConfig, batch_derived
from tapeflow.derivatives.live_stress import stress_record
from tapeflow.schemas.derivatives import (
    DERIVATIVE_BASIS,
    INDEX_PRICE,
    INSURANCE_FUND,
    LIQUIDATION,
    LIQUIDATION_CLUSTER,
    MARK_PRICE,
    OPEN_INTEREST,
    OPEN_INTEREST_CHANGE,
)
from tapeflow.schemas.records import INSURANCE_STRESS, SIGNAL
from tapeflow.signals.config import Thresholds, config_path, load

CONFIG = DerivedConfig()  # 1 s grid, 10 s staleness, 5 min change window: the live flow's defaults
# the cluster and insurance-stress thresholds: the signals thresholds file's (derived_config)


_DOC = ("Basis (mark vs index) and open-interest change on a 1 s grid from the instrument-day's mark, "
        "index and open-interest rows in the lake (the grid of the day's rows alone), its liquidation "
        "clusters and its insurance-fund stress levels (the partition whose symbol is the fund's name); "
        "the signals of all these (derivatives/1 rows of the day's signal partition, the other "
        "detectors' rows kept).")


@multi_asset(
    specs=[AssetSpec(
        "derivatives_derived", group_name="derived",
        # after the day's ingest: a day that failed a blocking ingest check is derived no further (the
        # rule of every derived asset), though its rows come from the live flow or `tapeflow derivatives`
        # and after the detectors' `signals`, whose partition its own signal rows join (docs/derivatives.md)
        deps=["trades", "signals"], kinds={"parquet"}, description=_DOC,
        metadata={"lake_datasets": [DERIVATIVE_BASIS.name, OPEN_INTEREST_CHANGE.name,
                                    LIQUIDATION_CLUSTER.name, INSURANCE_STRESS.name, SIGNAL.name],
                  "interval": CONFIG.interval, "max_staleness_ns": CONFIG.max_staleness_ns,
                  "window_ns": CONFIG.window_ns})],
    check_specs=checks.specs("derivatives_derived"),  # the suites of the four derived datasets and signals
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=True,  # a day without funds (liquidations...) has no row to check (Dagster: Skipped)
)
def derivatives_derived(context: AssetExecutionContext,
                        tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """The derived derivatives datasets of each instrument-day, and their signals (``_DOC``)."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    build = common.selected(context, "derivatives_derived")  # else a run of its checks alone
    thresholds = load(config_path(tapeflow.settings()))
    StageThresholds(thresholds).check()  # a bad stress / cluster threshold: one clear error up front
    plans: dict[str, dict[Target, Plan]] = {}
    for t in wanted:
        rows = _derive(context, lake, t, thresholds) if build else _stored(lake, t)
        for key, (table, inputs) in rows.items():
            # a day with rows of the dataset (a day with funds, with clusters...) is checked
            if table.num_rows and checks.selected(context, key):
                plans.setdefault(key, {})[t] = checks.plan(key, table, lake, t, inputs=inputs)
    if build:
        yield MaterializeResult(asset_key="derivatives_derived", metadata=common.run_metadata(wanted))
    # a check no partition could evaluate (no fund among them) yields nothing: Dagster shows it skipped
    yield from checks.finish_all(plans, lake, context=context)


_KEYS = {INSURANCE_STRESS.name: "derivatives_derived", DERIVATIVE_BASIS.name: "derivatives_derived.basis",
         OPEN_INTEREST_CHANGE.name: "derivatives_derived.oi_change",
         LIQUIDATION_CLUSTER.name: "derivatives_derived.clusters", SIGNAL.name: "derivatives_derived.signals"}
Checked = dict[str, tuple[pa.Table, dict[str, pa.Table] | None]]


def _stored(lake: Path, t: Target) -> Checked:
    """The stored derived rows of one instrument-day (a run of the checks alone)."""
    out: Checked = {}
    for record in (INSURANCE_STRESS, DERIVATIVE_BASIS, OPEN_INTEREST_CHANGE, LIQUIDATION_CLUSTER):
        out[_KEYS[record.name]] = (common.read(record, lake, [t])[t], None)
    out[_KEYS[LIQUIDATION_CLUSTER.name]] = (out[_KEYS[LIQUIDATION_CLUSTER.name]][0],
                                            {LIQUIDATION.name: common.read(LIQUIDATION, lake, [t])[t]})
    signals = common.read(SIGNAL, lake, [t])[t]  # the day's partition: this producer's rows only
    out[_KEYS[SIGNAL.name]] = (signals.filter(pc.equal(signals.column("detector"), NAME)), None)
    return out


def _derive(context: AssetExecutionContext, lake: Path, t: Target, thresholds: Thresholds) -> Checked:
    """Write one instrument-day's derived datasets and signals; their rows (to be checked)."""
    stages = StageThresholds(thresholds)  # the stress / cluster thresholds, as the live step reads them
    inputs = {r.name: common.read(r, lake, [t])[t] for r in (MARK_PRICE, INDEX_PRICE, OPEN_INTEREST)}
    out = batch_derived({k: v for k, v in inputs.items() if v.num_rows}, CONFIG)
    basis = out.get(DERIVATIVE_BASIS.name, DERIVATIVE_BASIS.empty_table())
    change = out.get(OPEN_INTEREST_CHANGE.name, OPEN_INTEREST_CHANGE.empty_table())
    writes = common.write(DERIVATIVE_BASIS, {t: basis}, lake, [t])
    writes += common.write(OPEN_INTEREST_CHANGE, {t: change}, lake, [t])
    liquidations = common.read(LIQUIDATION, lake, [t])[t]
    clusters = batch_clusters(liquidations, stages.clusters)
    writes += common.write(LIQUIDATION_CLUSTER, {t: clusters}, lake, [t])
    stress = insurance_stress(common.read(INSURANCE_FUND, lake, [t])[t], stages.stress)
    stress_rows = stress_record(stress)
    writes += common.write(INSURANCE_STRESS, {t: stress_rows}, lake, [t])
    found, _ = derived_signals({DERIVATIVE_BASIS.name: basis, OPEN_INTEREST_CHANGE.name: change,
                                LIQUIDATION_CLUSTER.name: clusters, STRESS: stress}, thresholds)
    # only its own (derivatives/1) rows of the partition: the detectors' rows stay (one atomic swap)
    writes += common.write(SIGNAL, {t: found}, lake, [t], scope=SCOPE)
    common.report(context, "derivatives_derived", t, basis, writes,
                  extra={"open_interest_change_rows": change.num_rows,
                         "liquidation_cluster_rows": clusters.num_rows,
                         "insurance_stress_rows": stress_rows.num_rows,
                         "signal_rows": found.num_rows})
    return {_KEYS[INSURANCE_STRESS.name]: (stress_rows, None), _KEYS[DERIVATIVE_BASIS.name]: (basis, None),
            _KEYS[OPEN_INTEREST_CHANGE.name]: (change, None),
            _KEYS[LIQUIDATION_CLUSTER.name]: (clusters, {LIQUIDATION.name: liquidations}),
            _KEYS[SIGNAL.name]: (found, None)}
