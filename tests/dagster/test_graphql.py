"""The same facts asked of Dagster's GraphQL API, the one the UI renders, over a code location
loaded the way ``dagster dev`` loads it (``dagster_project/definitions.py``, out of process).

A two-instrument simulated day materialized as one run, launched by the landing sensor's request:
each partition's materialization, the unjudgeable checks' status, the run's launcher tag and the
number of partitions the asset shows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tests.dagster.conftest import SIM_DAY, Deployment, built_once, open_instance, sim_lines

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


@pytest.fixture(scope="session")
def ui(sensor_day: Deployment, tmp_path_factory: pytest.TempPathFactory) -> tuple[Deployment, dict]:
    """The session's sensor-launched run (tests/dagster/conftest.py) asked through GraphQL once (the
    code server costs seconds): the answer is kept as JSON for every test of the module, on either
    xdist worker."""
    out = built_once(tmp_path_factory, "graphql", lambda folder: _ask(sensor_day, folder))
    return sensor_day, json.loads((out / "data.json").read_text())


def _ask(dep: Deployment, out: Path) -> None:
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    env = {"TAPEFLOW_LAKE": str(dep.lake), "TAPEFLOW_CLICKHOUSE": dep.dsn,
           "TAPEFLOW_LANDING": str(dep.landing), "TAPEFLOW_JOURNAL": str(dep.root / "journal"),
           "DAGSTER_HOME": str(dep.root / "dagster_home")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # what `make ui` sets; the code server reads it when it loads
    try:
        with open_instance(dep) as instance:
            definitions = str(Path(__file__).parents[2] / "dagster_project" / "definitions.py")
            with define_out_of_process_context(definitions, "defs", instance) as context:
                keys = [f"{SIM_DAY}|sim.{s}" for s in SYMBOLS]
                result = execute_dagster_graphql(context, _QUERY, variables={
                    "trades": {"path": ["trades"]}, "partitions": keys})
        (out / "data.json").write_text(json.dumps(result.data))
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
