"""The alert sensors: a failed blocking check or a failed run -> exactly one alert at a real receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from assets.resources import TapeflowResource
from tests.alerts.receivers import HttpReceiver

KEY = "sensor-hook-key"
PARTITIONS = dg.StaticPartitionsDefinition(["2024-01-01|sim.SIM-BTCUSDT"])


@dg.asset(partitions_def=PARTITIONS)
def good_bars() -> int:
    return 1


@dg.asset_check(asset=good_bars, blocking=True)
def good_bars_rows() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset(partitions_def=PARTITIONS)
def bad_bars() -> int:
    return 1


@dg.asset_check(asset=bad_bars, blocking=True)
def bad_bars_ohlc() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="high < low in 3 rows")


@dg.asset_check(asset=bad_bars, blocking=False)
def bad_bars_stale() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, description="stale")


@dg.op
def explode() -> None:
    raise RuntimeError("the warehouse went away")


@dg.job
def watched_job() -> None:
    explode()


@dg.job
def other_job() -> None:
    explode()


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpReceiver]:
    r = HttpReceiver(KEY.encode()).start()
    config = tmp_path / "alerts.toml"
    config.write_text(f"""\
[delivery]
backoff_base_ms = 5
backoff_max_ms = 40
[allow]
loopback = true
[channel.hook]
type = "webhook"
url = "{r.url('webhook')}"
secret = "env:SENSOR_HOOK_KEY"
[rule.checks]
source = "quality"
instruments = ["SIM-BTCUSDT"]
channels = ["hook"]
[rule.runs]
source = "run"
jobs = ["watched_job"]
severity = "critical"
channels = ["hook"]
""")
    monkeypatch.setenv("SENSOR_HOOK_KEY", KEY)
    monkeypatch.setenv("TAPEFLOW_ALERTS_CONFIG", str(config))
    yield r
    r.stop()


def _resources(tmp_path: Path) -> dict[str, object]:
    return {"tapeflow": TapeflowResource(lake_dir=str(tmp_path / "lake"))}


def _bodies(receiver: HttpReceiver) -> list[dict]:
    return [json.loads(r["body"]) for r in receiver.accepted]


def _tick(instance: dg.DagsterInstance, tmp_path: Path, cursor: str | None) -> dg.SensorResult:
    from dagster_project.alerts import alert_check_sensor

    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=_resources(tmp_path))
    result = alert_check_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_a_failed_blocking_check_is_one_alert_and_a_passing_one_none(
        receiver: HttpReceiver, tmp_path: Path) -> None:
    from tapeflow.schemas.alerts import ALERT_DELIVERY
    from tapeflow.storage import lake as lake_store

    instance = dg.DagsterInstance.ephemeral()
    partition = "2024-01-01|sim.SIM-BTCUSDT"
    dg.materialize([bad_bars, bad_bars_ohlc, bad_bars_stale], instance=instance, partition_key=partition,
                   raise_on_error=False)
    first = _tick(instance, tmp_path, None)  # turning alerts on does not replay the history
    assert first.cursor is not None and receiver.seen == []

    assert dg.materialize([good_bars, good_bars_rows], instance=instance, partition_key=partition).success
    passing = _tick(instance, tmp_path, first.cursor)
    assert receiver.seen == [] and passing.cursor != first.cursor

    dg.materialize([bad_bars, bad_bars_ohlc, bad_bars_stale], instance=instance, partition_key=partition,
                   raise_on_error=False)
    failing = _tick(instance, tmp_path, passing.cursor)
    [alert] = _bodies(receiver)  # the WARN (non-blocking) failure is not alerted by default
    assert (alert["rule"], alert["source"], alert["kind"]) == ("checks", "quality", "bad_bars_ohlc")
    assert (alert["venue"], alert["symbol"]) == ("sim", "SIM-BTCUSDT")
    assert "high < low in 3 rows" in alert["title"] and alert["detail"]["partition"] == partition
    assert "no new asset-check evaluation" in str(_tick(instance, tmp_path, failing.cursor).skip_reason)
    assert len(receiver.accepted) == 1
    ledger = lake_store.read(ALERT_DELIVERY, tmp_path / "lake")
    assert ledger.column("outcome").to_pylist() == ["delivered"]
    assert ledger.column("channel").to_pylist() == ["hook"]


def _failure_context(instance: dg.DagsterInstance, job: dg.JobDefinition, tmp_path: Path
                     ) -> dg.RunFailureSensorContext:
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    return dg.build_run_status_sensor_context(
        sensor_name="alert_run_failure_sensor", dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=run, resources=_resources(tmp_path)).for_run_failure()


def test_a_failed_run_of_a_watched_job_is_one_alert(receiver: HttpReceiver, tmp_path: Path) -> None:
    from dagster_project.alerts import alert_run_failure_sensor

    instance = dg.DagsterInstance.ephemeral()
    alert_run_failure_sensor(_failure_context(instance, other_job, tmp_path))
    assert receiver.seen == []  # a job no rule watches
    context = _failure_context(instance, watched_job, tmp_path)
    alert_run_failure_sensor(context)
    [alert] = _bodies(receiver)
    assert (alert["rule"], alert["severity"], alert["kind"]) == ("runs", "critical", "run_failure")
    assert alert["detail"]["run_id"] == context.dagster_run.run_id and "watched_job" in alert["title"]
    # Dagster's cursor hands each failed run to the sensor once; were one tick re-evaluated, the
    # message would carry the same alert id and idempotency key, and the receiver drops it
    alert_run_failure_sensor(context)
    first, again = receiver.accepted
    assert again["headers"]["Idempotency-Key"] == first["headers"]["Idempotency-Key"]
    assert again["headers"]["X-Tapeflow-Alert-Id"] == alert["alert_id"]


def test_without_an_alerts_file_the_sensors_do_nothing(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_project.alerts import alert_run_failure_sensor

    monkeypatch.delenv("TAPEFLOW_ALERTS_CONFIG", raising=False)
    instance = dg.DagsterInstance.ephemeral()
    result = alert_run_failure_sensor(_failure_context(instance, watched_job, tmp_path))
    assert "no alerts file configured" in str(result)
    dg.materialize([bad_bars, bad_bars_ohlc], instance=instance, partition_key="2024-01-01|sim.SIM-BTCUSDT",
                   raise_on_error=False)
    cursor = _tick(instance, tmp_path, "0")
    assert "no alerts file configured" in str(cursor.skip_reason)
    assert not (tmp_path / "lake" / "_alerts").exists()
