"""``tapeflow replay-server`` serves, injects the faults it is given, reports, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tapeflow.cli import main
from tapeflow.replay import ReplayServer
from tests.conftest import REPO
from tests.replay.helpers import ns_lines, session

OKX = REPO / "tests" / "fixtures" / "okx" / "books_trades.ns.jsonl"


def _tapeflow(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tapeflow.cli", "replay-server", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_serves_until_interrupted() -> None:
    expected = [f for f in ns_lines(OKX) if f.startswith(b'{"arg":{"channel":"books","instId":"BTC-USDT"}')]
    proc = _tapeflow("--format", "okx", str(OKX), "--as-fast-as-possible", "--progress-every", "100ms",
                     "--fault", "drop@0")
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        # 17 captured lines, of which the 3 subscribe acks are answered by the server, not replayed
        assert re.search(r"okx: 14 frames from 1 file\(s\), as fast as possible, 0 bad capture lines", banner)
        url = re.search(r"websocket (ws://\S+)", proc.stdout.readline())
        assert url is not None
        sub = {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}
        got = session(url.group(1), [sub], expect=1 + len(expected) - 1)
        assert [g.encode() for g in got[1:]] == expected[1:]
        progress = proc.stdout.readline()
        while "frames served" not in progress:
            progress = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = out.strip().splitlines()[-1]
    assert f"{len(expected) - 1} frames served" in summary and "1 faults injected" in summary, summary


def test_cli_bad_arguments_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, named in (([str(OKX), "--fault", "explode@1"], "bad fault spec 'explode@1'"),
                        ([str(tmp_path / "nope.ws")], "nope.ws"),
                        ([str(OKX), "--rest-limit", "ten"], "--rest-limit 'ten'"),
                        ([str(OKX), "--random-faults", "drop=7"], "drop=7"),
                        ([str(OKX), "--settle", "soon"], "soon"),
                        ([str(OKX), "--ping-interval", "0s"], "'0s'"),
                        ([str(OKX), "--pong-timeout", "never"], "never")):
        assert main(["replay-server", "--format", "okx", *args]) == 2
        assert named in capsys.readouterr().err


def test_status_reports_bad_lines(tmp_path: Path) -> None:
    cap = tmp_path / "okx.jsonl"
    lines = OKX.read_text().splitlines()
    cap.write_text("\n".join(lines[:5] + ["1700000000200000000 {broken", "garbage line"] + lines[5:]) + "\n")
    srv = ReplayServer("okx", [cap])
    assert srv.bad_lines == 2 and json.loads(json.dumps(srv.status()))["bad_lines"] == 2
    assert len(srv.tape) == 14


def test_unreadable_book_frame_and_odd_client_messages_never_crash(tmp_path: Path) -> None:
    lines = OKX.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if '"action":"update"' in ln)
    broken = lines[at].replace('"asks":[', '"asks":[7,', 1)  # JSON, but not a level the book can read
    assert broken != lines[at]
    cap = tmp_path / "okx.jsonl"
    cap.write_text("\n".join(lines[:at] + [broken] + lines[at + 1:]) + "\n")
    payloads = [ln.split(" ", 1)[1] for ln in lines[:at] + [broken] + lines[at + 1:]]
    books = '{"arg":{"channel":"books","instId":"BTC-USDT"}'
    expected = [p.encode() for p in payloads if p.startswith(books)]
    with ReplayServer("okx", [cap]).run_in_thread() as srv:
        got = session(srv.ws_url, [{"op": "subscribe", "args": [7]}, {"op": "subscribe", "args": [
            {"channel": "books", "instId": "BTC-USDT"}]}], expect=2 + len(expected))
        status = srv.status()
    assert json.loads(got[0])["event"] == "error"
    assert [g.encode() for g in got[2:]] == expected  # the broken frame is still served as captured
    assert status["bad_lines"] == 1 and len(status["state_errors"]) == 1
    assert status["state_errors"][0].startswith(f"okx.jsonl:{at + 1}: ")
