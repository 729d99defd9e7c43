"""SIGTERM and SIGINT stop ``tapeflow live`` and everything it started: the flow ends its batches,
its sinks flush (the lake holds every row the summary counts), the process tree is gone within
seconds, and the exit code is 143 (SIGTERM) or 130 (SIGINT). Run through the real CLI in a
subprocess on the simulator's live path (replay server -> ``SimClient`` -> flow)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.live.shutdown import SignalStop, stop_requested
from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage import lake
from tests.flows.flowdata import sim_market

REPO = Path(__file__).resolve().parents[2]
SECOND = 1_000_000_000
GONE_WITHIN_S = 45  # the clean stop's grace is 30 s (35 s for the parent of --processes)
FIRST_ROWS_S = 180  # cold start on a loaded machine


def _env() -> dict[str, str]:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    env.pop("TAPEFLOW_TRACEBACK", None)
    return env


@pytest.fixture
def server() -> Iterator[str]:
    """A replay server serving the 30-second simulated market in real time; yields its ws URL."""
    folder = sim_market(30 * SECOND)[0].parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", "replay-server", "--format", "sim",
                             str(folder), "--speed", "1", "--port", "0"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    url = None
    for line in proc.stdout:
        found = re.search(r"ws://127\.0\.0\.1:\d+", line)
        if found:
            url = found.group(0)
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe from filling
    try:
        assert url, "the replay server printed no ws:// URL"
        yield url
    finally:
        proc.kill()
        proc.wait()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (a zombie waiting for its parent's wait is not)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running.append(pid)
    return running


def _stop_live(tmp_path: Path, url: str, signum: int, *extra: str) -> tuple[int, str, str, float, int]:
    """Start ``tapeflow live``, wait for rows other than status, send ``signum`` to the command
    (its process only), and return its exit code, stdout, stderr and how long it and every process
    it had started took to disappear."""
    live = subprocess.Popen(
        [sys.executable, "-m", "tapeflow.cli", "live", "--venue", "sim",
         "--symbols", "SIM-BTCUSDT,SIM-ETHUSDT", "--endpoint", url, "--clock", "relative",
         "--lake", str(tmp_path / "lake"), "--no-clickhouse",
         "--journal", str(tmp_path / "journal"), *extra],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    err: list[str] = []
    assert live.stderr is not None
    reader = threading.Thread(target=lambda: err.extend(live.stderr or ()), daemon=True)
    reader.start()
    try:
        started = time.monotonic()
        while not any("order_event=" in line for line in list(err)):
            assert live.poll() is None, "".join(err)[-3000:]
            assert time.monotonic() - started < FIRST_ROWS_S, "".join(err)[-3000:]
            time.sleep(0.1)
        tree = _tree(live.pid)
        live.send_signal(signum)
        sent = time.monotonic()
        code = live.wait(timeout=GONE_WITHIN_S)
        while _alive(tree) and time.monotonic() - sent < GONE_WITHIN_S:
            time.sleep(0.1)
        gone_s = time.monotonic() - sent
        assert not _alive(tree), subprocess.run(["ps", "-o", "pid,ppid,cmd", "-p", ",".join(map(str, tree))],
                                                capture_output=True, text=True).stdout
    finally:
        for pid in _alive(_tree(live.pid)):
            os.kill(pid, signal.SIGKILL)
        live.wait()
    reader.join(timeout=5)
    out = live.stdout.read() if live.stdout else ""
    return code, out, "".join(err), gone_s, len(tree)


def _summary(out: str) -> dict[str, int]:
    last = out.strip().splitlines()[-1]
    rows = re.search(r"rows \((.*)\)$", last)
    assert rows, last
    return {name: int(n.replace(",", "")) for name, n in (p.split("=") for p in rows.group(1).split(", "))}


def _in_lake(root: Path, names: Iterator[str]) -> dict[str, int]:
    return {name: lake.read(ALL_RECORDS[name], root).num_rows for name in names}


def test_sigterm_stops_the_flow_cleanly_and_exits_143(server: str, tmp_path: Path) -> None:
    code, out, err, gone_s, _ = _stop_live(tmp_path, server, signal.SIGTERM)
    assert code == 143, err[-3000:]
    assert "Traceback" not in err and "panicked" not in err, err[-3000:]
    assert out.strip().splitlines()[-1].startswith("live: stopped by SIGTERM after "), out
    # a clean stop: the sinks flushed every row the flow produced
    counted = _summary(out)
    assert counted.get("order_event", 0) > 0, out
    assert _in_lake(tmp_path / "lake", iter(counted)) == counted
    print(f"process tree gone {gone_s:.1f} s after SIGTERM")


def test_sigint_stops_every_process_of_a_local_cluster_and_exits_130(server: str, tmp_path: Path) -> None:
    """``--processes 2``: the flow runs in two child processes, which the signal used to orphan."""
    code, out, err, gone_s, processes = _stop_live(tmp_path, server, signal.SIGINT, "--processes", "2")
    assert processes >= 3  # the command and its two flow processes, all gone
    assert code == 130, err[-3000:]
    assert err.count("SIGINT: stopping") == 1, err  # the children stop without a word of their own
    assert "Traceback" not in err and "panicked" not in err, err[-3000:]
    assert out.strip().splitlines()[-1].startswith("live: stopped by SIGINT after "), out
    counted = _summary(out)
    assert _in_lake(tmp_path / "lake", iter(counted)) == counted
    print(f"process tree gone {gone_s:.1f} s after SIGINT")


def test_a_flow_that_does_not_stop_within_the_grace_is_aborted() -> None:
    """The first signal only asks (sources end at their next poll); a flow that goes on past the
    grace is interrupted on the main thread, as Bytewax's signal check would see it."""
    with pytest.raises(KeyboardInterrupt), SignalStop(grace_s=0.3, err=io.StringIO()) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a flow ignoring the request
            assert stop_requested()
            time.sleep(0.01)
    assert stop.aborted and stop.exit_code == 143
    assert not stop_requested()  # left clean for the next run in this process


def test_a_second_signal_aborts_at_once() -> None:
    err = io.StringIO()
    with pytest.raises(KeyboardInterrupt), SignalStop(grace_s=60, err=err) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop_requested() and not stop.aborted
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    assert stop.aborted and stop.exit_code == 130
    assert "SIGINT: stopping" in err.getvalue() and "SIGINT again: aborting" in err.getvalue()


def test_a_signal_with_recovery_aborts_and_the_rerun_ends_as_an_uninterrupted_replay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``--recovery`` a signal aborts at once and the rerun resumes from the store: the lake
    then holds exactly what an uninterrupted replay writes (the batch rebuild's snapshots). A clean
    stop there (the streams ended) left the resumed replay without a single further snapshot: the
    book stage closes its state at the end of a stream. The signal is sent from the source's 4th
    poll, in the middle of the replay, to this process (the flow runs here)."""
    import flows.sources
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.cli import main
    from tapeflow.schemas.records import BOOK_SNAPSHOT

    market = sim_market(10 * SECOND)
    polls = {"n": 0}

    def signal_at_the_fourth_poll() -> bool:
        polls["n"] += 1
        if polls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return stop_requested()

    argv = ["live", "--capture", *map(str, market), "--format", "sim", "--lake", str(tmp_path / "lake"),
            "--no-clickhouse", "--recovery", str(tmp_path / "recovery"), "--snapshot-every", "1s",
            "--batch-events", "500"]
    want, _ = snapshots_for_format("sim", list(market), levels=10, interval_ns=SECOND)
    keys = [("symbol", "ascending"), ("ts_event_ns", "ascending")]
    monkeypatch.setattr(flows.sources, "stop_requested", signal_at_the_fourth_poll)
    assert main(argv) == 143
    stopped = lake.read(BOOK_SNAPSHOT, tmp_path / "lake") if (tmp_path / "lake" / "book_snapshot").exists() \
        else BOOK_SNAPSHOT.empty_table()
    assert stopped.num_rows < want.num_rows  # the signal cut the replay short
    monkeypatch.undo()
    assert main(argv) == 0
    assert lake.read(BOOK_SNAPSHOT, tmp_path / "lake").sort_by(keys).equals(want.sort_by(keys))
