"""Backfill throughput: a multi-day range materialized by Dagster as ONE run (single-run BackfillPolicy).

Each workload drops files in a temporary landing folder, lets the landing sensor index them and
register the instruments, then executes the run requests it returns in-process (in-process
executor, ephemeral instance): decode -> lake -> book -> bars -> features -> blocking GX checks ->
ClickHouse (chdb). The time counts the sensor tick too: its indexing decode is the one the run
reads back (``assets.sources``), so leaving it out would flatter the run. Events are the
normalized rows written (trades, book deltas, order events, venue quotes). The same files through
``tapeflow.storage.ingest`` (decode -> lake + ClickHouse, no books, no checks) are timed beside it for scale.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import Report

NS = 1_000_000_000
SIM_DAYS = 3
SIM_SPAN_NS = 120 * NS
INGEST_ASSETS = ("trades", "book_deltas", "order_events", "venue_quotes")


def _real(relative: str) -> Path | None:
    from tapeflow.settings import Settings

    path = Settings.from_env().real_data / relative
    return path if path.exists() else None


def _link(files: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:  # linked, never copied: the real data stays where it is
        (folder / f.name).symlink_to(f.resolve())
        out.append(folder / f.name)
    return out


def _simulated(folder: Path) -> list[Path]:
    from tapeflow.simulator import simulate

    files: list[Path] = []
    for day in range(SIM_DAYS):
        start = (1_704_067_200 + day * 86_400) * NS
        files += simulate(11 + day, 2, SIM_SPAN_NS, folder, start_ns=start, progress=False).files
    return files


def _backfill(root: Path, fmt: str, place: Callable[[Path], list[Path]]) -> tuple[int, float, float, str]:
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # BackfillPolicy's notice, once per asset

    from assets.resources import TapeflowResource
    from dagster_project.definitions import build_definitions
    from dagster_project.demo import QUIET_CONSOLE
    from dagster_project.sensors import landing_sensor

    files = place(root / "landing" / fmt)
    resource = TapeflowResource(lake_dir=str(root / "lake"), clickhouse_dsn=f"chdb://{root / 'warehouse'}",
                                landing_dir=str(root / "landing"), journal_dir=str(root / "journal"))
    instance = dg.DagsterInstance.ephemeral()
    c0, w0 = time.process_time(), time.perf_counter()
    tick = landing_sensor(dg.build_sensor_context(instance=instance, resources={"tapeflow": resource}))
    sensor_s = time.perf_counter() - w0
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions("instruments", list(request.partition_keys))
    days = len(_index(root).instrument_days())
    events, blocked = 0, []
    for request in tick.run_requests:
        result = dg.materialize(list(build_definitions("2012-06-01").assets), partition_key=request.partition_key,
                                tags=dict(request.tags), resources={"tapeflow": resource}, instance=instance,
                                raise_on_error=False, run_config=QUIET_CONSOLE)
        events += _events(result)
        blocked += _blocked(result)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    note = (f"{len(files)} files, {days} instrument-days in {len(tick.run_requests)} run(s); "
            f"sensor index {sensor_s:.1f} s of it")
    if blocked:
        note += f"; stopped by blocking checks {', '.join(sorted(set(blocked)))}"
    return events, cpu, wall, note


def _blocked(result: object) -> list[str]:
    out = []
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            if not ev.passed and ev.severity.value == "ERROR":
                out.append(f"{ev.asset_key.to_user_string()}.{ev.check_name}")
    return out


def _index(root: Path) -> object:
    from tapeflow.batch.sources import SourceIndex

    return SourceIndex(root / "lake")


def _events(result: object) -> int:
    seen: dict[str, int] = {}
    for event in result.get_asset_materialization_events():  # type: ignore[attr-defined]
        name = event.materialization.asset_key.to_user_string()
        if name in INGEST_ASSETS:  # each partition reports its own rows
            seen[name] = seen.get(name, 0) + int(event.materialization.metadata["dagster/row_count"].value)
    return sum(seen.values())


def _ingest(root: Path, fmt: str, files: list[Path]) -> tuple[int, float, float]:
    from tapeflow.storage.ingest import ingest

    c0, w0 = time.process_time(), time.perf_counter()
    summary = ingest(fmt, files, lake=root / "lake", clickhouse=f"chdb://{root / 'warehouse'}",
                     progress=False)
    return summary.total_events, time.process_time() - c0, time.perf_counter() - w0


def run(report: Report) -> None:
    """Time the backfills (see the module docstring) and add them to ``report``."""
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    report.section("backfill: a multi-day range as one Dagster run -> lake + ClickHouse (all groups, checks)")
    es = [_real(f"databento/glbx/esh4-glbx-mdp3-{d}.mbo.dbn.zst") for d in ("20231224", "20231225")]
    binance = _real("binance/usdm_btcusdt_20240808.gz")
    workloads: list[tuple[str, str, Callable[[Path], list[Path]]]] = [
        (f"sim L3 feed, {SIM_DAYS} days x 2 instruments", "sim", _simulated)]
    if all(es):
        workloads.append(("DBN: CME ES MBO, 2 days", "dbn", lambda d: _link(es, d)))  # type: ignore[arg-type]
    if binance is not None:
        workloads.append(("JSON capture: Binance USD-M, 2 UTC days", "binance",
                          lambda d: _link([binance], d)))
    for label, fmt, place in workloads:
        with tempfile.TemporaryDirectory(prefix="tapeflow-backfill-") as tmp:
            events, cpu, wall, note = _backfill(Path(tmp) / "dagster", fmt, place)
            report.add(f"tapeflow backfill {label}", events, (cpu, wall), ours=True, note=note)
            files = sorted((Path(tmp) / "dagster" / "landing" / fmt).rglob("*"))
            files = [f for f in files if f.is_file() and f.suffix != ".parquet"]
            ingested, icpu, iwall = _ingest(Path(tmp) / "ingest", fmt, files)
            report.add(f"tapeflow ingest (decode -> lake + ClickHouse only) {label}", ingested, (icpu, iwall),
                       ours=True, note="no books, bars, features or checks")
    report.note("CPU seconds of this process; GX validation (quality suites) is most of a backfill's time")
