"""``/api/v1/runs`` and ``/api/v1/quality`` read a real Dagster instance folder."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetCheckResult, DagsterInstance, asset, asset_check, materialize

from tapeflow.serve.app import build_app
from tapeflow.serve.dagster_reads import read
from tapeflow.serve.settings import ServeSettings
from tests.serve.server import get_json, serving


def test_runs_and_check_evaluations_from_a_dagster_instance(tmp_path: Path) -> None:
    @asset
    def prices() -> int:
        return 1

    @asset_check(asset=prices)
    def no_crossed_books() -> AssetCheckResult:
        return AssetCheckResult(passed=False, description="2 crossed snapshots")

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    assert read(None, "runs", 5)["source"] == "none"
    assert read(home, "runs", 5) == {"source": "dagster", "detail": str(home), "rows": []}
    with DagsterInstance.from_config(str(home)) as instance:
        materialize([prices, no_crossed_books], instance=instance)
    with serving(build_app(ServeSettings(lake=tmp_path / "lake", dagster_home=home))) as base:
        _, runs = get_json(base + "/api/v1/runs?limit=5")
        _, quality = get_json(base + "/api/v1/quality")
    assert [(r["status"], r["end_ns"] >= r["start_ns"]) for r in runs["rows"]] == [("SUCCESS", True)]
    [check] = quality["rows"]
    assert (check["asset"], check["check"], check["passed"], check["detail"]) == (
        "prices", "no_crossed_books", False, "2 crossed snapshots")
    assert check["run_id"] == runs["rows"][0]["run_id"]
