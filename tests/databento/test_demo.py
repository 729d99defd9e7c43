"""The Databento act of ``make demo``: an outage repaired within budget, a backfill refused, the ledger
shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.schemas.databento import DATABENTO_SPEND
from tapeflow.storage import lake
from tapeflow.venues.databento import demo
from tests.databento.support import MBO_1225, databento_file


def test_the_act_prints_the_ledger_it_wrote(real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    databento_file(real_data, MBO_1225)
    monkeypatch.setenv("TAPEFLOW_DEMO_DIR", str(tmp_path))
    monkeypatch.setenv("TAPEFLOW_REAL_DATA", str(real_data))
    assert demo.main([]) == 0
    out = capsys.readouterr().out
    rows = lake.read(DATABENTO_SPEND, tmp_path / "databento" / "lake").sort_by("ts_event_ns").to_pylist()
    assert [(r["outcome"], r["reason"]) for r in rows] == [("spent", ""), ("refused", "over_daily_budget")]
    assert "| spent | gap repair GLBX.MDP3/ESH4 |" in out and "refused (over_daily_budget)" in out
    assert f"estimated at ${rows[1]['estimate_usd']:,.4f}" in out and "over the daily budget $0.05" in out
    assert "ClickHouse databento_spend: 2 rows" in out
    assert "STATUS: connected, disconnected, connected, gap, disconnected" in out
    assert demo.DEMO_KEY not in out
