"""README's IQFeed oracles: bars rebuilt from IQFeed's ticks equal its own 1 s and daily bars."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tapeflow.cli import main
from tapeflow.derived.bars import time_bars
from tapeflow.venues.iqfeed.parse import decode_all
from tapeflow.venues.iqfeed.verify import verify
from tests.conftest import need

COMPARED = ["ts_event_ns", "open_price_nanos", "high_price_nanos", "low_price_nanos", "close_price_nanos",
            "volume_nanos"]


@pytest.fixture(scope="module")
def iqfeed(real_data: Path) -> Path:
    return need(real_data / "iqfeed")


def _vendor_1s(folder: Path) -> list[dict]:
    bars = decode_all([folder / "NEPT_intervals_1s_newest.zip"])["bar"]
    return bars.sort_by("ts_event_ns").select(COMPARED).to_pylist()


def test_ticks_decode_as_readme_counts(iqfeed: Path) -> None:
    t = decode_all([iqfeed / "NEPT_ticks_newest.zip"])
    assert set(t) == {"trade"}  # every tick a trade, none rejected
    trades = t["trade"]
    assert trades.num_rows == 32_627
    basis = pc.utf8_slice_codeunits(trades.column("trade_id"), 0, 1).to_pylist()
    assert {b: basis.count(b) for b in "CEO"} == {"C": 19_645, "E": 1_023, "O": 11_959}
    assert set(trades.column("symbol").to_pylist()) == {"NEPT"}


def test_verify_reproduces_every_1s_bar_and_day(iqfeed: Path) -> None:
    reports = verify(sorted(iqfeed.glob("NEPT_*.zip")))
    lines = sorted(r.line() for r in reports)
    assert lines == [
        "verified: 1 of 1 iqfeed 1mo bars from its daily bars",  # March: the dailies start on 2021-02-19
        "verified: 3 of 3 iqfeed daily bars from regular-session C trades and the last total volume",
        "verified: 5 of 5 iqfeed 1w bars from its daily bars",
        "verified: 7949 of 7949 iqfeed 1s bars rebuilt from ticks (basis O left out)",
    ]
    assert all(r.passed for r in reports)


def test_bars_command_equals_iqfeeds_own_1s_bars(iqfeed: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bars.parquet"
    rc = main(["bars", "--format", "iqfeed", str(iqfeed / "NEPT_ticks_newest.zip"), "--interval", "1s",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    ours = pq.read_table(out).sort_by("ts_event_ns")
    assert set(ours.column("interval").to_pylist()) == {"1s"}
    assert ours.select(COMPARED).to_pylist() == _vendor_1s(iqfeed)  # 7,949 of 7,949


def test_the_basis_o_rule_and_the_time_order_are_both_needed(iqfeed: Path) -> None:
    """Without the venue's bar rule (every trade, in the file's newest-first order) bars disagree."""
    trades = decode_all([iqfeed / "NEPT_ticks_newest.zip"])["trade"]
    vendor = {b["ts_event_ns"]: b for b in _vendor_1s(iqfeed)}
    every_trade = time_bars(trades, "1s").select(COMPARED).to_pylist()
    equal = sum(1 for b in every_trade if vendor.get(b["ts_event_ns"]) == b)
    assert equal < 7_000


def test_verify_command_exit_code(iqfeed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "iqfeed", *map(str, sorted(iqfeed.glob("NEPT_*.zip")))]) == 0
    assert "7949 of 7949" in capsys.readouterr().out


def test_bars_command_on_another_format(real_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tardis.parquet"
    path = need(real_data / "tardis" / "tardis_trades.csv")
    assert main(["bars", "--format", "tardis", str(path), "--interval", "1m", "--out", str(out)]) == 0
    from tapeflow.venues.tardis.parse import decode_all as tardis_decode

    expected = time_bars(tardis_decode([path])["trade"], "1m")
    assert pq.read_table(out).equals(expected)


def test_the_bar_rule_is_a_registry_part() -> None:
    from tapeflow.venues import get_format
    from tapeflow.venues.iqfeed.bars import bar_trades

    assert get_format("iqfeed").bar_trades is bar_trades
    assert get_format("tardis").bar_trades is None  # every trade makes bars


def test_a_weekly_bar_that_disagrees_with_the_dailies_fails(iqfeed: Path, tmp_path: Path) -> None:
    import zipfile

    for name in ("dailies", "weeklies"):
        with zipfile.ZipFile(iqfeed / f"NEPT_{name}_newest.zip") as archive:
            text = archive.read(archive.namelist()[0])
        if name == "weeklies":  # the week ending 2021-03-26: one share more than its days traded
            assert b"2021-03-26,1.6300,1.3100,1.6200,1.3600,14256566," in text
            text = text.replace(b"1.3600,14256566,", b"1.3600,14256567,")
        (tmp_path / f"NEPT_{name}.csv").write_bytes(text)
    reports = verify(sorted(tmp_path.glob("NEPT_*.csv")))
    weekly = next(r for r in reports if "1w" in r.what)
    assert (weekly.ok, weekly.total, weekly.passed) == (4, 5, False)
    assert "2021-03-26" in weekly.failures[0]
