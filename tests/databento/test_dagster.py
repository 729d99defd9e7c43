"""The cost-guarded Databento pull in Dagster, on into the landing sensor, and the gap-repair loop.

Against the local historical API server (real ES MBO) and the local live gateway: the fetch job
lands the requested range, the ledger row is in the lake, in ClickHouse (chdb) and in the run's
metadata, the landing sensor then asks for the day; over budget the run fails with the estimate and
the budget, nothing is landed and the refusal is ledgered; a live outage's gap window becomes one
fetch run whose data, with the live journal, is the whole file again (and only once).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.databento import databento_fetch, databento_gap_repair_sensor, fetch_run_config
from dagster_project.resources import resources
from dagster_project.sensors import landing_sensor
from tapeflow.schemas.databento import DATABENTO_SPEND
from tapeflow.schemas.records import STATUS
from tapeflow.secrets import Secret
from tapeflow.storage import lake as lake_store
from tapeflow.storage.warehouse import Warehouse
from tapeflow.storage.writer import write
from tapeflow.venues.databento.client import DatabentoLive
from tapeflow.venues.databento.historical import RangeRequest
from tapeflow.venues.databento.mock_historical import MockHistorical
from tapeflow.venues.databento.mock_live import MockGateway
from tapeflow.venues.databento.parse import decode_all
from tests.databento.support import KEY, MBO_1225, databento_file, files_holding

ES_DAY_KEY = "2023-12-25|GLBX%2EMDP3.ESH4"


@pytest.fixture
def env(real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    path = databento_file(real_data, MBO_1225)
    with MockHistorical([path], KEY) as server:
        monkeypatch.setenv("DATABENTO_API_KEY", KEY)
        monkeypatch.setenv("TAPEFLOW_DATABENTO_HISTORICAL", server.url)
        monkeypatch.setenv("TAPEFLOW_DATABENTO_DAILY_BUDGET_USD", "0.05")
        monkeypatch.setenv("TAPEFLOW_DATABENTO_MONTHLY_BUDGET_USD", "1")
        yield path, server


def run_fetch(tmp_path: Path, dsn: str, request: RangeRequest, why: str) -> dg.ExecuteInProcessResult:
    res = resources(lake=tmp_path / "lake", landing=tmp_path / "landing", clickhouse=dsn)
    return databento_fetch.execute_in_process(run_config=fetch_run_config(request, why), resources=res,
                                              raise_on_error=False)


def test_fetch_lands_ledgers_shows_metadata_and_the_landing_sensor_asks_for_the_day(
        env: tuple, tmp_path: Path, dsn: str) -> None:
    path, server = env
    recv = decode_all([path])["order_event"].column("ts_recv_ns").to_numpy()
    request = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), int(recv[0]), int(recv[20_000]))
    result = run_fetch(tmp_path, dsn, request, "backfill ES 2023-12-25")
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert meta["outcome"] == "spent" and meta["billable_bytes"] == 20_000 * 56
    assert meta["daily_budget_usd"] == 0.05 and meta["spent_day_before_usd"] == 0
    assert "| spent |" in meta["ledger"] and "backfill ES 2023-12-25" in meta["ledger"]
    assert KEY not in str(meta) and all(KEY not in str(e) for e in result.all_events)
    assert files_holding(tmp_path, KEY) == []  # lake, landing, the sensor's index
    landed = Path(result.output_for_node("databento_get_range"))
    assert landed.parent == tmp_path / "landing" / "dbn" / "databento" / "GLBX.MDP3" / "mbo"
    [row] = lake_store.read(DATABENTO_SPEND, tmp_path / "lake").to_pylist()
    assert row["path"] == str(landed) and row["request_id"] == request.request_id
    with Warehouse(dsn) as wh:
        assert wh.fetch(DATABENTO_SPEND).column("request_id").to_pylist() == [request.request_id]
    # on into the backfill: the landing sensor indexes the file and asks for its instrument-day
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources=resources(
        lake=tmp_path / "lake", landing=tmp_path / "landing", journal=tmp_path / "journal", clickhouse=dsn))
    sensed = landing_sensor(context)
    # one single-run range of the instrument-days the file holds: the start-of-day snapshot's
    # resting orders carry their entry times (venue day 2023-12-24), the rest is 2023-12-25
    [days] = sensed.run_requests
    tags = days.tags
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) \
        == ("2023-12-24|GLBX%2EMDP3.ESH4", ES_DAY_KEY)


def test_over_budget_the_run_fails_with_the_estimate_and_the_budget(env: tuple, tmp_path: Path,
                                                                   dsn: str) -> None:
    path, _ = env
    recv = decode_all([path])["order_event"].column("ts_recv_ns").to_numpy()
    request = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), int(recv[0]), int(recv[-1]) + 1)  # $0.0811
    result = run_fetch(tmp_path, dsn, request, "backfill the whole day")
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    text = failure.event_specific_data.error.message
    assert "estimated at $0.0811" in text and "daily budget $0.05" in text
    meta = {k: v.value for k, v in failure.event_specific_data.user_failure_data.metadata.items()}
    assert meta["outcome"] == "refused" and meta["reason"] == "over_daily_budget"
    assert not (tmp_path / "landing").exists()
    [row] = lake_store.read(DATABENTO_SPEND, tmp_path / "lake").to_pylist()
    assert (row["outcome"], row["estimate_usd"]) == ("refused", pytest.approx(68_792 * 56 / 1e9 * 21.05))


def test_a_live_gap_is_repaired_from_the_historical_api_once(env: tuple, tmp_path: Path, dsn: str) -> None:
    path, server = env
    want = decode_all([path])["order_event"]
    recv = want.column("ts_recv_ns").to_numpy()
    cuts = [i for i in range(1, len(recv)) if recv[i] != recv[i - 1]]
    drop, resume = next(i for i in cuts if i > 30_000), next(i for i in cuts if i > 31_000)
    with MockGateway(path, KEY, sessions=[(0, drop), (resume, len(recv))]) as gw:
        client = DatabentoLive(["ESH4"], endpoint=f"tcp://{gw.host}:{gw.port}", journal=tmp_path / "journal",
                               api_key=Secret(KEY, "env:DATABENTO_API_KEY"), max_connects=2, backoff_s=0.05)

        async def collect() -> list:
            return [b async for b in client.batches()]

        batches = asyncio.run(collect())
    write(STATUS, STATUS.table({n: [r[n] for b in batches for r in b.status.to_pylist()]
                                for n in STATUS.column_names}), tmp_path / "lake")
    res = resources(lake=tmp_path / "lake", landing=tmp_path / "landing", clickhouse=dsn)
    instance = dg.DagsterInstance.ephemeral()
    sensed = databento_gap_repair_sensor(dg.build_sensor_context(instance=instance, resources=res))
    [run] = sensed.run_requests
    assert run.tags["dagster/sensor_name"] == "databento_gap_repair_sensor"
    config = run.run_config["ops"]["databento_get_range"]["config"]
    assert (config["start_ns"], config["end_ns"]) == (int(recv[drop - 1]) + 1, int(recv[resume]))
    again = databento_gap_repair_sensor(dg.build_sensor_context(instance=instance, resources=res,
                                                                cursor=sensed.cursor))
    assert again.run_requests == [] and again.skip_reason  # a window is repaired once
    result = databento_fetch.execute_in_process(run_config=run.run_config, resources=res, tags=run.tags)
    assert result.success
    repaired = Path(result.output_for_node("databento_get_range"))
    # the journal of both sessions plus the repair is the whole file again
    got = decode_all([*client.sessions, repaired])["order_event"]
    order = ["ts_recv_ns", "sequence", "order_id", "action", "side", "price_nanos", "size_nanos"]
    keys = [(c, "ascending") for c in order]
    assert got.sort_by(keys).equals(want.sort_by(keys))
    [row] = lake_store.read(DATABENTO_SPEND, tmp_path / "lake").to_pylist()
    assert row["why"].startswith("gap repair GLBX.MDP3/ESH4") and row["outcome"] == "spent"
