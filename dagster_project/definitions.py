"""The one ``Definitions`` of tapeflow's batch runtime (``dagster dev -m dagster_project.definitions``).

Assets (groups ingest, book, derived, signals, quality, warehouse) are partitioned by UTC day x instrument
(group ``options`` by UTC day x underlying, with its own job and sensor) and back-filled as single
runs; the in-process executor runs every step of a run in one process (a process per step costs
seconds on a small machine).

The definitions load lazily (``@dg.definitions``): that is where configuration is read, once, never
at import. The days start at ``TAPEFLOW_PARTITIONS_START`` (``YYYY-MM-DD``) when set, else on the
first day any known source or lake partition holds (:func:`tapeflow.batch.sources.earliest_day`:
the sensors' source index, the journal's day files, the lake), else today; they run to today. A
source older than that first day is reported by the sensors, which request it once the
definitions are reloaded (Deployment -> Reload in the UI) and start earlier.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping

import dagster as dg
from dagster import Definitions, in_process_executor, load_assets_from_modules

from assets import (
    backtests,
    book,
    derivatives,
    derived,
    docs,
    ingest,
    ml,
    option_signals,
    options,
    signals,
    warehouse,
)
from assets.partitions import day_by_instrument
from assets.resources import TapeflowResource
from dagster_project.alerts import alert_check_sensor, alert_run_failure_sensor
from dagster_project.databento import databento_fetch, databento_gap_repair_sensor
from dagster_project.jobs import daily_schedule, option_days, tapeflow_days
from dagster_project.resources import resources
from dagster_project.retrain import drift_sensor, retrain_days, retrain_schedule
from dagster_project.sensors import gap_repair_sensor, landing_sensor, options_sensor
from tapeflow.batch.sources import earliest_day
from tapeflow.errors import ConfigError

ASSET_MODULES = (ingest, book, derived, signals, warehouse, docs, ml, backtests, derivatives)
# partitioned by day x underlying (assets.options.day_by_underlying), not day x instrument
OPTION_MODULES = (options, option_signals)
PARTITIONS_START = "TAPEFLOW_PARTITIONS_START"


def partitions_start(env: Mapping[str, str] | None = None, *, today: dt.date | None = None) -> str:
    """The first day of the partitions: configured, else where the data starts, else today.

    Args:
        env: the environment (``os.environ`` when None): ``TAPEFLOW_PARTITIONS_START`` and the
            ``TAPEFLOW_LAKE`` / ``TAPEFLOW_JOURNAL`` folders the data is looked for in.
        today: the UTC date when nothing is known (for tests).

    Raises:
        ConfigError: ``TAPEFLOW_PARTITIONS_START`` is not a ``YYYY-MM-DD`` date.
    """
    env = os.environ if env is None else env
    configured = env.get(PARTITIONS_START, "").strip()
    if configured:
        try:
            return dt.date.fromisoformat(configured).isoformat()
        except ValueError as exc:
            raise ConfigError(f"{PARTITIONS_START} was {configured!r}; expected a date YYYY-MM-DD") from exc
    paths = TapeflowResource(lake_dir=env.get("TAPEFLOW_LAKE") or None,
                             journal_dir=env.get("TAPEFLOW_JOURNAL") or None)
    found = earliest_day(paths.lake, paths.journal)
    return found or (today or dt.datetime.now(dt.UTC).date()).isoformat()


def build_definitions(first_day: str, **paths: object) -> Definitions:
    """The Definitions with days from ``first_day`` (``YYYY-MM-DD``) to today.

    Args:
        first_day: the first partition day.
        paths: resource settings (``lake``, ``clickhouse``, ``landing``, ``journal``); unset ones
            follow the ``TAPEFLOW_*`` environment when a run or sensor uses them.
    """
    partitions = day_by_instrument(first_day)
    assets = [a.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=partitions))
              for a in load_assets_from_modules(ASSET_MODULES)]
    by_underlying = options.day_by_underlying(first_day)
    assets += [a.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=by_underlying))
               for a in load_assets_from_modules(OPTION_MODULES)]
    return Definitions(
        assets=assets,
        jobs=[tapeflow_days, option_days, databento_fetch, retrain_days],
        schedules=[daily_schedule, retrain_schedule],
        sensors=[landing_sensor, gap_repair_sensor, alert_run_failure_sensor, alert_check_sensor,
                 databento_gap_repair_sensor, options_sensor, drift_sensor],
        resources=resources(**paths),  # type: ignore[arg-type]
        executor=in_process_executor,
    )


def day_assets(definitions: Definitions) -> list:
    """The assets partitioned by day x instrument (every group but ``options``).

    What one ``dagster.materialize`` call over instrument-days may take: Dagster runs one
    partitions definition per run, and the option assets are partitioned by underlying-day.
    """
    return [a for a in definitions.assets or []  # type: ignore[union-attr]
            if options.GROUP not in getattr(a, "group_names_by_key", {}).values()]


@dg.definitions
def defs() -> Definitions:
    """What ``dagster dev`` / ``dagster definitions validate`` load (the environment is read here)."""
    return build_definitions(partitions_start())
