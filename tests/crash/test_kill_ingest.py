"""kill -9 at random points of an ingest (lake and chdb), then a rerun: both stores end exactly as
after an uninterrupted run, agree with each other, and hold no leftovers.

A child process (:mod:`tests.crash.child`) ingests two Tardis trade files (two symbols over two
days, two dead-lettered lines: two loads, eight partitions, spilled runs merged at the commit) and
SIGKILLs itself just before its k-th step; k is drawn at random over the steps an uninterrupted run
takes (seed printed; ``TAPEFLOW_CRASH_SEED`` replays one). The rerun is the same ingest.
``TAPEFLOW_CRASH_POINTS`` sets how many points (``make crash``: 50; ``make test``: 8).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from tapeflow.storage.ingest import ingest
from tests.crash.child import FLUSH_ROWS, FORMAT
from tests.crash.harness import RECORDS, contents, run_child, stage_tables, staging_entries, trades_file

POINTS = int(os.environ.get("TAPEFLOW_CRASH_POINTS", "8"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("inputs")
    return [trades_file(folder / "a.csv", 4000, first_id=1, seed=1, bad=2),
            trades_file(folder / "b.csv", 3000, first_id=10_000, seed=2)]


def test_kill_at_random_points_then_rerun_equals_uninterrupted(inputs: list[Path], tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    code, out = run_child(ref / "lake", f"chdb:{ref / 'ch'}", "0", inputs)
    steps = int(out.split()[-1])
    expected = contents(ref / "lake", f"chdb:{ref / 'ch'}")
    assert expected.lake["trade"].num_rows == 7000 and expected.lake["rejected"].num_rows == 2
    seed = int(os.environ.get("TAPEFLOW_CRASH_SEED", time.time_ns() % 2**32))
    points = sorted(random.Random(seed).sample(range(1, steps), min(POINTS, steps - 1)))
    print(f"crash seed {seed}: kill before steps {points} of {steps}")
    landed = 0
    for k in points:
        run = tmp_path / f"k{k}"
        lake_root, dsn = run / "lake", f"chdb:{run / 'ch'}"
        code, _ = run_child(lake_root, dsn, str(k), inputs)
        landed += code == -signal.SIGKILL
        ingest(FORMAT, inputs, lake=lake_root, clickhouse=dsn, progress=False, flush_rows=FLUSH_ROWS)
        got = contents(lake_root, dsn)
        for name in RECORDS:
            assert got.lake[name].equals(expected.lake[name]), f"seed {seed}, step {k}: lake {name} differs"
            assert got.warehouse[name] == expected.warehouse[name], f"seed {seed}, step {k}: warehouse {name}"
            assert got.lake_rows(name) == got.warehouse[name], f"seed {seed}, step {k}: stores disagree"
        assert staging_entries(lake_root) == [], f"seed {seed}, step {k}: leftovers in staging"
        assert stage_tables(dsn) == [], f"seed {seed}, step {k}: orphan stage tables"
        shutil.rmtree(run)
    assert landed >= len(points) - 1, f"seed {seed}: only {landed} of {len(points)} kills landed"
