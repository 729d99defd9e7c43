"""Recovery: kill -9 the market flow at seeded random points, resume with Bytewax recovery, and the
warehouse and the lake end up identical to an uninterrupted run: no loss, no duplicates.

The flow is flow-core's ``build_market_flow`` over the first lines of the real Binance USD-M capture
(book snapshots, bars, metrics and the decoded rows), run as ``python -m bytewax.run`` in a child
process with ``-r`` so a real SIGKILL hits it (each final resume runs in the test's own process, with
the same recovery settings: no kill hits it, so it pays no child's startup, ~3 s of CPU for the
imports; the uninterrupted reference stays a child, timed as the killed runs are). The control is a
plain-append lake sink in the same flow (chdb allows one data directory per process, so the control
writes the lake only): under the same kills it must show duplicated rows, which also proves that the
kills made the flow re-emit batches into the idempotent sinks, so the test can fail.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from flows.market import MarketSinks, build_market_flow
from flows.sinks import LakeSink, TableSink
from flows.sources import CaptureSource
from tapeflow.schemas import ALL_RECORDS
from tapeflow.settings import Settings
from tapeflow.storage import lake
from tapeflow.storage.parts import STAGING
from tapeflow.storage.warehouse import Warehouse
from tests.flows.flowdata import binance_prefix

REPO = Path(__file__).resolve().parents[2]
LINES = 4000          # capture lines replayed: a few seconds of flow, long enough to be killed mid-run
BATCH_EVENTS = 500    # small micro-batches: many sink writes per epoch, so a kill always loses some
EPOCH_S = "1"         # snapshot interval (bytewax.run takes whole seconds): a few epochs per run
KILLS = int(os.environ.get("TAPEFLOW_CRASH_LIVE_KILLS", "3"))  # `make crash`: 50
POINTS = int(os.environ.get("TAPEFLOW_CRASH_LIVE_POINTS", "1"))  # `make crash`: 50
SEED = int(os.environ.get("TAPEFLOW_CRASH_SEED", "20261121"))


def recovery_flow(control_lake: str, lake_root: str | None = None, dsn: str | None = None,
                  capture: str | None = None) -> Dataflow:
    """The flow the child process runs: the market flow with every table into chdb and the lake,
    idempotently, and the same items into ``control_lake`` by plain append. The child reads the
    lake, the warehouse and the capture from its environment; a run in this process names them."""
    settings = Settings.from_env()
    lake_root, dsn = lake_root or settings.lake_dir, dsn or settings.clickhouse_dsn
    source = CaptureSource("binance", [capture or os.environ["TAPEFLOW_LIVE_CAPTURE"]],
                           batch_events=BATCH_EVENTS, batch_ns=None)
    # flush_s=0: the lakes write every batch through, as ClickHouse does. Buffered until the epoch
    # snapshot, even a plain append would rarely repeat a row (what the control must show), and the
    # idempotent lake's token check would rarely be exercised.
    sinks = MarketSinks(tables=TableSink(dsn=dsn, lake_root=lake_root, flush_s=0),
                        extra=(LakeSink(control_lake, idempotent=False, flush_s=0),))
    return build_market_flow(source, sinks, intervals=("1s", "1m"))


def _env(root: Path, capture: Path) -> dict[str, str]:
    return os.environ | {"TAPEFLOW_LAKE": str(root / "lake"), "TAPEFLOW_CLICKHOUSE": f"chdb://{root / 'ch'}",
                         "TAPEFLOW_LIVE_CAPTURE": str(capture), "PYTHONPATH": str(REPO)}


def _start(root: Path, capture: Path, recovery: bool) -> subprocess.Popen[bytes]:
    factory = f"tests.flows.test_recovery:recovery_flow({str(root / 'control')!r})"
    cmd = [sys.executable, "-m", "bytewax.run", factory]
    if recovery:
        cmd += ["-r", str(root / "recovery"), "-s", EPOCH_S, "-b", "0"]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(root, capture), stdout=subprocess.DEVNULL,
                            stderr=open(root / "stderr.log", "ab"))  # noqa: SIM115 - the child owns it


def _resume_here(root: Path, capture: Path) -> None:
    """The same run as :func:`_start`'s child with recovery, in this process (one that no kill hits)."""
    flow = recovery_flow(str(root / "control"), str(root / "lake"), f"chdb://{root / 'ch'}", str(capture))
    # what `-r DIR -s 1 -b 0` sets
    run_main(flow, epoch_interval=timedelta(seconds=int(EPOCH_S)),
             recovery_config=RecoveryConfig(str(root / "recovery"), backup_interval=timedelta(0)))


def _newest_write(root: Path) -> float:
    lake_dir = root / "lake"
    if not lake_dir.exists():
        return 0.0
    newest = 0.0
    for p in lake_dir.rglob("*.parquet"):
        if ".tapeflow" in p.parts:
            continue  # the writer's staging files: renamed into place or removed while we look
        try:
            newest = max(newest, p.stat().st_mtime)
        except FileNotFoundError:
            continue  # a part compacted away between the listing and the stat
    return newest


def _wait(proc: subprocess.Popen[bytes], root: Path, timeout_s: float = 120) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"flow did not finish in {timeout_s} s; see {root / 'stderr.log'}") from None


def run_uninterrupted(root: Path, capture: Path) -> float:
    """Run to the end; return how long it wrote (first lake write to exit), to place the kills."""
    proc = _start(root, capture, recovery=False)
    first = 0.0
    while proc.poll() is None:
        first = first or (time.time() if _newest_write(root) else 0.0)
        time.sleep(0.02)
    assert proc.returncode == 0, (root / "stderr.log").read_text()[-3000:]
    return time.time() - first if first else 1.0


def run_with_kills(root: Path, capture: Path, *, writing_s: float, seed: int, kills: int = KILLS) -> int:
    """Start with recovery, SIGKILL at a seeded random moment after the run starts writing, resume;
    ``kills`` times, then let it finish. Returns how many kills landed mid-run."""
    (root / "recovery").mkdir()
    init_db_dir(root / "recovery", 1)  # what `python -m bytewax.recovery DIR 1` runs
    rng = random.Random(seed)
    landed = 0
    for _ in range(kills):
        before = _newest_write(root)
        proc = _start(root, capture, recovery=True)
        while proc.poll() is None and _newest_write(root) <= before:
            time.sleep(0.01)  # wait until this run writes: startup time varies with the machine's load
        # early in what is left: each resume has less to do than the run before
        time.sleep(rng.uniform(0.05, 0.4) * writing_s)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            landed += 1
        assert _wait(proc, root) in (0, -signal.SIGKILL)
    _resume_here(root, capture)  # then let it finish: the last resume
    return landed


def run_killed_once(root: Path, capture: Path, *, after_s: float) -> bool:
    """Start with recovery, SIGKILL ``after_s`` after the run's first lake write, then rerun (resume)
    to the end. Returns whether the kill hit the running flow."""
    (root / "recovery").mkdir()
    init_db_dir(root / "recovery", 1)  # what `python -m bytewax.recovery DIR 1` runs
    proc = _start(root, capture, recovery=True)
    while proc.poll() is None and not _newest_write(root):
        time.sleep(0.01)
    time.sleep(after_s)
    landed = proc.poll() is None
    if landed:
        proc.send_signal(signal.SIGKILL)
    assert _wait(proc, root) in (0, -signal.SIGKILL)
    _resume_here(root, capture)
    return landed


def contents(root: Path) -> dict[str, Counter[int]]:
    """Every table of the warehouse and every lake dataset as a multiset of row hashes."""
    out: dict[str, Counter[int]] = {}
    with Warehouse(f"chdb://{root / 'ch'}") as wh:
        for record in ALL_RECORDS.values():
            rows = wh.fetch(record) if wh.count(record) else record.empty_table()
            out[f"ch.{record.name}"] = _multiset(rows)
    for record in ALL_RECORDS.values():
        out[f"lake.{record.name}"] = _multiset(lake.read(record, root / "lake"))
        out[f"control.{record.name}"] = _multiset(lake.read(record, root / "control"))
    return {k: v for k, v in out.items() if v}


def _multiset(table: pa.Table) -> Counter[int]:
    return Counter(pl.from_arrow(table).hash_rows(seed=0).to_list()) if table.num_rows else Counter()


Contents = dict[str, Counter[int]]


@pytest.fixture(scope="module")
def capture() -> Path:
    return binance_prefix(LINES)


@pytest.fixture(scope="module")
def reference(capture: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Contents, float]:
    root = tmp_path_factory.mktemp("reference")
    writing_s = run_uninterrupted(root, capture)
    return contents(root), writing_s


@pytest.fixture(scope="module")
def killed(capture: Path, reference: tuple[Contents, float],
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Contents, int]:
    root = tmp_path_factory.mktemp("killed")
    landed = run_with_kills(root, capture, writing_s=reference[1], seed=SEED)
    # the resumed flow's writers cleaned what the killed ones left in the lake's staging area
    staging = root / "lake" / STAGING
    assert not staging.exists() or not any(staging.iterdir()), sorted(p.name for p in staging.iterdir())
    return contents(root), landed


def _diff(expected: Contents, got: Contents, prefix: str) -> tuple[dict[str, int], dict[str, int]]:
    names = {n for n in (*expected, *got) if n.startswith(prefix)}
    lost = {n: sum((expected.get(n, Counter()) - got.get(n, Counter())).values()) for n in names}
    extra = {n: sum((got.get(n, Counter()) - expected.get(n, Counter())).values()) for n in names}
    return lost, extra


def test_kill_and_resume_equals_uninterrupted(reference: tuple[Contents, float],
                                              killed: tuple[Contents, int]) -> None:
    expected, got, landed = reference[0], killed[0], killed[1]
    # the reference holds the flow's whole output (decoded rows, books, bars, metrics) in both stores
    for name in ("book_delta", "trade", "quote", "book_snapshot", "bar", "metric"):
        assert sum(expected.get(f"ch.{name}", Counter()).values()) > 0, name
        assert expected.get(f"ch.{name}") == expected.get(f"lake.{name}") == expected.get(f"control.{name}")
    assert landed >= 2, f"only {landed} of {KILLS} kills hit a running flow"
    for prefix in ("ch.", "lake."):
        lost, extra = _diff(expected, got, prefix)
        assert not any(lost.values()) and not any(extra.values()), (lost, extra)


def test_control_plain_append_shows_the_duplicates(reference: tuple[Contents, float],
                                                   killed: tuple[Contents, int]) -> None:
    lost, extra = _diff(reference[0], killed[0], "control.")
    assert sum(extra.values()) > 0 and extra["control.book_delta"] > 0, extra
    assert not any(lost.values()), lost  # at-least-once: nothing lost, only repeated


def test_each_kill_point_then_a_rerun_equals_uninterrupted_and_the_stores_agree(
        capture: Path, reference: tuple[Contents, float], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Independent points (``TAPEFLOW_CRASH_LIVE_POINTS``; 50 in ``make crash``): a fresh run killed
    once at a moment drawn uniformly over the time the uninterrupted run wrote, then rerun with
    recovery. After every rerun the warehouse and the lake each equal the uninterrupted run (and so
    each other). A kill that finds the flow already done (the machine ran it faster) is tried again
    at half the moment (up to 12 times), so every point is a kill that landed."""
    expected, writing_s = reference
    rng = random.Random(SEED + 1)
    moments = [rng.uniform(0.0, 0.9) * writing_s for _ in range(POINTS)]
    print(f"live kill points: seed {SEED + 1}, {POINTS} point(s) at "
          f"{', '.join(f'{m:.2f}' for m in moments)} s after the first write (the run wrote "
          f"{writing_s:.2f} s)")
    for i, after_s in enumerate(moments):
        # the moments scale with the reference run's writing time, measured at whatever load the
        # machine had then; a point run on a quieter machine can be done within seconds (seen: a
        # 75.75 s reference, a point done 5.4 s after its first write), so keep halving
        for _ in range(12):
            root = tmp_path_factory.mktemp(f"point{i}-")
            if run_killed_once(root, capture, after_s=after_s):
                break
            print(f"point {i}: the flow was done {after_s:.2f} s after its first write; again at half")
            after_s /= 2
        else:
            raise AssertionError(f"point {i}: no kill hit a running flow")
        got = contents(root)
        for prefix in ("ch.", "lake."):
            lost, extra = _diff(expected, got, prefix)
            assert not any(lost.values()) and not any(extra.values()), (i, after_s, lost, extra)
        for record in ALL_RECORDS.values():
            assert got.get(f"ch.{record.name}") == got.get(f"lake.{record.name}"), (i, after_s, record.name)
        staging = root / "lake" / STAGING
        assert not staging.exists() or not any(staging.iterdir()), (i, after_s)
    print(f"live kill points: all {POINTS} landed, every rerun equal to the uninterrupted run")
