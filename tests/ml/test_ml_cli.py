"""``tapeflow ml evaluate`` on a small simulated file cut into folds; its clear errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tapeflow.cli import main


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tapeflow.simulator import simulate

    seed = random.randrange(10**6)
    print(f"simulator seed {seed}")
    summary = simulate(seed, 1, 7 * 60 * 10**9, tmp_path_factory.mktemp("sim"), "crypto", progress=False)
    return next(Path(f) for f in summary.files if str(f).endswith(".csv.gz"))


Capsys = pytest.CaptureFixture[str]


def test_evaluate_prints_the_table(sim_file: Path, tmp_path: Path, capsys: Capsys) -> None:
    argv = ["ml", "evaluate", "--format", "sim", str(sim_file), "--out", str(tmp_path), "--fold", "2m",
            "--horizon", "1", "--models", "logreg", "--train-folds", "1", "--block", "1m"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| logreg |" in out and "| majority (baseline) |" in out and "ofi_linear" in out
    assert "Not evaluated" in out and "usable rows" in out  # the first 2 minutes are mostly warm-up
    scores = json.loads((tmp_path / "scores.json").read_text())
    (inst,) = scores
    assert {"logreg", "majority", "last_move", "ofi_linear"} == set(scores[inst]["scores"])
    assert len(scores[inst]["folds"]) >= 1
    assert (tmp_path / "table.md").read_text() in out


def test_evaluate_refuses_bad_options(sim_file: Path, tmp_path: Path, capsys: Capsys) -> None:
    base = ["ml", "evaluate", "--format", "sim", str(sim_file), "--out", str(tmp_path)]
    assert main([*base, "--horizon", "7"]) == 2
    assert "not a label horizon" in capsys.readouterr().err
    assert main([*base, "--models", "lstm"]) == 2
    err = capsys.readouterr().err
    assert "unknown ['lstm']" in err and "deeplob" in err  # the raw-book kind is offered
    assert main([*base, "--signal-window", "-1"]) == 2
    assert "--signal-window must be 0 or more" in capsys.readouterr().err
    assert main(base) == 2  # one file, one day: nothing to walk forward over
    assert "walk-forward needs 2" in capsys.readouterr().err
