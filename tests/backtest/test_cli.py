"""``tapeflow backtest`` on the simulator's files: the report prints and the files are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tapeflow.backtest.cli import STRATEGY_NAMES
from tapeflow.backtest.strategies import STRATEGIES
from tapeflow.cli import main


def test_strategy_names_match_the_registry():
    assert set(STRATEGY_NAMES) == set(STRATEGIES)


def test_backtest_command_writes_report_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    sim = tmp_path / "sim"
    argv = ["simulate", "--seed", "5", "--instruments", "1", "--duration", "20s", "--out", str(sim)]
    assert main(argv) == 0
    files = sorted(str(p) for p in sim.rglob("*.events.csv.gz"))
    capsys.readouterr()
    out = tmp_path / "bt"
    rc = main(["backtest", "--strategy", "market_maker", "--format", "sim", *files, "--out", str(out),
               "--queue", "l3", "--maker-fee", "-0.0001"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "var95_hist" in text and "cvar99_param" in text
    report = json.loads((out / "report.json").read_text())
    assert report["orders"] > 0
    for name in ("equity.png", "drawdown.png", "pnl_hist.png", "fills.parquet", "equity.parquet"):
        assert (out / name).stat().st_size > 0


def test_unknown_symbol_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    sim = tmp_path / "sim"
    assert main(["simulate", "--seed", "5", "--instruments", "1", "--duration", "5s", "--out", str(sim)]) == 0
    files = sorted(str(p) for p in sim.rglob("*.events.csv.gz"))
    rc = main(["backtest", "--strategy", "idle", "--format", "sim", *files, "--out", str(tmp_path / "o"),
               "--symbol", "NOPE"])
    assert rc != 0
    assert "--symbol 'NOPE' is not in the files" in capsys.readouterr().err
