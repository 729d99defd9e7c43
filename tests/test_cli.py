"""The command line: clear errors (never a traceback) and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.cli import main
from tapeflow.timeutil import parse_duration_ns


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["verify", "lobster", str(tmp_path / "nope.csv")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no such file" in err and "nope.csv" in err
    assert "Traceback" not in err


def test_unknown_format_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["verify", "nasdaq-itch", "x"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bad_duration_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "--duration", "ten minutes", "--out", str(tmp_path)])
    assert rc == 2
    assert "duration 'ten minutes'" in capsys.readouterr().err


# the formats README.md documents, one venue folder each
README_FORMATS = ["bitmex", "binance", "bybit", "coinbase", "dbn", "iqfeed", "kraken", "kucoin", "lobster",
                  "okx", "sim", "tardis", "deribit"]


def test_every_cli_format_comes_from_a_venue_folder(capsys: pytest.CaptureFixture[str]) -> None:
    from tapeflow.venues import formats

    assert sorted(formats()) == sorted(README_FORMATS)
    assert main(["formats"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert sorted(listed) == sorted(README_FORMATS)
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    usage = capsys.readouterr().out
    assert "{" + ",".join(sorted(README_FORMATS)) + "}" in usage  # the choices, from the registry


@pytest.mark.parametrize(("text", "ns"), [("1s", 10**9), ("250ms", 250 * 10**6), ("15m", 900 * 10**9),
                                          ("4h", 4 * 3600 * 10**9), ("1d", 86400 * 10**9), ("7us", 7000)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


def test_every_venue_folder_imports() -> None:
    from tapeflow.venues import formats

    for fmt in formats().values():  # each declared part loads (the registry imports them lazily)
        assert callable(fmt.decode) and (fmt.verify is None or callable(fmt.verify))
        assert not fmt.has_client or isinstance(fmt.client, type)
        assert not fmt.has_replay or isinstance(fmt.replay, type)


COMMANDS = {"formats", "verify", "ingest", "book", "simulate", "query", "replay-server", "live", "signals",
            "options", "derivatives", "alerts", "databento", "bars", "ml", "serve", "backtest", "paper"}


def test_help_lists_every_command_on_one_line(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    listed = {}
    for line in text.split("commands:")[1].splitlines():
        words = line.split(maxsplit=1)
        if len(words) == 2 and words[0] in COMMANDS:
            listed[words[0]] = words[1]
    assert set(listed) == COMMANDS  # live and replay-server included, each with its help beside it
    assert all(len(line) <= 80 for line in text.splitlines())
    assert main([]) == 2
    assert "replay-server" in capsys.readouterr().err  # no command: the same list, on stderr


def test_simulate_prints_a_summary_not_a_repr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--seed", "3", "--instruments", "1", "--duration", "5s", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "SimSummary(" not in out
    assert out.startswith("simulate: 1 instrument, 5s each (crypto preset, seed 3)")
    assert "messages for SIM-BTCUSDT" in out and "planted episodes" in out


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tapeflow.simulator import simulate

    summary = simulate(5, 1, 20 * 10**9, tmp_path_factory.mktemp("sim"), "crypto", progress=False)
    return summary.files[0]


def _on_terminal(columns: int, argv: list[str]) -> tuple[int, str, str]:
    """Run ``tapeflow argv`` with stderr on a pseudo-terminal ``columns`` wide: (rc, terminal, stdout)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=120), b"".join(chunks).decode(), out


@pytest.mark.parametrize("columns", [80, 40])
@pytest.mark.parametrize("command", ["ingest", "book"])
def test_progress_bar_on_a_terminal_fits_and_stays(sim_file: Path, tmp_path: Path, command: str,
                                                   columns: int) -> None:
    argv = ([command, "--format", "sim", str(sim_file), "--lake", str(tmp_path / "lake"), "--no-clickhouse"]
            if command == "ingest" else
            [command, "--format", "sim", str(sim_file), "--out", str(tmp_path / "book.parquet")])
    rc, terminal, out = _on_terminal(columns, argv)
    assert rc == 0, terminal
    lines = terminal.replace("\r\n", "\n").split("\n")
    screens = [s for line in lines for s in line.split("\r") if s.strip()]
    assert screens, "no progress bar on a terminal"
    assert all(len(s) < columns for s in screens), screens  # never wraps
    last = terminal.replace("\r\n", "\n").rstrip("\n").split("\n")[-1].split("\r")[-1]
    assert "100%" in last  # the final bar stays on screen
    summary = "ingest sim: 1 file" if command == "ingest" else "book: "
    assert out.startswith(summary)


def test_no_progress_bar_off_a_terminal(sim_file: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tapeflow.cli", "book", "--format", "sim", str(sim_file),
                           "--out", str(tmp_path / "b.parquet")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.startswith("book: ")
