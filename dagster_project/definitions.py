"""The one ``Definitions`` of tapeflow's batch runtime (``dagster dev -m dagster_project.definitions``).

Assets (groups ingest, book, derived, quality, warehouse) are partitioned by UTC day x instrument
and back-filled as single runs; the in-process executor runs every step of a run in one process
(a process per step costs seconds on a small machine).
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor, load_asset_checks_from_modules, load_assets_from_modules

from assets import book, derived, docs, ingest, warehouse
from dagster_project.jobs import daily_schedule, tapeflow_days
from dagster_project.resources import resources
from dagster_project.sensors import gap_repair_sensor, landing_sensor

ASSET_MODULES = (ingest, book, derived, warehouse, docs)

defs = Definitions(
    assets=load_assets_from_modules(ASSET_MODULES),
    asset_checks=load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[tapeflow_days],
    schedules=[daily_schedule],
    sensors=[landing_sensor, gap_repair_sensor],
    resources=resources(),
    executor=in_process_executor,
)
