"""Leftovers of a writer killed mid-commit: orphan ``_stage_*`` tables, staging files, a lake and a
warehouse that disagree. Opening the next writer removes them (only a dead writer's: a live
concurrent writer's staging files stay) and makes the two stores agree even before the rerun.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tapeflow.storage.ingest import ingest
from tapeflow.storage.parts import STAGING
from tapeflow.storage.writer import Writer
from tests.crash.child import FLUSH_ROWS, FORMAT
from tests.crash.harness import RECORDS, REPO, contents, run_child, stage_tables, staging_entries, trades_file


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("inputs")
    return [trades_file(folder / "a.csv", 4000, first_id=1, seed=1, bad=2)]


# the first load's warehouse swap (its lake swapped: the stores disagree), a lake swap of the
# second load (its lake half swapped), the second load's warehouse swap
@pytest.mark.parametrize("kill", ["stage_commit:1", "exchange:2", "stage_commit:2"])
def test_open_cleans_a_killed_writers_leftovers_and_the_stores_agree(inputs: list[Path], tmp_path: Path,
                                                                    kill: str) -> None:
    lake_root, dsn = tmp_path / "lake", f"chdb:{tmp_path / 'ch'}"
    run_child(tmp_path / "lake", dsn, "0", inputs)  # an earlier load: the kill hits a re-ingest
    more = trades_file(tmp_path / "b.csv", 3000, first_id=10_000)
    code, _ = run_child(lake_root, dsn, kill, [*inputs, more])
    assert code == -signal.SIGKILL
    assert stage_tables(dsn), "the kill left no stage table: the test proves nothing"
    assert staging_entries(lake_root), "the kill left nothing in staging: the test proves nothing"
    before = contents(lake_root, dsn)
    if kill == "stage_commit:2":  # b.csv's trades swapped into the lake, not into the warehouse
        assert any(before.lake_rows(n) != before.warehouse[n] for n in RECORDS)

    with Writer(lake_root, dsn) as writer:
        cleaned = writer.cleaned
    assert cleaned.stages and cleaned.removed and cleaned.repaired
    assert stage_tables(dsn) == [] and staging_entries(lake_root) == []
    after = contents(lake_root, dsn)
    for name in RECORDS:
        assert after.lake_rows(name) == after.warehouse[name], f"{name}: the stores still disagree"

    ingest(FORMAT, [*inputs, tmp_path / "b.csv"], lake=lake_root, clickhouse=dsn, progress=False,
           flush_rows=FLUSH_ROWS)
    ref = tmp_path / "ref"
    ingest(FORMAT, [*inputs, tmp_path / "b.csv"], lake=ref / "lake", clickhouse=f"chdb:{ref / 'ch'}",
           progress=False, flush_rows=FLUSH_ROWS)
    expected, got = contents(ref / "lake", f"chdb:{ref / 'ch'}"), contents(lake_root, dsn)
    for name in RECORDS:
        assert got.lake[name].equals(expected.lake[name])
        assert got.warehouse[name] == expected.warehouse[name]


_LIVE = r"""
import sys, time
from pathlib import Path
from tapeflow.storage.parts import temp_path
path = temp_path(Path(sys.argv[1]))
path.write_bytes(b"a run being written")
print(path.name, flush=True)
time.sleep(300)
"""


def test_a_live_writers_staging_is_spared_and_removed_once_it_died(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    live = subprocess.Popen([sys.executable, "-c", _LIVE, str(root)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None
        name = live.stdout.readline().strip()
        with Writer(root) as writer:
            assert writer.cleaned.removed == []
        assert (root / STAGING / name).exists()
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
        if live.stdout is not None:
            live.stdout.close()
    with Writer(root) as writer:
        assert writer.cleaned.removed == [name]
    assert staging_entries(root) == []
