"""Shared fixtures: a small simulated market in a landing folder, and in-process materialization.

The simulated landing folder and the sensor-launched materialization of its day are built once per
session (by whichever xdist worker asks first, under a file lock) and only read by the tests; a test
that changes either works on its own copy.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

SIM_SEED = 3
SIM_SPAN_NS = 120 * 1_000_000_000  # two simulated minutes per instrument
SIM_DAY = "2024-01-01"  # the crypto preset starts at 2024-01-01T00:00:00Z
FIRST_DAY = "2023-12-01"  # the partitions' first day in these tests (the ES days are 2023-12-24/25)


@dataclass
class Deployment:
    """One temporary tapeflow deployment: landing folder, journal, lake and chdb warehouse."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def dsn(self) -> str:
        return f"chdb://{self.root / 'warehouse'}"

    def resources(self) -> dict[str, object]:
        from dagster_project.resources import resources

        return resources(lake=self.lake, clickhouse=self.dsn, landing=self.landing,
                         journal=self.root / "journal")


def simulate_landing(root: Path, instruments: int = 2, *, days: int = 1) -> Deployment:
    """Simulated ``sim`` files for ``days`` consecutive days, dropped in a landing folder."""
    from tapeflow.simulator import simulate

    start = 1_704_067_200 * 1_000_000_000
    for d in range(days):
        simulate(SIM_SEED + d, instruments, SIM_SPAN_NS, root / "landing", preset="crypto",
                 start_ns=start + d * 86_400 * 1_000_000_000, progress=False)
    return Deployment(root)


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``name`` of this pytest session, filled by ``build`` once: the xdist workers share
    the session's base folder, and the first to ask builds it under a lock while the other waits.
    The folder is read-only to its users (a build that failed is retried by the next one)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the controller's folder, above each worker's
    root, done = base / name, base / f"{name}.done"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            build(root)
            done.touch()
    return root


@pytest.fixture(scope="session")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine simulated landing folder (2 instruments, 2 minutes); copy it before changing it."""
    return built_once(tmp_path_factory, "sim", simulate_landing) / "landing"


@pytest.fixture(scope="session")
def sensor_day(sim_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The simulated day materialized as the landing sensor asks for it: one run over both
    instruments, on a persistent instance in ``dagster_home`` (open it with :func:`open_instance`).
    Read-only: a test that materializes more builds its own deployment."""
    def build(root: Path) -> None:
        from dagster_project.sensors import landing_sensor

        dep = copy_landing(sim_files, root)
        (root / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
            tick = landing_sensor(dg.build_sensor_context(instance=instance, resources=dep.resources()))
            [add] = tick.dynamic_partitions_requests
            instance.add_dynamic_partitions("instruments", list(add.partition_keys))
            [request] = tick.run_requests
            assert materialize(dep, instance, tags=dict(request.tags)).success

    return Deployment(built_once(tmp_path_factory, "sensor_day", build))


def open_instance(dep: Deployment) -> dg.DagsterInstance:
    """The persistent Dagster instance of a deployment built by :func:`sensor_day` (a context manager)."""
    return dg.DagsterInstance.from_config(str(dep.root / "dagster_home"))


def copy_landing(landing: Path, root: Path) -> Deployment:
    """A fresh deployment whose landing folder is a copy of ``landing``."""
    shutil.copytree(landing, root / "landing")
    return Deployment(root)


def sim_lines(path: Path) -> list[list[str]]:
    """The data lines of a ``sim`` file, split on commas (header dropped)."""
    with gzip.open(path, "rt") as f:
        return [line.rstrip("\n").split(",") for line in f][1:]


def write_sim(path: Path, rows: Sequence[Sequence[str]]) -> None:
    """Rewrite a ``sim`` file with ``rows`` under its header."""
    from tapeflow.venues.sim.messages import HEADER

    with gzip.open(path, "wt") as f:
        f.write(HEADER + "\n")
        f.writelines(",".join(r) + "\n" for r in rows)


def register(instance: dg.DagsterInstance, dep: Deployment) -> list[tuple[str, str, str]]:
    """Index the deployment's sources and register their instruments; returns the instrument-days."""
    from assets.partitions import INSTRUMENTS_NAME, instrument_key
    from tapeflow.batch.sources import SourceIndex, discover

    index = SourceIndex(dep.lake)
    index.refresh(discover(dep.landing, None))
    days = sorted(index.instrument_days())
    keys = sorted({instrument_key(v, s) for v, s, _ in days})
    instance.add_dynamic_partitions(INSTRUMENTS_NAME, keys)
    return days


def definitions(first_day: str = FIRST_DAY) -> dg.Definitions:
    """The project's Definitions with partitions from ``first_day`` (every test day is after it)."""
    from dagster_project.definitions import build_definitions

    return build_definitions(first_day)


def materialize(dep: Deployment, instance: dg.DagsterInstance, *, partition_key: str | None = None,
                tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    """Every asset and check of the Definitions for one partition (or a range given as tags)."""
    from dagster_project.definitions import day_assets

    return dg.materialize(day_assets(definitions()), partition_key=partition_key, tags=tags,
                          resources=dep.resources(), instance=instance, raise_on_error=False)


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, dict]]:
    """Metadata of each partition's materialization, by asset name then partition key (raw values)."""
    out: dict[str, dict[str, dict]] = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        values = {k: v.value for k, v in m.metadata.items()}
        out.setdefault(m.asset_key.to_user_string(), {})[str(m.partition)] = values
    return out


def key(date: str, venue: str, symbol: str) -> str:
    """The partition key of one instrument-day, as text."""
    from assets.partitions import partition_key

    return str(partition_key(date, venue, symbol))


def check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """Every asset check evaluation of a run, by (asset, check name)."""
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            out[(ev.asset_key.to_user_string(), ev.check_name)] = ev
    return out


def check_status(instance: dg.DagsterInstance, asset: str, check: str) -> str:
    """The status the Dagster UI shows for the latest execution of a check (as its GraphQL resolves it)."""
    import asyncio

    from dagster._core.loader import LoadingContextForTest

    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    return asyncio.run(record.resolve_status(LoadingContextForTest(instance))).value
