"""The lake's commit protocol under crashes: a writer SIGKILLed before each of its filesystem steps
leaves the old set of parts or the new one, never both and never rows without their token; readers
see one committed version at every instant, and a rerun ends with exactly the right rows.

Each crash runs in a child process that counts every step by which the writer changes the
filesystem (mkdir, a Parquet write, rename, directory exchange, link, unlink, rmdir, rmtree; not
fsync, which changes nothing a process crash can see) and kills itself with SIGKILL just before
step k, for k = 1, 2, ... until a run completes without reaching k. The children are forked from one
process that has imported the writer (``_ZYGOTE``): a fresh interpreter per step spent ~1 s importing
pyarrow, polars and the storage package for a few milliseconds of writing, ~50 times per module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from tapeflow.schemas.records import BOOK_DELTA
from tapeflow.storage import lake, parts
from tapeflow.storage.batches import batch_token
from tapeflow.storage.writer import Writer
from tests.forkserver import request
from tests.storage.samples import synthetic_deltas

REPO = Path(__file__).resolve().parents[2]
N_BATCHES = 6

_ZYGOTE = r"""
import os, shutil, signal, sys, traceback
from pathlib import Path
import pyarrow.parquet as pq
from tapeflow.storage import parts
from tests.storage.test_commit_protocol import run_scenario

def child(root, kill_at, scenario):
    steps = [0]

    def counted(fn):
        def step(*args, **kwargs):
            steps[0] += 1
            if steps[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return step

    for name in ("rename", "replace", "link", "mkdir", "unlink", "rmdir"):
        setattr(os, name, counted(getattr(os, name)))
    shutil.rmtree = counted(shutil.rmtree)
    parts._exchange = counted(parts._exchange)
    pq.write_table = counted(pq.write_table)
    pq.ParquetWriter.write_table = counted(pq.ParquetWriter.write_table)
    run_scenario(root, scenario)
    print("DONE", steps[0])

# one request a line (ROOT KILL_AT SCENARIO OUT): tests.forkserver forks a child per line
from tests.forkserver import serve
serve(lambda f: child(Path(f[0]), int(f[1]), f[2]))
"""


def batches() -> list[pa.Table]:
    stream = synthetic_deltas(600, seed=5)
    size = stream.num_rows // N_BATCHES
    return [stream.slice(i * size, size) for i in range(N_BATCHES)]


def multiset(table: pa.Table) -> Counter[int]:
    return Counter(pl.from_arrow(table).hash_rows(seed=0).to_list()) if table.num_rows else Counter()


def run_scenario(root: Path, scenario: str) -> None:
    """The writer work a child does after the untimed setup (what it may be killed in)."""
    data = batches()
    if scenario == "append":  # the last batch appended, the tiered merge it triggers, then compaction
        with Writer(root, fanout=2) as writer:
            for table in data:  # a rerun redelivers every batch: the tokens keep it exactly-once
                writer.append(BOOK_DELTA, table, token=batch_token("book_delta", table))
            writer.flush()
    elif scenario == "merge":  # a streaming merge spilling several runs into an appended partition
        with Writer(root, spill_rows=2 * data[0].num_rows) as writer:
            with writer.load(BOOK_DELTA, "merge") as load:
                for table in data:
                    load.add(table)
                load.commit()
    else:
        raise AssertionError(scenario)


def setup(root: Path) -> None:
    """Five of the six batches appended and flushed one by one: a base-less partition of parts."""
    writer = Writer(root, fanout=2)  # never closed: the parts stay uncompacted
    for table in batches()[:-1]:
        writer.append(BOOK_DELTA, table, token=batch_token("book_delta", table))
        writer.flush()


def visible(root: Path) -> tuple[Counter[int], int]:
    """What lake.read and a plain pyarrow hive dataset see (the latter: row count of every file)."""
    dataset = ds.dataset(root / "book_delta", format="parquet", partitioning="hive")
    return multiset(lake.read(BOOK_DELTA, root)), dataset.count_rows()


@pytest.fixture(scope="module")
def zygote() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(REPO)})
    yield proc
    proc.stdin.close()
    proc.wait(timeout=60)


def run_child(zygote: subprocess.Popen[str], root: Path, kill_at: int, scenario: str,
              timeout_s: float = 120) -> tuple[int, str, str]:
    """The scenario in a child forked from ``zygote``, SIGKILLed before step ``kill_at``: its exit
    code (-9: killed), stdout and stderr."""
    return request(zygote, [str(root), str(kill_at), scenario], f"{root}.child", timeout_s,
                   f"step {kill_at}: the child")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    setup(root)
    assert len(parts.list_parts(next((root / "book_delta").glob("*/*/*")))) > 1
    return root


@pytest.mark.parametrize("scenario", ["append", "merge"])
def test_sigkill_before_every_step_leaves_old_or_new_and_a_rerun_is_exact(
        template: Path, zygote: subprocess.Popen[str], tmp_path: Path, scenario: str) -> None:
    data = batches()
    before, after = multiset(pa.concat_tables(data[:-1])), multiset(pa.concat_tables(data))
    kill_at, completed, outcomes = 1, False, Counter()
    while not completed:
        root = tmp_path / f"k{kill_at}"
        shutil.copytree(template, root)
        returncode, stdout, stderr = run_child(zygote, root, kill_at, scenario)
        completed = returncode == 0 and stdout.startswith("DONE")
        assert completed or returncode == -9, stderr[-2000:]
        seen, hive_rows = visible(root)
        # the old set or the new set: never both, never a part without its rows or token
        assert seen in (before, after), f"step {kill_at}: {sum(seen.values())} rows"
        assert hive_rows == sum(seen.values()), f"step {kill_at}: a plain hive reader sees other rows"
        outcomes["new" if seen == after else "old"] += 1
        run_scenario(root, scenario)  # the rerun: a resumed flow redelivers, a re-run load re-adds
        assert multiset(lake.read(BOOK_DELTA, root)) == after, f"rerun after a kill at step {kill_at}"
        shutil.rmtree(root)
        kill_at += 1
    # the kills landed on both sides of the commit point, and at every step of the protocol
    assert outcomes["old"] >= 3 and outcomes["new"] >= 2, outcomes
    assert kill_at > 8


def test_readers_always_see_one_committed_version_while_the_writer_works(tmp_path: Path) -> None:
    data = [t for t in batches() for _ in range(4)]  # 24 flushes: merges at every level, then compaction
    tokens = [batch_token(f"{i}", t) for i, t in enumerate(data)]
    committed = [Counter()]
    for table in data:
        committed.append(committed[-1] + multiset(table))
    errors: list[str] = []
    reads = [0]
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            got = multiset(lake.read(BOOK_DELTA, tmp_path))
            if got not in committed:
                errors.append(f"read {sum(got.values())} rows: not a committed version")
            reads[0] += 1

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        with Writer(tmp_path, fanout=2) as writer:
            for table, token in zip(data, tokens, strict=True):
                writer.append(BOOK_DELTA, table, token=token)
                writer.flush()
    finally:
        stop.set()
        reader.join()
    assert not errors, errors[:3]
    assert reads[0] > 10
    assert multiset(lake.read(BOOK_DELTA, tmp_path)) == committed[-1]


def test_staging_lives_outside_every_dataset_and_partition(tmp_path: Path) -> None:
    table = batches()[0]
    with Writer(tmp_path) as writer:
        writer.append(BOOK_DELTA, table, token="t")
        writer.flush()
        staged = parts.temp_path(tmp_path)
        staged.write_bytes(b"PAR1 half a part")  # what a killed writer leaves behind
    assert staged.parent == tmp_path / parts.STAGING
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == table.num_rows
    assert ds.dataset(tmp_path / "book_delta", format="parquet").count_rows() == table.num_rows


def test_a_filesystem_without_directory_exchange_swaps_by_two_renames_and_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = batches()

    def no_exchange(a: Path, b: Path) -> None:
        raise parts._NoExchange

    monkeypatch.setattr(parts, "_exchange", no_exchange)
    with Writer(tmp_path, fanout=2) as writer:
        for table in data:
            writer.append(BOOK_DELTA, table, token=batch_token("book_delta", table))
            writer.flush()
    assert multiset(lake.read(BOOK_DELTA, tmp_path)) == multiset(pa.concat_tables(data))
    # a crash between the two renames: the partition is missing, its complete new version is in staging
    directory = next((tmp_path / "book_delta").glob("*/*/*"))
    version = parts.new_version(tmp_path)
    for p in parts.list_parts(directory):
        parts.link_into(directory, p.name, version)
    journal = tmp_path / parts.STAGING / f"{version.name}{parts._JOURNAL}"
    journal.write_text(f'{{"target": "{directory.relative_to(tmp_path)}", "version": "{version.name}"}}')
    shutil.rmtree(directory)
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == 0
    assert parts.recover(tmp_path) == 1
    assert multiset(lake.read(BOOK_DELTA, tmp_path)) == multiset(pa.concat_tables(data))
    assert not journal.exists()
