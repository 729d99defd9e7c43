"""Backfill throughput: a multi-day range materialized by Dagster as ONE run (single-run BackfillPolicy).

Each workload drops files in a temporary landing folder, lets the landing sensor index them and
register the instruments, then executes the run requests it returns in-process (in-process
executor, ephemeral instance): decode -> lake -> book -> bars -> features -> signals -> blocking GX
checks -> the ``ml`` group (training examples; the models trained once per instrument-day on the
previous days by the ``model`` asset, which ``champion`` and ``model_backtest`` read: still most of
a run's CPU) -> ClickHouse (chdb) -> Data Docs. The
time counts the sensor tick too: its indexing decode is the one the run reads back
(``tapeflow.batch.sources``), so leaving it out would flatter the run. Events
are the normalized rows written (trades, book deltas, order events, venue quotes). Figures are
the median of 3 runs after a warm-up run in the same process (imports, numba, GX: the warm-up's
time is reported apart as the cold run). The same files through ``tapeflow.storage.ingest``
(decode -> lake + ClickHouse, no books, no checks) are timed beside them for scale.

Workloads (``bench.workloads``, generated once into ``$TAPEFLOW_BENCH_CACHE``): simulated L3
markets written as Databento DBN MBO files over several days, and the Binance USD-M JSON capture
copied to later days; the real CME ES MBO days for reference. The memory case backfills one
simulated DBN day of ~50 M events in a child process and reports its peak RSS
(``python -m bench.backfill memory EVENTS``). The figures' "before" is the code before issue 8's
work (``39260b0``) on the same files, one run after a warm-up, wall (CPU) events/s on the shared
2-core machine; README's before-figures (13k ES MBO, 68k Binance JSON) were two small real files.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import Report, median_time

DBN_DAYS, DBN_INSTRUMENTS, DBN_EVENTS_PER_DAY = 3, 2, 300_000
JSON_COPIES = 3
MEMORY_EVENTS = 50_000_000
# before the sliced steps (ed612a7): a 5.7 M-event day, and the 50 M-event day stopped (round 1: 2.19 GiB)
MEMORY_BEFORE = "1.97 GiB at 5.7 M events; 50 M: over 8 GiB"
MEMORY_GROWTH_BEFORE = "~240 MiB per M events (~250 B/event above the process)"
INGEST_ASSETS = ("trades", "book_deltas", "order_events", "venue_quotes")
FIRST_DAY = "2012-06-01"


def _real(relative: str) -> Path | None:
    from tapeflow.settings import Settings

    path = Settings.from_env().real_data / relative
    return path if path.exists() else None


def _link(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:  # linked, never copied: the inputs stay where they are
        (folder / f.name).symlink_to(f.resolve())


def backfill(root: Path, fmt: str, files: list[Path],
             instance: object | None = None) -> tuple[int, list[str]]:
    """The landing sensor's tick, then its run requests, over ``files``; (events, blocking failures)."""
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # BackfillPolicy's notice, once per asset

    from assets.resources import TapeflowResource
    from dagster_project.definitions import build_definitions, day_assets
    from dagster_project.demo import QUIET_CONSOLE
    from dagster_project.sensors import landing_sensor
    from tapeflow.batch.sources import earliest_day

    _link(files, root / "landing" / fmt)
    resource_ = TapeflowResource(lake_dir=str(root / "lake"), clickhouse_dsn=f"chdb://{root / 'warehouse'}",
                                 landing_dir=str(root / "landing"),
                                 journal_dir=str(root / "journal"))
    instance = instance or dg.DagsterInstance.ephemeral()
    tick = landing_sensor(dg.build_sensor_context(instance=instance, resources={"tapeflow": resource_}))
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions("instruments", list(request.partition_keys))
    # the definitions as a reload after this tick loads them: partitions from the data's first day
    assets = day_assets(build_definitions(earliest_day(root / "lake", None) or FIRST_DAY))
    events, blocked = 0, []
    for request in tick.run_requests:
        result = dg.materialize(assets, partition_key=request.partition_key, tags=dict(request.tags),
                                resources={"tapeflow": resource_}, instance=instance, raise_on_error=False,
                                run_config=QUIET_CONSOLE)
        events += _events(result)
        blocked += _blocked(result)
    return events, blocked


def _blocked(result: object) -> list[str]:
    out = []
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            if not ev.passed and ev.severity.value == "ERROR":
                out.append(f"{ev.asset_key.to_user_string()}.{ev.check_name}")
    return out


def _events(result: object) -> int:
    total = 0
    for event in result.get_asset_materialization_events():  # type: ignore[attr-defined]
        if event.materialization.asset_key.to_user_string() in INGEST_ASSETS:  # each partition: its own rows
            total += int(event.materialization.metadata["dagster/row_count"].value)
    return total


def _ingest(root: Path, fmt: str, files: list[Path]) -> int:
    from tapeflow.storage.ingest import ingest

    summary = ingest(fmt, files, lake=root / "lake", clickhouse=f"chdb://{root / 'warehouse'}",
                     progress=False)
    return summary.total_events


class _Runs:
    """Fresh folders for each timed run (made untimed), the last run's counts kept."""

    def __init__(self, fn: Callable[[Path], object]) -> None:
        self.fn, self.tmp, self.out = fn, None, None

    def setup(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
        self.tmp = tempfile.TemporaryDirectory(prefix="tapeflow-backfill-")

    def __call__(self) -> None:
        self.out = self.fn(Path(self.tmp.name))  # type: ignore[union-attr]

    def close(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def _workloads() -> list[tuple[str, str, Callable[[], list[Path]], str]]:
    from bench import workloads

    out = [(f"DBN MBO, simulated: {DBN_DAYS} days x {DBN_INSTRUMENTS} instruments", "dbn",
            lambda: workloads.dbn_days(DBN_DAYS, DBN_INSTRUMENTS, DBN_EVENTS_PER_DAY)[0],
            "52k/s (105k CPU)")]
    binance = _real("binance/usdm_btcusdt_20240808.gz")
    if binance is not None:
        out.append((f"JSON capture: Binance USD-M x {JSON_COPIES} ({2 * JSON_COPIES} UTC days)", "binance",
                    lambda: workloads.binance_days(binance, JSON_COPIES), "51k/s (71k CPU)"))
    es = [_real(f"databento/glbx/esh4-glbx-mdp3-{d}.mbo.dbn.zst") for d in ("20231224", "20231225")]
    if all(es):
        out.append(("DBN: CME ES MBO, 2 real days (80k events)", "dbn", lambda: es, "13k/s"))  # type: ignore
    return out


def run(report: Report) -> None:
    """Time the backfills (see the module docstring) and add them to ``report``."""
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    report.section("backfill: a multi-day range as one Dagster run -> lake + ClickHouse (all groups, checks)")
    for label, fmt, make, before in _workloads():
        files = make()
        runs = _Runs(lambda root, fmt=fmt, files=files: backfill(root / "dagster", fmt, files))
        runs.setup()
        t0 = time.perf_counter()
        runs()
        cold = time.perf_counter() - t0
        cpu, wall = median_time(runs, repeats=3, warmup=0, setup=runs.setup)
        events, blocked = runs.out  # type: ignore[misc]
        runs.close()
        note = f"{len(files)} files, cold run {cold:.1f} s"
        if blocked:
            note += f"; BLOCKED by {sorted(set(blocked))}"
        report.add(f"tapeflow backfill {label}", events, (cpu, wall), ours=True, note=note)
        if "simulated" in label or "JSON" in label:
            goal = 1.0 if fmt == "dbn" else 0.5
            report.figure(f"Dagster backfill from {'DBN' if fmt == 'dbn' else 'JSON'}", events / wall / 1e6,
                          "M events/s", goal=goal, before=before,
                          note=f"{label}, {events:,} events, wall median of 3 after a warm-up; "
                               f"{events / cpu / 1e6:.3f} M events/s per CPU second")
        ingest = _Runs(lambda root, fmt=fmt, files=files: _ingest(root, fmt, files))
        icpu, iwall = median_time(ingest, repeats=1, warmup=0, setup=ingest.setup)
        report.add(f"tapeflow ingest (decode -> lake + ClickHouse only) {label}", ingest.out,  # type: ignore
                   (icpu, iwall), ours=True, note="no books, bars, features or checks")
        ingest.close()
    _memory(report)
    report.note("CPU seconds of this process (threads included) and wall seconds; the machine is shared")


def _memory(report: Report) -> None:
    events = int(os.environ.get("TAPEFLOW_BENCH_MEMORY_EVENTS", MEMORY_EVENTS))
    if events <= 0:
        return
    # a tenth of the day first: how memory grows with the day, step by step
    peaks = [p for p in (_memory_case(report, n) for n in (events // 10, events)) if p is not None]
    if len(peaks) == 2:
        (n0, gib0), (n1, gib1) = peaks
        growth = (gib1 - gib0) * 1024 / ((n1 - n0) / 1e6)
        # bounded: the peak must not grow with the day beyond the partition being written
        report.figure("backfill peak RSS growth with the day", growth, "MiB per M events", goal=None,
                      higher_is_better=False, before=MEMORY_GROWTH_BEFORE,
                      note=f"goal: bounded (flat); {gib0:.2f} GiB at {n0 / 1e6:.1f} M events -> "
                           f"{gib1:.2f} GiB at {n1 / 1e6:.1f} M")


def _memory_case(report: Report, events: int) -> tuple[int, float] | None:
    out = subprocess.run([sys.executable, "-m", "bench.backfill", "memory", str(events)], capture_output=True,
                         text=True, check=False)
    lines = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    if "aborted" in lines:
        why = f"{lines['aborted']} in step {lines.get('step', '?')} after {lines.get('elapsed_s', '?')} s"
        report.note(f"memory case ({events:,} events) stopped: {why}")
        # still a headline figure: the day that does not fit is the one the goal is about
        report.figure(f"backfill peak RSS, one day of {events / 1e6:.1f} M events", None, "GiB", goal=None,
                      higher_is_better=False, before=MEMORY_BEFORE, note=f"not bounded: {why}")
        return None
    if out.returncode != 0 or "peak_rss_bytes" not in lines:
        report.note(f"memory case failed: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
        return None
    steps = ", ".join(f"{k.split('.', 1)[1]} {v}" for k, v in lines.items() if k.startswith("step_peak_gib."))
    report.note(f"memory case, {events:,} events: peak RSS per step (GiB): {steps}")
    peak = int(lines["peak_rss_bytes"]) / 2**30
    events = int(lines["events"])
    report.add(f"tapeflow backfill, one simulated DBN day ({events:,} events)", events,
               (float(lines["cpu_s"]), float(lines["wall_s"])), ours=True,
               note=f"child process, peak RSS {peak:.2f} GiB")
    report.figure(f"backfill peak RSS, one day of {events / 1e6:.1f} M events", peak, "GiB", goal=None,
                  higher_is_better=False, before=MEMORY_BEFORE,
                  note=f"{events:,} events, ru_maxrss of the child process; goal: bounded")
    return events, peak


def _memory_child(events: int) -> None:
    """Backfill one simulated DBN day of ``events`` events; print the peak RSS, per step too.

    A watchdog samples the RSS every 0.1 s and stops the process (exit 3) above
    ``TAPEFLOW_BENCH_MEMORY_LIMIT_GIB`` (default 8): on a shared machine a run that does not stream
    must not take everyone's memory with it.
    """
    import threading

    import dagster as dg

    from bench import workloads

    limit = float(os.environ.get("TAPEFLOW_BENCH_MEMORY_LIMIT_GIB", "8")) * 2**30
    samples: list[tuple[float, int]] = []
    page = os.sysconf("SC_PAGE_SIZE")

    def watch() -> None:
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page
            samples.append((time.time(), rss))
            if rss > limit:
                step = _current_step(instance)
                print(f"peak_rss_bytes={rss}\naborted=RSS over {limit / 2**30:.0f} GiB\nstep={step}\n"
                      f"elapsed_s={time.time() - started:.0f}", flush=True)
                os._exit(3)
            time.sleep(0.1)

    path, n = workloads.dbn_day(0, 0, events, workloads.cache_dir() / "dbn")
    instance = dg.DagsterInstance.ephemeral()
    started = time.time()
    threading.Thread(target=watch, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="tapeflow-memory-") as tmp:
        c0, w0 = time.process_time(), time.perf_counter()
        written, blocked = backfill(Path(tmp), "dbn", [path], instance=instance)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    print(f"events={written}\ncpu_s={cpu}\nwall_s={wall}\npeak_rss_bytes={peak}\nblocked={','.join(blocked)}")
    for step, (start, end) in _steps(instance).items():
        top = max((rss for t, rss in samples if start <= t <= end), default=0)
        print(f"step_peak_gib.{step}={top / 2**30:.2f}")


def _current_step(instance: object) -> str:
    try:
        steps = _steps(instance)
    except Exception:  # noqa: BLE001  (a report line, from a thread racing the run's own writes)
        return "?"
    return max(steps, key=lambda k: steps[k][0]) if steps else "sensor tick (decode)"


def _steps(instance: object) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = {}
    for run in instance.get_runs():  # type: ignore[attr-defined]
        for entry in instance.all_logs(run.run_id):  # type: ignore[attr-defined]
            ev = entry.dagster_event
            if ev is not None and ev.event_type_value in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"):
                out.setdefault(ev.step_key, []).append(entry.timestamp)
    return {k: (min(v), max(v)) for k, v in out.items()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["memory"]:
        _memory_child(int(sys.argv[2]))
    else:
        report = Report()
        run(report)
        print(report.render())
