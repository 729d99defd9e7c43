"""The same facts asked of Dagster's GraphQL API, the one the UI renders, over a code location
loaded the way ``dagster dev`` loads it (``dagster_project/definitions.py``, out of process).

A two-instrument simulated day materialized as one run, launched by the landing sensor's request:
each partition's materialization, the unjudgeable checks' status, the run's launcher tag and the
number of partitions the asset shows.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from tests.dagster.conftest import SIM_DAY, copy_landing, materialize, sim_lines

SYMBOLS = ("SIM-BTCUSDT", "SIM-ETHUSDT")

_QUERY = """
query UI($trades: AssetKeyInput!, $partitions: [String!]) {
  runsOrError { ... on Runs { results { runId tags { key value } } } }
  assetNodeOrError(assetKey: $trades) {
    ... on AssetNode { partitionStats { numMaterialized numPartitions }
                       assetMaterializations(partitions: $partitions) {
                         partition metadataEntries { label ... on IntMetadataEntry { intValue } } } }
  }
  baseline: assetCheckExecutions(assetKey: $trades, checkName: "rows_vs_baseline", limit: 1) { status }
  schema: assetCheckExecutions(assetKey: $trades, checkName: "schema", limit: 1) { status }
}
"""


@pytest.fixture(scope="module")
def ui(sim_files: Path, tmp_path_factory: pytest.TempPathFactory):
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    from dagster_project.sensors import landing_sensor

    root = tmp_path_factory.mktemp("graphql")
    dep = copy_landing(sim_files, root)
    env = {"TAPEFLOW_LAKE": str(dep.lake), "TAPEFLOW_CLICKHOUSE": dep.dsn,
           "TAPEFLOW_LANDING": str(dep.landing), "TAPEFLOW_JOURNAL": str(root / "journal")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # what `make ui` sets; the code server reads it when it loads
    try:
        with dg.instance_for_test() as instance:
            tick = landing_sensor(dg.build_sensor_context(instance=instance, resources=dep.resources()))
            [add] = tick.dynamic_partitions_requests
            instance.add_dynamic_partitions("instruments", list(add.partition_keys))
            [request] = tick.run_requests
            assert materialize(dep, instance, tags=dict(request.tags)).success
            definitions = str(Path(__file__).parents[2] / "dagster_project" / "definitions.py")
            with define_out_of_process_context(definitions, "defs", instance) as context:
                keys = [f"{SIM_DAY}|sim.{s}" for s in SYMBOLS]
                result = execute_dagster_graphql(context, _QUERY, variables={
                    "trades": {"path": ["trades"]}, "partitions": keys})
                yield dep, result.data
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_each_partition_shows_its_own_row_count(ui) -> None:
    dep, data = ui
    shown = {m["partition"]: {e["label"]: e.get("intValue") for e in m["metadataEntries"]}
             for m in data["assetNodeOrError"]["assetMaterializations"]}
    for symbol in SYMBOLS:
        kinds = Counter(r[3] for r in sim_lines(dep.landing / "sim" / symbol / f"{SIM_DAY}.events.csv.gz"))
        assert shown[f"{SIM_DAY}|sim.{symbol}"]["dagster/row_count"] == kinds["E"] + kinds["H"]


def test_unjudgeable_checks_show_skipped_and_judged_ones_succeeded(ui) -> None:
    _, data = ui
    assert [e["status"] for e in data["baseline"]] == ["SKIPPED"]
    assert [e["status"] for e in data["schema"]] == ["SUCCEEDED"]


def test_the_run_list_shows_the_sensor_that_launched_the_run(ui) -> None:
    _, data = ui
    [run] = data["runsOrError"]["results"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/sensor_name"] == "landing_sensor"


def test_the_asset_counts_partitions_from_the_datas_first_day(ui) -> None:
    _, data = ui
    stats = data["assetNodeOrError"]["partitionStats"]
    days = (dt.datetime.now(dt.UTC).date() - dt.date.fromisoformat(SIM_DAY)).days + 1
    assert stats == {"numMaterialized": 2, "numPartitions": days * len(SYMBOLS)}
