"""``tapeflow options``: output file, summary, dead letters and exit codes (synthetic captures)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tapeflow.cli import main
from tapeflow.options.records import OPTION_TICKER
from tests.options.test_deribit_decode import _frame


def _capture(path: Path, *frames: str) -> Path:
    lines = ["wss://www.deribit.com/ws/api/v2 <-> 1617644856.505972"]
    lines += [f"1617644856.{902155 + i}: {f}" for i, f in enumerate(frames)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_writes_option_ticker_rows_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap = _capture(tmp_path / "a.txt", _frame(), _frame(channel="book.ETH-9APR21-1950-C.raw"))
    out = tmp_path / "out.parquet"
    assert main(["options", "--format", "deribit", str(cap), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "options: 1 tickers of 1 instruments" in text and "iv from the mark price: 1" in text
    assert "ignored by rule: 1 input units (unsupported_channel 1)" in text
    table = pq.read_table(out)
    assert table.schema.names == OPTION_TICKER.column_names and table.num_rows == 1


def test_damage_exits_3_unless_allowed_and_the_dead_letters_can_be_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap = _capture(tmp_path / "a.txt", _frame(), _frame()[:-9])
    argv = ["options", "--format", "deribit", str(cap), "--out", str(tmp_path / "o.parquet"), "--quiet"]
    assert main(argv) == 3
    assert "1 input unit rejected (truncated 1)" in capsys.readouterr().err
    dead = tmp_path / "dead.parquet"
    assert main([*argv, "--allow-rejects", "--rejected", str(dead)]) == 0
    assert pq.read_table(dead).column("reason").to_pylist() == ["truncated"]


def test_unusable_inputs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o.parquet")
    assert main(["options", "--format", "deribit", str(tmp_path / "missing.txt"), "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    assert main(["options", "--format", "deribit", str(other), "--out", out]) == 2
    assert "not a capture file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["options", "--format", "okx", str(other), "--out", out])
    assert info.value.code == 2
