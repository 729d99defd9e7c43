"""The example notebooks run from top to bottom on small data (their own cells assert what they
show: lake == warehouse counts, every trade in one bar, one snapshot per second; the models' and
baselines' scores, the backtest's risk report, portfolio weights summing to 1), so they never rot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    # the kernel is a child process: it finds the repository through PYTHONPATH and writes under tmp
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("TAPEFLOW_EXAMPLE_MINUTES", "2")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, "a notebook that printed nothing showed a reader nothing"


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"getting_started.ipynb", "models_and_backtests.ipynb"}
