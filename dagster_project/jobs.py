"""Jobs and schedules: the whole day pipeline, and yesterday's partitions every night."""

import datetime as dt

from dagster import (
    AssetSelection,
    DagsterInvariantViolationError,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from assets.partitions import INSTRUMENTS_NAME, first_day, parse_instrument_key
from dagster_project.runs import SCHEDULE_NAME_TAG, partition_runs

DAILY = "daily_schedule"

# Every asset and check, ingest to warehouse, for some instrument-days (the options group is
# partitioned by underlying-day and has its own job: a run has one partitions definition). The
# registry's ``champion`` retrains in its own job (``dagster_project.retrain``), after the backfill.
tapeflow_days = define_asset_job(
    "tapeflow_days",
    selection=AssetSelection.all() - AssetSelection.groups("options") - AssetSelection.assets("champion"),
    description="Rebuild instrument-days end to end: ingest -> book -> derived -> checks -> warehouse.",
)

# The option tickers and surfaces of some underlying-days (day x underlying partitions).
option_days = define_asset_job(
    "option_days",
    selection=AssetSelection.groups("options"),
    description="Deribit captures -> option tickers with our IVs -> IV surfaces, per underlying-day.",
)


@schedule(name=DAILY, job=tapeflow_days, cron_schedule="30 0 * * *", execution_timezone="UTC",
          description="Yesterday (UTC) for every registered instrument, as one run.")
def daily_schedule(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
    """Yesterday's partitions of every instrument; contiguous, so one single-run range."""
    day = (context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    instruments = list(context.instance.get_dynamic_partitions(INSTRUMENTS_NAME))
    if not instruments:
        return SkipReason("no instrument registered yet (the landing sensor registers them)")
    try:
        first = first_day(context.repository_def.get_job(tapeflow_days.name).partitions_def)
    except DagsterInvariantViolationError:  # evaluated outside any definitions (a test): no bound
        first = None
    if first is not None and day < first:
        return SkipReason(f"{day} is before the partitions' first day {first}")
    wanted = [(day, *parse_instrument_key(k)) for k in instruments]
    return partition_runs(wanted, instruments, run_key_prefix=f"daily:{day}",
                          tags={"tapeflow/trigger": "daily", SCHEDULE_NAME_TAG: DAILY})
