"""A short coverage-guided atheris run of every decoder (``make fuzz`` runs each for minutes).

Each run is its own process (libFuzzer runs once per process): ``ATHERIS_SECONDS`` of fuzzing
(3 by default) after the decoder's imports, from seed ``ATHERIS_SEED`` (1; 0 is random). It passes
when libFuzzer finishes its time without a crash: no exception but a ``TapeflowError`` and
conservation on every input.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.venues import FORMATS

pytest.importorskip("atheris", reason="atheris (the test extra) is not installed")

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("ATHERIS_SECONDS", "3"))
# a fixed seed by default: `make test` replays the same input sequence (as far as its seconds reach),
# so a red run is reproducible; `make fuzz` and ATHERIS_SEED=0 (libFuzzer: random) explore
SEED = int(os.environ.get("ATHERIS_SEED", "1"))
RSS_ROOM_MB = 2048  # what one fuzzer may add to the peak it inherits


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_short_atheris_run_finds_no_crash(fmt: str, tmp_path: Path) -> None:
    # libFuzzer judges memory by the process's peak RSS, which Linux carries over fork and exec: a
    # pytest worker that had grown past 2 GB made every fuzzer it started "out of memory" at its
    # first input (exit 71, seen in a clean-clone run). The limit is the worker's peak plus room;
    # `make fuzz` starts the fuzzer from make and keeps libFuzzer's own 2 GB limit.
    limit_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + RSS_ROOM_MB
    command = [sys.executable, "-m", "tests.fuzz.atheris_target", fmt, f"-max_total_time={SECONDS}",
               f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", f"-seed={SEED}",
               f"-rss_limit_mb={limit_mb}"]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SECONDS + 120,
                          check=False)
    output = proc.stdout + proc.stderr
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert proc.returncode == 0 and not crashes, f"{fmt}: exit {proc.returncode}, {crashes}\n{output[-4000:]}"
    runs = [line for line in output.splitlines() if line.startswith("stat::number_of_executed_units")]
    assert runs and int(runs[0].split(":")[-1]) > 0, output[-2000:]
