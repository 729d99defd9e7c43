"""``tapeflow databento cost|fetch|ledger`` against the local historical API server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.cli import main
from tapeflow.venues.databento.mock_historical import MockHistorical
from tapeflow.venues.databento.parse import decode_all
from tests.databento.support import KEY, MBO_1225, databento_file


def test_cost_fetch_refuse_and_ledger(real_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = databento_file(real_data, MBO_1225)
    recv = decode_all([path])["order_event"].column("ts_recv_ns").to_numpy()
    with MockHistorical([path], KEY) as server:
        key_file = tmp_path / "key"
        key_file.write_text(KEY)
        monkeypatch.setenv("DATABENTO_API_KEY_FILE", str(key_file))
        monkeypatch.setenv("TAPEFLOW_DATABENTO_HISTORICAL", server.url)
        monkeypatch.setenv("TAPEFLOW_DATABENTO_DAILY_BUDGET_USD", "0.03")
        monkeypatch.setenv("TAPEFLOW_DATABENTO_MONTHLY_BUDGET_USD", "10")
        base = ["--symbols", "ESH4", "--lake", str(tmp_path / "lake")]
        part = [*base, "--start", str(recv[0]), "--end", str(recv[20_000])]
        assert main(["databento", "cost", *part]) == 0
        out = capsys.readouterr().out
        assert "$0.0236 (1,120,000 billable bytes); budgets $0.03/day, $10.00/month" in out
        landing = ["--landing", str(tmp_path / "landing")]
        assert main(["databento", "fetch", *part, *landing, "--why", "cli"]) == 0
        assert "for $0.0236 (1,120,000 billable bytes)" in capsys.readouterr().out
        whole = [*base, "--start", "2023-12-25", "--end", "2023-12-26"]
        assert main(["databento", "fetch", *whole, *landing]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tapeflow: error: Databento request refused: ") and "$0.0811" in err
        assert "over the daily budget $0.03 ($0.0236 spent today)" in err and KEY not in err
    assert main(["databento", "ledger", "--lake", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and "| spent | cli |" in out[2] and "refused (over_daily_budget)" in out[3]
