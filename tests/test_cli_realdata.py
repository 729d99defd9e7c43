"""``tapeflow verify`` on every real oracle of ../shared/data, through the real command line."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from tapeflow.cli import main
from tests.conftest import need

LINE = re.compile(r"^verified: (\d+) of (\d+) (.+)$")
AMZN = "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1/AMZN_2012-06-21_34200000_57600000_{}_1.csv"
AAPL = "lobster/AAPL_2012-06-21_level10_first999/AAPL_2012-06-21_34200000_57600000_{}_10.csv"
GLBX = "databento/glbx/"

CASES = {
    "lobster-amzn": (
        "lobster",
        [AMZN.format("message"), AMZN.format("orderbook")],
        "lobster one-step book states",
    ),
    "lobster-aapl": (
        "lobster",
        [AAPL.format("message"), AAPL.format("orderbook")],
        "lobster one-step book states",
    ),
    "dbn-mbo": ("dbn", [GLBX + "esh4-glbx-mdp3-20231225.mbo.dbn.zst"], "mbo published book states"),
    "dbn-bars": (
        "dbn",
        [
            GLBX + "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
            GLBX + "futures_ohlcv-1m_2024-07-01T23-40_2024-07-02T00-10.dbn.zst",
        ],
        "databento ohlcv-1m bars",
    ),
    "binance-usdm": ("binance", ["binance/usdm_btcusdt_20240808.gz"], "binance bookTicker matches"),
    "binance-spot": (
        "binance",
        ["cryptofeed/BINANCE.ws.1.0", "cryptofeed/BINANCE.http.0.0"],
        "binance bookTicker matches",
    ),
    "binance-futures": (
        "binance",
        ["cryptofeed/BINANCE_FUTURES.ws.1.0", "cryptofeed/BINANCE_FUTURES.http.0.0"],
        "binance bookTicker matches",
    ),
    "kraken": ("kraken", ["cryptofeed/KRAKEN.ws.50.0"], "kraken checksums"),
    "kucoin": (
        "kucoin",
        ["cryptofeed/KUCOIN.ws.1.0", "cryptofeed/KUCOIN.http.0.0"],
        "kucoin l2 updates chained",
    ),
    "coinbase": ("coinbase", ["cryptofeed/COINBASE.ws.28.0"], "coinbase uncrossed books"),
    "bitmex": ("bitmex", ["cryptofeed/BITMEX.ws.1.0"], "bitmex uncrossed books"),
    "tardis": ("tardis", ["tardis/tardis_trades.csv"], "tardis trade ids contiguous"),
    "bybit": ("bybit", ["bybit/xrpusdt-ob500.data.zip"], "bybit orderbook updates chained"),
}


# units the real captures hold that tapeflow dead-letters: verify exits 3 for them (docs/reliability.md)
REJECTS = {
    "kucoin": "bad_number 453",  # sizes with 11 decimals (below 1e-9 units)
    "bitmex": "bad_number 3",  # quote prices with 10 decimals
}
# well-formed units kept out by rule: counted, exit 0
IGNORED = {
    # an XBT/CHF ask priced 9999999997.00000, beyond int64 nanos: a placeholder (docs/venues.md)
    "kraken": "1 input units (price_beyond_range 1)",
}


def _verify(capsys: pytest.CaptureFixture[str], fmt: str, paths: list[Path]) -> tuple[int, list[str], str]:
    rc = main(["verify", fmt, *map(str, paths)])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out.out.strip().splitlines(), out.err


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_oracle_passes_in_full(case: str, real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fmt, rel, what = CASES[case]
    rc, lines, err = _verify(capsys, fmt, [need(real_data / r) for r in rel])
    if case in REJECTS:
        assert rc == 3 and f"rejected ({REJECTS[case]})" in err, err
    else:
        assert rc == 0, (lines, err)
    if case in IGNORED:
        assert f"ignored by rule: {IGNORED[case]}" in lines, lines
    lines = [line for line in lines if not line.startswith("ignored by rule: ")]
    reports = [LINE.match(line) for line in lines]
    assert all(reports), lines
    assert all(m.group(1) == m.group(2) and int(m.group(2)) > 0 for m in reports), lines
    assert what in [m.group(3) for m in reports]


def test_kraken_count_equals_checksums_in_the_file(
    real_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = need(real_data / "cryptofeed/KRAKEN.ws.50.0")
    expected = sum(1 for line in path.read_text().splitlines() if '"c":' in line and "book-" in line)
    assert _verify(capsys, "kraken", [path])[1][0] == f"verified: {expected} of {expected} kraken checksums"


def test_bybit_count_equals_delta_messages(real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = need(real_data / "bybit/xrpusdt-ob500.data.zip")
    with zipfile.ZipFile(path) as zf:
        text = b"".join(zf.read(n) for n in zf.namelist()).decode()
    deltas = sum(1 for line in text.splitlines() if '"type":"delta"' in line.replace(" ", ""))
    assert (
        _verify(capsys, "bybit", [path])[1][-1]
        == f"verified: {deltas} of {deltas} bybit orderbook updates chained"
    )


def test_a_broken_chain_fails_with_exit_1(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = need(real_data / "tardis/tardis_trades.csv").read_text().splitlines(keepends=True)
    cut = tmp_path / "tardis_trades.csv"
    cut.write_text("".join(lines[:5000] + lines[5001:]))  # drop one trade
    rc, out, _ = _verify(capsys, "tardis", [cut])
    assert rc == 1
    m = LINE.match(out[-1])
    assert m and int(m.group(1)) == int(m.group(2)) - 1


def test_legacy_dbz_is_refused_clearly(real_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = need(real_data / "databento/fixtures/dbn/test_data.mbo.dbz")
    rc = main(["ingest", "--format", "dbn", str(path), "--no-lake", "--no-clickhouse", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "dbz" in err.lower() and "Traceback" not in err


def test_ingest_book_and_query_end_to_end(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import polars as pl

    from tapeflow.schemas.records import TRADE
    from tapeflow.storage.lake import read

    trades = need(real_data / "tardis/tardis_trades.csv")
    expected = len(trades.read_text().splitlines()) - 1  # header
    dsn = f"chdb://{tmp_path / 'wh'}"
    assert (
        main(
            [
                "ingest",
                "--format",
                "tardis",
                str(trades),
                "--lake",
                str(tmp_path / "lake"),
                "--clickhouse",
                dsn,
                "--quiet",
            ]
        )
        == 0
    )
    summary = capsys.readouterr().out
    assert re.search(rf"trade\s+{expected:,}", summary), summary
    assert read(TRADE, tmp_path / "lake").num_rows == expected
    assert main(["query", "--clickhouse", dsn, "SELECT count() AS n FROM trade"]) == 0
    assert str(expected) in capsys.readouterr().out

    book = need(real_data / "cryptofeed/KRAKEN.ws.50.0")
    out = tmp_path / "kraken_1s.parquet"
    assert (
        main(
            ["book", "--format", "kraken", str(book), "--levels", "5", "--interval", "1s", "--out", str(out)]
        )
        == 0
    )
    snaps = pl.read_parquet(out)
    assert snaps.height > 0 and snaps["symbol"].n_unique() == 10  # book-1000 on 10 pairs
    assert (snaps["bid_price_nanos"].list.len() <= 5).all()
    valid = snaps.filter((pl.col("flags") & 4) == 0)
    best_bid = valid["bid_price_nanos"].list.first()
    best_ask = valid["ask_price_nanos"].list.first()
    assert (best_bid < best_ask).all()  # a valid rebuilt book is never crossed
