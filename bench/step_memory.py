"""Peak RSS of the backfill's day-holding steps, one step at a time, on simulated days of two sizes.

``bench.backfill``'s memory case runs a whole Dagster backfill of one simulated DBN day (a 5.4 M-event
day took 31 minutes under the shared load); this one isolates a step so its growth with the day can
be measured in minutes: the day is ingested once into a lake (``tapeflow.storage.ingest``, cached
under ``$TAPEFLOW_BENCH_CACHE/step-memory``), then each step's library call runs in a fresh child
process that samples its RSS every 0.05 s. Both ways of the step run on the same lake in the same
session: the day read in slices (what the asset runs) and the day read whole (the code before).

Steps: ``signals`` (``tapeflow.signals.sliced.detect_day`` against ``detect_whole_day``).

``python -m bench.step_memory`` (both sizes, ``TAPEFLOW_BENCH_STEP_TILES``, default ``1,5``: tiles
of the ~540 k-event simulated segment); ``python -m bench.step_memory child STEP WAY LAKE`` is the
child.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import Report

TILES = (1, 5)
STEPS = {"signals": ("sliced", "whole")}


def _lake(tiles: int) -> tuple[Path, int]:
    from bench import workloads
    from tapeflow.storage.ingest import ingest

    seg = workloads.segment(0).num_rows
    path, events = workloads.dbn_day(0, 0, tiles * seg, workloads.cache_dir() / "dbn")
    lake = workloads.cache_dir() / "step-memory" / f"x{tiles}" / "lake"
    if not (lake.parent / "done").exists():
        ingest("dbn", [path], lake=lake, clickhouse=None, progress=False)
        _derive_trades(lake)
        (lake.parent / "done").write_text(str(events))
    return lake, int((lake.parent / "done").read_text())


def _derive_trades(lake: Path) -> None:
    # an MBO day has no trade rows of its own: the backfill's ``normalized`` derives them from the
    # ``T`` order events (``ingest`` alone does not), and the detectors read them
    from tapeflow.derived.trades import trades_from_order_events
    from tapeflow.schemas.records import ORDER_EVENT, TRADE
    from tapeflow.storage import lake as lake_store
    from tapeflow.storage.writer import Writer

    with Writer(lake=lake) as writer:
        for venue, symbol, date, _ in lake_store.partitions(ORDER_EVENT, lake):
            events = lake_store.read(ORDER_EVENT, lake, venue=venue, symbol=symbol, date=date)
            writer.replace(TRADE, trades_from_order_events(events.select(ORDER_EVENT.column_names)))


def run(report: Report) -> None:
    """Measure each step both ways on both sizes (see the module docstring)."""
    report.section("memory: one backfill step over a simulated DBN day, peak RSS of a child process")
    given = os.environ.get("TAPEFLOW_BENCH_STEP_TILES", ",".join(map(str, TILES)))
    tiles = [int(x) for x in given.split(",")]
    for step, ways in STEPS.items():
        peaks: dict[str, list[tuple[int, float]]] = {w: [] for w in ways}
        for n in tiles:
            lake, events = _lake(n)
            digests = set()
            for way in ways:
                out = _child(step, way, lake)
                if out is None:
                    report.note(f"{step} ({way}), {events:,} events: failed")
                    continue
                digests.add(out["digest"])
                peak, before = out["peak_gib"], out["before_gib"]
                peaks[way].append((events, peak))
                report.add(f"{step} step, day {way}, {events:,} events", events,
                           (out["cpu_s"], out["wall_s"]), ours=True,
                           note=f"peak RSS {peak:.2f} GiB ({before:.2f} after imports), "
                                f"{int(out['rows'])} rows")
            if len(digests) > 1:  # the ways must give the same rows: a figure of a wrong answer is none
                report.note(f"{step}, {events:,} events: the ways' rows DIFFER ({sorted(digests)})")
        for way, got in peaks.items():
            if len(got) == 2:
                (n0, g0), (n1, g1) = got
                growth = (g1 - g0) * 1024 / ((n1 - n0) / 1e6)
                report.figure(f"{step} step peak RSS growth with the day ({way})", growth, "MiB per M events",
                              goal=None, higher_is_better=False,
                              note=f"goal: flat; {g0:.2f} GiB at {n0 / 1e6:.1f} M events -> {g1:.2f} GiB at "
                                   f"{n1 / 1e6:.1f} M")


def _child(step: str, way: str, lake: Path) -> dict[str, Any] | None:
    out = subprocess.run([sys.executable, "-m", "bench.step_memory", "child", step, way, str(lake)],
                         capture_output=True, text=True, check=False)
    lines = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    if out.returncode != 0 or "peak_gib" not in lines:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    return {k: v if k == "digest" else float(v) for k, v in lines.items()}


def _child_main(step: str, way: str, lake: Path) -> None:
    from tapeflow.batch.targets import Target
    from tapeflow.schemas.records import ORDER_EVENT
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.sliced import detect_day, detect_whole_day
    from tapeflow.storage import lake as lake_store

    assert step == "signals"
    [(venue, symbol, date, _)] = list(lake_store.partitions(ORDER_EVENT, lake))
    t = Target(date, venue, symbol)
    thresholds = load(DEFAULT_PATH)
    page = os.sysconf("SC_PAGE_SIZE")
    peak = [0]

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    def watch() -> None:
        while True:
            peak[0] = max(peak[0], rss())
            time.sleep(0.05)

    before = rss()
    threading.Thread(target=watch, daemon=True).start()
    c0, w0 = time.process_time(), time.perf_counter()
    run = detect_day if way == "sliced" else detect_whole_day
    day = run(lake, t, thresholds)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    peak[0] = max(peak[0], rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # KiB on Linux
    print(f"peak_gib={peak[0] / 2**30}\nbefore_gib={before / 2**30}\ncpu_s={cpu}\nwall_s={wall}\n"
          f"rows={day.table.num_rows}\npieces={day.pieces}\n"
          f"digest={hashlib.sha256(repr(day.table.to_pylist()).encode()).hexdigest()[:16]}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        _child_main(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
    else:
        report = Report()
        run(report)
        print(report.render())
