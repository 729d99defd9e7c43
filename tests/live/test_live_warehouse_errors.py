"""``tapeflow live`` with a warehouse it cannot reach: one error line, no traceback, exit 2, both
before the flow starts (through the real CLI in a subprocess) and when the warehouse stops
answering mid-run (the sink retries with backoff, then stops; the lake keeps what it was given)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from tapeflow.errors import StorageError
from tapeflow.live.retry import WarehouseRetry, WarehouseUnavailable
from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage import lake
from tests.flows.flowdata import sim_market

REPO = Path(__file__).resolve().parents[2]
SECOND = 1_000_000_000


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _live(tmp_path: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    # never read: the warehouse is checked before the flow starts
    capture = tmp_path / "SIM-BTCUSDT.events.csv.gz"
    capture.write_bytes(b"")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    env.pop("TAPEFLOW_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "live", "--capture", str(capture), "--format", "sim",
         "--lake", str(tmp_path / "lake"), "--clickhouse", dsn],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _assert_one_error(run: subprocess.CompletedProcess[str], shown: str, reason: str) -> None:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "panicked" not in run.stderr, run.stderr[-3000:]
    assert len(lines) == 1, run.stderr[-3000:]
    assert lines[0].startswith("tapeflow: error: live: cannot open the warehouse ")
    assert shown in lines[0] and reason in lines[0] and "--no-clickhouse" in lines[0], lines[0]
    assert not (run.stdout.strip()), run.stdout  # refused before the flow started


def test_a_closed_port_is_one_error_with_the_masked_dsn(tmp_path: Path) -> None:
    port = _closed_port()
    run = _live(tmp_path, f"http://alice:s3cret-canary@127.0.0.1:{port}/db")
    _assert_one_error(run, f"http://***@127.0.0.1:{port}/db", "Connection refused")
    assert "s3cret-canary" not in run.stderr + run.stdout


def test_a_failed_tls_handshake_is_one_error(tmp_path: Path) -> None:
    from tests.security.tls_listener import tls_listener

    (tmp_path / "tls").mkdir()
    with tls_listener(tmp_path / "tls") as listener:
        run = _live(tmp_path, f"https://127.0.0.1:{listener.port}/")
    _assert_one_error(run, f"https://127.0.0.1:{listener.port}", "certificate")


def test_a_chdb_directory_that_cannot_be_created_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    run = _live(tmp_path, f"chdb:{tmp_path / 'a-file' / 'ch'}")
    _assert_one_error(run, f"chdb:{tmp_path / 'a-file' / 'ch'}", "Not a directory")


def test_a_chdb_directory_another_process_holds_is_one_error(tmp_path: Path) -> None:
    dsn = f"chdb:{tmp_path / 'ch'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom tapeflow.storage.warehouse import Warehouse\n"
         f"w = Warehouse({dsn!r})\nprint('open', flush=True)\ntime.sleep(120)"],
        env=os.environ | {"PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        run = _live(tmp_path, dsn)
    finally:
        holder.kill()
        holder.wait()
    _assert_one_error(run, dsn, "locked by another process")


def test_retry_waits_with_backoff_and_gives_up_after_its_budget() -> None:
    waits: list[float] = []
    err = io.StringIO()
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise StorageError("insert failed") from OperationalError("[Errno 111] Connection refused")
        return "stored"

    retrying = WarehouseRetry("http://u:pw@h:1/", budget_s=60, sleep=waits.append, err=err)
    assert retrying.call(flaky) == "stored"
    assert waits == [0.5, 1.0, 2.0]
    assert err.getvalue().count("unreachable ([Errno 111] Connection refused); retrying") == 3
    assert "is back after 3.5 s" in err.getvalue() and "pw" not in err.getvalue()

    def down() -> None:
        raise OperationalError("[Errno 111] Connection refused")

    waits.clear()
    with pytest.raises(WarehouseUnavailable, match="did not come back within 5 s"):
        WarehouseRetry("chdb:x", budget_s=5, sleep=waits.append, err=io.StringIO()).call(down)
    assert waits == [0.5, 1.0, 2.0, 1.5] and sum(waits) == 5

    def refused() -> None:  # the server answered: no retry
        raise StorageError("insert failed") from DatabaseError("Code: 252. TOO_MANY_PARTS")

    waits.clear()
    with pytest.raises(StorageError, match="insert failed"):
        WarehouseRetry("chdb:x", budget_s=60, sleep=waits.append, err=io.StringIO()).call(refused)
    assert waits == []


def test_a_warehouse_that_goes_away_mid_run_stops_with_one_error_and_the_lake_keeps_its_rows(
        tmp_path: Path) -> None:
    """The warehouse takes 3 batches, then refuses connections (``tests.live.flaky_warehouse``):
    the sink retries for its (shortened) budget, then the command exits 2 with one error, and
    every batch the warehouse took is in the lake too."""
    market = sim_market(10 * SECOND)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    env.pop("TAPEFLOW_TRACEBACK", None)
    run = subprocess.run(
        [sys.executable, "-m", "tests.live.flaky_warehouse", str(tmp_path / "stored"), "live",
         "--capture", *map(str, market), "--format", "sim", "--lake", str(tmp_path / "lake"),
         "--clickhouse", f"chdb:{tmp_path / 'ch'}", "--batch-events", "500"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    err = run.stderr
    assert run.returncode == 2, err[-3000:]
    assert "Traceback" not in err and "panicked" not in err and "Box<dyn Any>" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("tapeflow: error:")]
    assert len(errors) == 1, err[-3000:]
    assert f"the warehouse chdb:{tmp_path / 'ch'} stopped answering" in errors[0]
    assert "--no-clickhouse" in errors[0]
    assert err.count("unreachable ([Errno 111] Connection refused); retrying in") == 2  # 0.5 s, then 0.1 s
    assert len(err.strip().splitlines()) <= 8, err
    # the batches the warehouse took reached the lake before the flow stopped
    stored = [int(n) for n in (tmp_path / "stored").read_text().split()]
    in_lake = sum(lake.read(record, tmp_path / "lake").num_rows for record in ALL_RECORDS.values()
                  if (tmp_path / "lake" / record.name).exists())
    assert len(stored) == 3 and in_lake == sum(stored) > 0, (in_lake, stored)
