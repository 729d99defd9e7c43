"""kill -9 at random points of a Dagster materialization (one simulated instrument-day, every asset
and check), then a rerun: the lake and the warehouse end exactly as after an uninterrupted run and
agree with each other, with no staging leftovers or orphan stage tables.

A materialization takes ~30-80 s on the shared 2-core machine, so ``make test`` kills one random
point (``TAPEFLOW_CRASH_DAGSTER_POINTS``; ``make crash``: 50); the seed is printed
(``TAPEFLOW_CRASH_SEED`` replays it). Each kill hits a re-materialization of the reference's
deployment, and each rerun is compared with the uninterrupted run's outputs. Every run is a child
forked from one server process that imported Dagster and the assets (``--serve``); the session's
JAX compilation cache (tests/conftest.py) spares the later runs the detectors' compiles.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage import lake
from tapeflow.storage.warehouse import Warehouse
from tests.crash.harness import REPO, multiset, stage_tables, staging_entries
from tests.dagster.conftest import copy_landing
from tests.forkserver import request

POINTS = int(os.environ.get("TAPEFLOW_CRASH_DAGSTER_POINTS", "1"))


@pytest.fixture(scope="module")
def server() -> Iterator[subprocess.Popen[str]]:
    """:mod:`tests.crash.dagster_child` serving forks: Dagster and the assets imported once."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash.dagster_child", "--serve"], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=60)


def _run(server: subprocess.Popen[str], root: Path, kill: str, timeout_s: float = 900) -> tuple[int, str]:
    code, stdout, stderr = request(server, [str(root), kill], f"{root}.run{kill}", timeout_s,
                                   f"the materialization (kill {kill})")
    if code not in (0, -signal.SIGKILL):
        raise AssertionError(f"materialization failed ({code}):\n{stderr[-3000:]}")
    return code, stdout


def _outputs(root: Path) -> dict[str, tuple[object, object]]:
    out = {}
    with Warehouse(f"chdb://{root / 'warehouse'}") as wh:
        for name, record in sorted(ALL_RECORDS.items()):
            stored = wh.fetch(record) if wh.count(record) else record.empty_table()
            out[name] = (multiset(lake.read(record, root / "lake")), multiset(stored))
    return out


def test_kill_a_materialization_then_rerun_equals_uninterrupted(
        sim_files: Path, server: subprocess.Popen[str], tmp_path: Path) -> None:
    dep = copy_landing(sim_files, tmp_path / "dep")
    code, out = _run(server, dep.root, "0")
    assert out.split()[-1] == "True", "the uninterrupted materialization failed"
    expected = _outputs(dep.root)
    # the kills hit re-materializations, which take fewer steps than the first run (folders and
    # tables exist by then: 258 against 285): count the steps of one, which must change nothing
    code, out = _run(server, dep.root, "0")
    assert out.split()[-1] == "True", "the uninterrupted re-materialization failed"
    steps = int(out.split()[-2])
    assert _outputs(dep.root) == expected, "an uninterrupted re-materialization changed the stores"
    assert expected["trade"][0] and expected["book_snapshot"][0]
    seed = int(os.environ.get("TAPEFLOW_CRASH_SEED", time.time_ns() % 2**32))
    points = random.Random(seed).sample(range(1, steps), min(POINTS, steps - 1))
    print(f"crash seed {seed}: kill the materialization before steps {points} of {steps}")
    for k in points:
        code, _ = _run(server, dep.root, str(k))
        assert code == -signal.SIGKILL, f"seed {seed}, step {k}: the kill did not land"
        code, out = _run(server, dep.root, "0")
        assert out.split()[-1] == "True", f"seed {seed}, step {k}: the rerun failed"
        got = _outputs(dep.root)
        for name, (lake_rows, warehouse_rows) in got.items():
            assert lake_rows == expected[name][0], f"seed {seed}, step {k}: lake {name} differs"
            assert warehouse_rows == expected[name][1], f"seed {seed}, step {k}: warehouse {name} differs"
        assert staging_entries(dep.lake) == [], f"seed {seed}, step {k}: leftovers in staging"
        assert stage_tables(dep.dsn) == [], f"seed {seed}, step {k}: orphan stage tables"


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's simulated landing folder (tests/dagster/conftest.py), simulated once."""
    from tests.dagster.conftest import built_once, simulate_landing

    return built_once(tmp_path_factory, "sim", simulate_landing) / "landing"
