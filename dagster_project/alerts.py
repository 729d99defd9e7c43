"""Alert sensors: failed Dagster runs and failed asset checks -> the alerts engine (``docs/alerts.md``).

Two sensors, both idle (a log line, a skip reason) while no alerts file is configured
(``TAPEFLOW_ALERTS_CONFIG``, :attr:`tapeflow.settings.Settings.alerts_config`):

- ``alert_run_failure_sensor`` (a run-failure sensor): each failed run is one ``run`` row.
- ``alert_check_sensor``: each new asset-check evaluation in the event log is one ``quality`` row
  (passed ones included: the rules decide; a passed check never alerts). The cursor is the last
  event's storage id; on its first tick it starts after the newest evaluation, so turning alerts on
  does not page people for the instance's whole history.

Each tick builds an engine on its own journal (``<lake>/_alerts/<sensor>.jsonl``), so deliveries a
receiver refused are retried, in order, by the next ticks and survive restarts of the daemon; it
delivers what is due once, sends the closing count of matches the throttle held back in this tick,
and appends the attempts' ledger rows to the lake (``alert_delivery``). Throttle windows do not
outlive a tick. The lake only, not ClickHouse: an embedded warehouse belongs to one process, the runs'.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import (
    DagsterEventType,
    DefaultSensorStatus,
    EventRecordsFilter,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from assets.partitions import parse_instrument_key
from assets.resources import TapeflowResource
from tapeflow.alerts.config import load
from tapeflow.alerts.engine import AlertEngine
from tapeflow.settings import Settings
from tapeflow.storage.writer import Writer

RUN_FAILURES = "alert_run_failure_sensor"
CHECKS = "alert_check_sensor"
PARTITION_TAG = "dagster/partition"
EVALUATIONS_PER_TICK = 500
NS = 1_000_000_000


def instrument(partition: str | None) -> tuple[str, str]:
    """``(venue, symbol)`` of a ``date|venue.symbol`` partition key; empty for anything else."""
    if not partition or "|" not in partition:
        return "", ""
    try:
        return parse_instrument_key(partition.rsplit("|", 1)[1])
    except (ValueError, KeyError):
        return "", ""


def deliver(log: Any, lake: Path, sensor_name: str, submit: Callable[[AlertEngine], int]) -> str:
    """One tick's alerts: load the configured rules, ``submit`` rows, deliver, write the ledger.

    Returns:
        a line saying what happened (the sensor's skip reason / log line).
    """
    path = Settings.from_env().alerts_config
    if path is None:
        log.info(f"{sensor_name}: no alerts file configured (TAPEFLOW_ALERTS_CONFIG): nothing sent")
        return "no alerts file configured (TAPEFLOW_ALERTS_CONFIG)"
    journal = lake / "_alerts" / f"{sensor_name}.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    engine = AlertEngine(load(path), journal=journal)
    try:
        raised = submit(engine)
        raised += len(engine.close_windows(sys.maxsize))  # a tick's held-back count is sent now
        rows = engine.deliver_pending()
        writer = Writer(lake)
        try:
            engine.write_ledger(writer)
        finally:
            writer.close()
        delivered = sum(r["outcome"] == "delivered" for r in rows)
        line = (f"{raised} alert(s) raised, {delivered} delivered, {len(engine.dead_letters)} dead-lettered, "
                f"{engine.pending} waiting for a retry")
    finally:
        engine.close()
    log.info(f"{sensor_name}: {line}")
    return line


def run_row(context: RunFailureSensorContext) -> dict[str, Any]:
    """The ``run`` row of a failed run (:meth:`AlertEngine.submit_run`)."""
    run = context.dagster_run
    partition = run.tags.get(PARTITION_TAG, "")
    venue, symbol = instrument(partition)
    event = context.failure_event
    record = context.instance.get_run_record_by_id(run.run_id)
    # the run's end time: the same failure gets the same alert id (and idempotency keys) on any tick
    ended_s = (record.end_time or record.update_timestamp.timestamp()) if record is not None else 0.0
    return {"ts_event_ns": int(ended_s * NS),
            "venue": venue, "symbol": symbol, "job": run.job_name, "run_id": run.run_id,
            "partition": partition, "detail": (event.message or "")[:300]}


@run_failure_sensor(name=RUN_FAILURES, default_status=DefaultSensorStatus.RUNNING,
                    minimum_interval_seconds=30,
                    description='Failed runs -> alerts (rules with source = "run", TAPEFLOW_ALERTS_CONFIG).')
def alert_run_failure_sensor(context: RunFailureSensorContext, tapeflow: TapeflowResource) -> SkipReason:
    """Turn one failed run into alerts through the engine."""
    return SkipReason(deliver(context.log, tapeflow.lake, RUN_FAILURES,
                              lambda engine: len(engine.submit_run(run_row(context)))))


def check_rows(records: list[Any], instance: Any) -> list[dict[str, Any]]:
    """``quality`` rows (:meth:`AlertEngine.submit_quality`) of asset-check evaluation event records.

    The instrument comes from the evaluation's partition, else from its run's single partition
    (a run over a range of instrument-days has none: its checks alert with an empty instrument).
    """
    rows = []
    partitions: dict[str, str] = {}
    for record in records:
        entry = record.event_log_entry
        evaluation = entry.dagster_event.event_specific_data
        if entry.run_id not in partitions:
            run = instance.get_run_by_id(entry.run_id)
            partitions[entry.run_id] = run.tags.get(PARTITION_TAG, "") if run is not None else ""
        partition = evaluation.partition or partitions[entry.run_id]
        venue, symbol = instrument(partition)
        rows.append({"ts_event_ns": int(entry.timestamp * NS), "venue": venue, "symbol": symbol,
                     "asset": evaluation.asset_key.to_user_string(), "check": evaluation.check_name,
                     "severity": evaluation.severity.value, "passed": evaluation.passed,
                     "run_id": entry.run_id, "partition": partition,
                     "detail": (evaluation.description or "")[:300]})
    return rows


@sensor(name=CHECKS, default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
        description='Failed asset checks -> alerts (rules with source = "quality", TAPEFLOW_ALERTS_CONFIG).')
def alert_check_sensor(context: SensorEvaluationContext, tapeflow: TapeflowResource) -> SensorResult:
    """Turn the asset-check evaluations recorded since the last tick into alerts through the engine."""
    kind = EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    if context.cursor is None:
        newest = context.instance.event_log_storage.get_event_records(kind, limit=1, ascending=False)
        start = str(newest[0].storage_id if newest else 0)
        return SensorResult(skip_reason=f"starting after event {start}", cursor=start)
    after = EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION,
                               after_cursor=int(context.cursor))
    records = list(context.instance.event_log_storage.get_event_records(
        after, limit=EVALUATIONS_PER_TICK, ascending=True))
    if not records:
        return SensorResult(skip_reason="no new asset-check evaluation", cursor=context.cursor)
    rows = check_rows(records, context.instance)
    line = deliver(context.log, tapeflow.lake, CHECKS,
                   lambda engine: sum(len(engine.submit_quality(r)) for r in rows))
    return SensorResult(skip_reason=f"{len(records)} evaluation(s): {line}",
                        cursor=str(records[-1].storage_id))
