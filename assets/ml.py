"""Group ``ml``: each instrument-day's 1 s book snapshots and trades -> ``training_example`` rows.

Wiring only: :func:`tapeflow.ml.training_examples` builds the features and labels (docs/models.md),
:func:`tapeflow.ml.rows.example_rows` turns them into the record. Lineage goes into the metadata:
the feature schema hash, the dataset parameters and the source partitions read.
"""

import json
from dataclasses import asdict

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, asset

from assets import common
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, target_key, targets
from assets.resources import TapeflowResource
from tapeflow.ml import ExampleParams, feature_schema_hash
from tapeflow.ml import training_examples as build_examples
from tapeflow.ml.rows import example_rows
from tapeflow.schemas.ml import HORIZONS_S, NO_LABEL, TRAINING_EXAMPLE
from tapeflow.schemas.records import BOOK_SNAPSHOT, TRADE

PARAMS = ExampleParams()


def _class_shares(rows: pa.Table) -> dict[str, dict[str, float]]:
    out = {}
    for h in HORIZONS_S:
        labels = rows.column(f"label_{h}s")
        known = labels.filter(pc.not_equal(labels, NO_LABEL))
        n = max(len(known), 1)
        out[f"{h}s"] = {name: round(pc.sum(pc.equal(known, v)).as_py() / n, 4) if len(known) else 0.0
                        for name, v in (("down", -1), ("flat", 0), ("up", 1))}
    return out


@asset(
    group_name="ml",
    deps=["book_snapshots", "trades"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    kinds={"parquet"},
    metadata={"lake_dataset": TRAINING_EXAMPLE.name, "feature_schema_hash": feature_schema_hash(PARAMS),
              "feature_params": json.dumps(asdict(PARAMS), sort_keys=True)},
)
def training_examples(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """Causal book and flow features with up/flat/down labels at 1, 10 and 60 s on the 1 s grid."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    for t in wanted:
        snaps = common.read(BOOK_SNAPSHOT, lake, [t])[t].sort_by("ts_event_ns")
        # the builder assigns trades to grid instants by arrival time, so it takes them in that order
        trades = common.read(TRADE, lake, [t])[t].sort_by("ts_recv_ns")
        sources = [f"book_snapshots/{target_key(t)}", f"trades/{target_key(t)}"]
        if snaps.num_rows:
            examples = build_examples(snaps, trades, PARAMS, source=",".join(sources))
            rows = example_rows(examples, t.venue, t.symbol)
        else:
            rows = TRAINING_EXAMPLE.empty_table()
        writes = common.write(TRAINING_EXAMPLE, {t: rows}, lake, [t])
        common.report(context, "training_examples", t, rows, writes, extra={
            "feature_schema_hash": feature_schema_hash(PARAMS), "source_partitions": sources,
            "source_rows": {"book_snapshots": snaps.num_rows, "trades": trades.num_rows},
            "class_shares": _class_shares(rows)})
    return MaterializeResult(metadata=common.run_metadata(wanted))
