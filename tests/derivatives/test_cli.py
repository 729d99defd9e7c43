"""``tapeflow derivatives``: a capture in, one Parquet file per record and the dead letters out."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tapeflow.cli import main

FRAMES = [
    '{"id":1,"result":null}',
    '{"stream":"btcusdt@markPrice@1s","data":{"e":"markPriceUpdate","E":1597536008000,"s":"BTCUSDT",'
    '"p":"11857.56000000","i":"11851.86949091","r":"0.00015640","T":1597564800000}}',
    '{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","E":1584059031426,"o":{"s":"BTCUSDT","S":"BUY",'
    '"o":"LIMIT","f":"IOC","q":"0.014","p":"4793.91","ap":"4706.04","X":"FILLED","l":"0.015","z":"0.014",'
    '"T":1584059031421}}}',
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","m":true}}',
]


def _capture(tmp_path: Path, frames: list[str]) -> Path:
    path = tmp_path / "futures.jsonl"
    path.write_text("".join(f"{1_700_000_000_000_000_000 + i} {f}\n" for i, f in enumerate(frames)))
    return path


def test_writes_each_record_and_counts_ignored_channels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "derivatives",
            "--format",
            "binance-futures",
            str(_capture(tmp_path, FRAMES)),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert pq.read_table(out / "mark_price.parquet").column("mark_price_nanos").to_pylist() == [
        11857_560_000_000
    ]
    assert pq.read_table(out / "index_price.parquet").column("index_price_nanos").to_pylist() == [
        11851_869_490_910
    ]
    assert pq.read_table(out / "funding_rate.parquet").column("funding_rate").to_pylist() == [0.0001564]
    liq = pq.read_table(out / "liquidation.parquet").to_pylist()
    assert [(r["price_nanos"], r["size_nanos"], chr(r["side"])) for r in liq] == [
        (4793_910_000_000, 14_000_000, "B")
    ]
    assert pq.read_table(out / "rejected.parquet").column("reason").to_pylist() == ["unsupported_channel"]
    text = capsys.readouterr().out
    assert "ignored by rule: 1 input units (unsupported_channel 1)" in text
    assert "4 frames -> 4 rows" in text


def test_damaged_frames_exit_3_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _capture(tmp_path, [*FRAMES, FRAMES[1].replace('"p":"11857.56000000"', '"p":"NaN"')])
    args = [
        "derivatives",
        "--format",
        "binance-futures",
        str(path),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    assert main(args) == 3
    assert "1 input units rejected (bad_number 1)" in capsys.readouterr().err
    assert main([*args, "--allow-rejects"]) == 0


def test_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["derivatives", "--format", "nope", str(_capture(tmp_path, FRAMES)), "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_lake_and_warehouse_get_every_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tapeflow.schemas.derivatives import LIQUIDATION, MARK_PRICE
    from tapeflow.storage import lake as lake_io
    from tapeflow.storage.warehouse import Warehouse

    lake, dsn = tmp_path / "lake", f"chdb://{tmp_path / 'wh'}"
    path = _capture(tmp_path, FRAMES)
    code = main(
        [
            "derivatives",
            "--format",
            "binance-futures",
            str(path),
            "--lake",
            str(lake),
            "--clickhouse",
            dsn,
            "--quiet",
        ]
    )
    assert code == 0
    assert lake_io.read(MARK_PRICE, lake).column("mark_price_nanos").to_pylist() == [11857_560_000_000]
    with Warehouse(dsn) as wh:
        assert wh.fetch(LIQUIDATION).column("size_nanos").to_pylist() == [14_000_000]
    assert "ignored by rule: 1 input units" in capsys.readouterr().out


def test_nowhere_to_write_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["derivatives", "--format", "okx", str(_capture(tmp_path, FRAMES))]) == 2
    assert "--out DIR, --lake DIR and/or --clickhouse DSN" in capsys.readouterr().err
