"""``make demo``: every act's "Next, try" hints are printed once, after the last act's output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import dagster_project.demo as dagster_demo
import flows.demo as live_demo
import tapeflow.demo as batch_demo

REPO = Path(__file__).resolve().parents[1]


def test_deferred_hints_print_after_the_last_act(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TAPEFLOW_DEMO_DIR", str(tmp_path))
    (tmp_path / "live" / "feed" / "SIM-BTCUSDT").mkdir(parents=True)

    def act(name: str, code: int = 0):
        def run(*args: object) -> int:
            print(f"output of the {name} act")
            return code
        return run

    monkeypatch.setattr(batch_demo, "run", act("batch"))
    monkeypatch.setattr(live_demo, "run", act("live"))
    monkeypatch.setattr(dagster_demo, "run", act("dagster"))
    assert batch_demo.main(["--defer-hints"]) == 0
    assert live_demo.main(["--defer-hints"]) == 0
    assert dagster_demo.main(["--defer-hints"]) == 0
    assert "Next, try" not in capsys.readouterr().out  # deferred: nothing printed by the acts
    assert batch_demo.main(["--hints"]) == 0
    out = capsys.readouterr().out
    assert out.count("== Next, try") == 1
    titles = [line.strip() for line in out.splitlines() if line.startswith("   python -m")]
    assert [t.split(":")[0] for t in titles] == ["python -m tapeflow.demo", "python -m flows.demo",
                                                 "python -m dagster_project.demo"]
    assert "tapeflow query --clickhouse" in out and "tapeflow live --venue sim --symbols SIM-BTCUSDT" in out
    assert "make ui" in out
    assert "tapeflow ml registry --lake" in out  # the champion the models act registered
    assert "make dashboard" in out  # make demo ends saying how to open the dashboard on its data


def test_an_act_run_alone_prints_its_own_hints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TAPEFLOW_DEMO_DIR", str(tmp_path))
    monkeypatch.setattr(dagster_demo, "run", lambda *args: print("dagster act output") or 0)
    assert dagster_demo.main([]) == 0
    out = capsys.readouterr().out
    assert out.index("dagster act output") < out.index("== Next, try") < out.index("make ui")


def test_no_hints_yet_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TAPEFLOW_DEMO_DIR", str(tmp_path))
    assert batch_demo.main(["--hints"]) == 2
    assert "run the demo first" in capsys.readouterr().err


def test_make_demo_defers_every_act_and_prints_the_hints_last() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None
    lines = [line.strip().lstrip("@") for line in recipe.group(1).splitlines()]
    acts = [line for line in lines if re.search(r"-m (tapeflow|flows|dagster_project)\.demo", line)]
    modules = [a.split("-m ")[1].split()[0] for a in acts]
    assert modules == ["tapeflow.demo", "flows.demo", "dagster_project.demo", "tapeflow.demo"]
    assert all(a.endswith("--defer-hints") for a in acts[:3])
    assert acts[-1].endswith("--hints") and lines[-1] == acts[-1]


def test_the_demo_scores_the_detectors_against_the_planted_episodes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    from tapeflow import demo
    from tapeflow.simulator.episodes import KINDS

    monkeypatch.setattr(demo, "SIGNALS_MINUTES", 20)
    demo.signals_step(tmp_path)
    out = capsys.readouterr().out
    alerts = pq.read_table(tmp_path / "signals.parquet")
    assert f"{alerts.num_rows} signal rows" in out
    table_lines = {line.split()[0] for line in out.splitlines()[2:] if line.strip()}
    assert set(KINDS) <= table_lines  # every planted kind has its row in the score table
    assert "ECE" in out
