"""Landing and gap-repair sensors, the daily schedule, and a range backfill as one run."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import pytest

from tests.dagster.conftest import SIM_DAY, Deployment, copy_landing, materializations, materialize

BTC, ETH = "sim.SIM-BTCUSDT", "sim.SIM-ETHUSDT"
NS = 1_000_000_000
DAY_NS = 86_400 * NS
DAY0_NS = 1_704_067_200 * NS  # 2024-01-01T00:00:00Z


def _context(dep: Deployment, instance: dg.DagsterInstance, cursor: str | None = None
             ) -> dg.SensorEvaluationContext:
    return dg.build_sensor_context(instance=instance, cursor=cursor, resources=dep.resources())


def _keys(request: dg.RunRequest, instance: dg.DagsterInstance) -> list[str]:
    """The partition keys one run request covers (a single key or a single-run range)."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from assets.partitions import DAY_BY_INSTRUMENT

    if request.partition_key is not None:
        return [request.partition_key]
    rng = dg.PartitionKeyRange(request.tags[ASSET_PARTITION_RANGE_START_TAG],
                               request.tags[ASSET_PARTITION_RANGE_END_TAG])
    keys = DAY_BY_INSTRUMENT.get_partition_keys_in_range(rng, dynamic_partitions_store=instance)
    return [str(k) for k in keys]


@pytest.fixture
def dep(sim_files: Path, tmp_path: Path) -> Deployment:
    return copy_landing(sim_files, tmp_path)


def test_landing_sensor_registers_instruments_and_requests_their_day_once(dep: Deployment) -> None:
    from dagster_project.sensors import landing_sensor

    instance = dg.DagsterInstance.ephemeral()
    result = landing_sensor(_context(dep, instance))
    assert isinstance(result, dg.SensorResult)
    [add] = result.dynamic_partitions_requests
    assert (add.partitions_def_name, sorted(add.partition_keys)) == ("instruments", [BTC, ETH])
    instance.add_dynamic_partitions("instruments", list(add.partition_keys))
    # both instruments of one day are contiguous: one single-run range
    [run] = result.run_requests
    assert _keys(run, instance) == [f"{SIM_DAY}|{BTC}", f"{SIM_DAY}|{ETH}"]
    assert isinstance(landing_sensor(_context(dep, instance)), dg.SkipReason)  # nothing new
    # a changed file is decoded again and requests exactly its own instrument-day
    changed = dep.landing / "sim" / "SIM-ETHUSDT" / f"{SIM_DAY}.events.csv.gz"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + NS))
    again = landing_sensor(_context(dep, instance))
    assert [_keys(r, instance) for r in again.run_requests] == [[f"{SIM_DAY}|{ETH}"]]
    assert again.dynamic_partitions_requests == []


def test_gap_repair_requests_exactly_the_days_the_windows_touch(dep: Deployment) -> None:
    from dagster_project.sensors import gap_repair_sensor
    from tapeflow.schemas.records import STATUS
    from tapeflow.storage.writer import write

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("instruments", [BTC, ETH])
    rows = [  # (symbol, state, from, until): what the live flow recorded
        ("SIM-ETHUSDT", "gap", DAY0_NS + DAY_NS - 60 * NS, DAY0_NS + DAY_NS + 60 * NS),  # across midnight
        ("SIM-ETHUSDT", "synced", DAY0_NS + 3 * DAY_NS, -1),            # healthy: nothing to repair
        ("SIM-BTCUSDT", "degraded", DAY0_NS + 5 * DAY_NS, -1),          # still open: wait
        ("", "disconnected", DAY0_NS + 3600 * NS, DAY0_NS + 3660 * NS),  # venue-wide: every instrument
    ]
    status = STATUS.table({
        "ts_event_ns": [r[2] for r in rows], "ts_recv_ns": [r[2] for r in rows], "venue": ["sim"] * 4,
        "symbol": [r[0] for r in rows], "state": [r[1] for r in rows], "sequence": [-1] * 4,
        "until_ns": [r[3] for r in rows], "detail": ["test"] * 4})
    write(STATUS, status, dep.lake)

    result = gap_repair_sensor(_context(dep, instance))
    covered = sorted(k for r in result.run_requests for k in _keys(r, instance))
    assert covered == [f"2024-01-01|{BTC}", f"2024-01-01|{ETH}", f"2024-01-02|{ETH}"]
    assert all(r.tags["tapeflow/trigger"] == "gap_repair" for r in result.run_requests)
    assert all(r.tags["dagster/sensor_name"] == "gap_repair_sensor" for r in result.run_requests)
    # the same windows are not repaired twice
    second = gap_repair_sensor(_context(dep, instance, cursor=result.cursor))
    assert second.run_requests == [] and second.skip_reason is not None

    # closing the loop: the repair run of the first day rebuilds both instruments and re-issues bars
    [first_day] = [r for r in result.run_requests if _keys(r, instance)[0].startswith("2024-01-01")]
    run = materialize(dep, instance, tags=dict(first_day.tags))
    assert run.success
    bars = materializations(run)["bars"]
    assert sorted(bars) == [f"2024-01-01|{BTC}", f"2024-01-01|{ETH}"]
    assert all(m["partitions_in_run"] == 2 for m in bars.values())
    [record] = instance.get_run_records()  # one run for the two instrument-days (single-run backfill)
    # the run list shows it launched by the sensor, not "Manually launched"
    assert record.dagster_run.tags["dagster/sensor_name"] == "gap_repair_sensor"


def test_daily_schedule_asks_for_yesterday_of_every_instrument_in_one_run() -> None:
    from dagster_project.jobs import daily_schedule

    when = dt.datetime(2024, 1, 2, 0, 30, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:  # a schedule context needs a persistent instance
        instance.add_dynamic_partitions("instruments", [BTC, ETH])
        requests = daily_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
        assert [_keys(r, instance) for r in requests] == [[f"2024-01-01|{BTC}", f"2024-01-01|{ETH}"]]
        assert requests[0].tags["dagster/schedule_name"] == "daily_schedule"


def test_discover_skips_the_simulators_episode_labels_and_partial_downloads(tmp_path: Path) -> None:
    from tapeflow.batch.sources import discover

    feed = tmp_path / "landing" / "sim" / "SIM-A"
    feed.mkdir(parents=True)
    for name in ("2024-01-01.events.csv.gz", "2024-01-02.events.csv.gz"):
        (feed / name).write_bytes(b"")
    (tmp_path / "landing" / "sim" / "episodes.parquet").write_bytes(b"PAR1")
    (feed / "2024-01-03.events.csv.gz.part").write_bytes(b"")
    found = sorted(p.name for src in discover(tmp_path / "landing", None) for p in src.paths)
    assert found == ["2024-01-01.events.csv.gz", "2024-01-02.events.csv.gz"]
