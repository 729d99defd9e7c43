"""Cold start: seconds from a fresh process to the first output of ``tapeflow live`` and to a first ingest.

Each case starts a new Python process, as a user's command does, on a small simulated capture
(one instrument, a few seconds: the time is start-up, not work):

- ``tapeflow live --capture FILE --format sim`` (lake only): seconds until the flow's first line
  after the command's own header (for a capture this small, the ``live: done`` summary, so its
  outputs are written by then);
- ``tapeflow ingest --format sim FILE`` into a lake and the embedded ClickHouse: seconds to exit.

Both run with the numba kernel cache as ``make setup`` leaves it (``python -m tapeflow.warm``:
the headline figures) and with an empty one (``NUMBA_CACHE_DIR`` pointed at an empty folder: what
a checkout nobody warmed pays on its first run; reported beside them, one run each).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import Goal, Report

# before: the first run of a fresh checkout (nothing compiled the kernels), 2-core machine shared by others
LIVE = Goal("cold start: tapeflow live --capture, first output", "s", 2.0, higher_is_better=False,
            before="22-24 s (14 s CPU)")
INGEST = Goal("cold start: tapeflow ingest, small file", "s", 2.0, higher_is_better=False,
              before="2-4 s (1.7 s CPU)")
LIVE_EMPTY = Goal("cold start: tapeflow live, empty numba cache", "s", None, higher_is_better=False,
                  before="22-24 s (14 s CPU)")
INGEST_EMPTY = Goal("cold start: tapeflow ingest, empty numba cache", "s", None, higher_is_better=False,
                    before="2-4 s (1.7 s CPU)")
FIGURES = (LIVE, INGEST, LIVE_EMPTY, INGEST_EMPTY)
# the warm figures after round 1 of issue 8 (quiet machine), when tapeflow live still ran its flow in a child
ROUND1 = {"live": "; round 1: 2.47 s, 3.4 s CPU", "ingest": "; round 1: 1.46 s, 1.9 s CPU"}
CAPTURE_SECONDS = 5


def first_output_s(argv: list[str], env: dict[str, str], *,
                   skip_prefix: str = "") -> tuple[float, float, float]:
    """Wall seconds to the first output line (not starting with ``skip_prefix``) and to exit, and the
    CPU seconds of the process tree, of a new process.

    Raises:
        RuntimeError: the command failed (its output is in the message).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    first, lines = None, []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if first is None and line.strip() and not (skip_prefix and line.startswith(skip_prefix)):
            first = time.perf_counter() - t0
    code = proc.wait()
    done = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if code:
        raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{''.join(lines[-20:])}")
    return (done if first is None else first), done, cpu


def _cases(capture: Path, scratch: Path) -> dict[str, tuple[list[str], str]]:
    cli = [sys.executable, "-m", "tapeflow.cli"]
    return {
        "live": (cli + ["live", "--capture", str(capture), "--format", "sim", "--lake", str(scratch / "live"),
                        "--no-clickhouse"], "live: capture "),
        "ingest": (cli + ["ingest", "--format", "sim", str(capture), "--lake", str(scratch / "lake"),
                          "--clickhouse", f"chdb://{scratch / 'warehouse'}", "--quiet"], ""),
    }


def run(report: Report) -> None:
    """Time the cold starts (see the module docstring)."""
    from tapeflow import warm
    from tapeflow.simulator import simulate

    report.section("cold start: a new process per run, small simulated capture")
    if not warm.is_current():
        t0 = time.perf_counter()
        warm.warm(out=lambda line: None)
        report.note(f"the kernel cache was not current (no make setup since the kernels changed): "
                    f"python -m tapeflow.warm built it first in {time.perf_counter() - t0:.0f} s")
    repeats = 1 if report.quick else 3
    with tempfile.TemporaryDirectory(prefix="tapeflow-coldstart-") as tmp:
        root = Path(tmp)
        capture = simulate(11, 1, CAPTURE_SECONDS * 10**9, root / "sim", "crypto", progress=False).files[0]
        cases = _cases(capture, root)
        for name, goal, empty_goal in (("live", LIVE, LIVE_EMPTY), ("ingest", INGEST, INGEST_EMPTY)):
            argv, skip = cases[name]
            first_output_s(argv, dict(os.environ), skip_prefix=skip)  # untimed: the OS file cache
            warmed = [first_output_s(argv, dict(os.environ), skip_prefix=skip) for _ in range(repeats)]
            first, done, cpu = (statistics.median(w[i] for w in warmed) for i in (0, 1, 2))
            empty_dir = Path(tempfile.mkdtemp(prefix="numba-empty-", dir=root))
            empty = first_output_s(argv, os.environ | {"NUMBA_CACHE_DIR": str(empty_dir)}, skip_prefix=skip)
            report.record(goal, first, note=f"median of {repeats}; {_detail(done, cpu)}{ROUND1[name]}")
            report.record(empty_goal, empty[0], note=f"one run; {_detail(empty[1], empty[2])}")
        size = capture.stat().st_size
        report.note(f"input: {CAPTURE_SECONDS} s of one simulated instrument ({size:,} bytes); CPU: user + "
                    f"system seconds of the command's process tree (on a shared machine the wall time also "
                    f"counts waiting for a core)")


def _detail(done_s: float, cpu_s: float) -> str:
    return f"exit after {done_s:.1f} s; {cpu_s:.1f} s CPU"
